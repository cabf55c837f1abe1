-- effects: objects whose code runs when a statement calls a function by a
-- built-in's name, or writes a table, beyond what the statement's text
-- shows. Loaded after shop.sql by the corpus (internal/corpus) and the
-- differential; the writer policy (testdata/policy/shop-writer.yaml) may
-- read and write tickets, shipments and returns, not ticket_events or
-- audit_log.

-- A user function named like a built-in. Postgres considers the functions
-- of a name in every schema of the search path and picks the best match
-- for the argument types: length(integer) is this one (pg_catalog has no
-- length(integer)), and it runs with the session's privileges.
CREATE FUNCTION public.length(customer integer) RETURNS integer
    LANGUAGE sql STABLE
    AS $$ SELECT pg_catalog.length(ssn) FROM public.customers WHERE id = customer $$;

-- tickets: a row trigger on INSERT that copies the customer's email into
-- the ticket, a row trigger on UPDATE OF priority that logs to audit_log,
-- and ticket_events referencing it with ON DELETE CASCADE and ON UPDATE
-- SET NULL (Postgres runs those as ticket_events' owner).
CREATE TABLE public.tickets (
    id       integer PRIMARY KEY,
    order_id integer NOT NULL,
    status   text NOT NULL DEFAULT 'open',
    priority integer NOT NULL DEFAULT 0,
    contact  text
);
CREATE TABLE public.ticket_events (
    id        integer PRIMARY KEY,
    ticket_id integer REFERENCES public.tickets (id) ON DELETE CASCADE ON UPDATE SET NULL,
    what      text NOT NULL
);

CREATE FUNCTION public.stamp_ticket() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.contact := (SELECT c.email FROM public.customers c
                    JOIN public.orders o ON o.customer_id = c.id
                    WHERE o.id = NEW.order_id);
    RETURN NEW;
END
$$;
CREATE TRIGGER tickets_stamp BEFORE INSERT ON public.tickets
    FOR EACH ROW EXECUTE FUNCTION public.stamp_ticket();

CREATE FUNCTION public.log_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO public.audit_log (actor, action) VALUES ('trigger', TG_TABLE_NAME || ' ' || TG_OP);
    RETURN NULL;
END
$$;
CREATE TRIGGER tickets_priority AFTER UPDATE OF priority ON public.tickets
    FOR EACH ROW EXECUTE FUNCTION public.log_change();

-- shipments: a rule that logs every INSERT (its action runs with the
-- table owner's privileges) and a statement trigger on DELETE, which
-- fires even when no row is deleted.
CREATE TABLE public.shipments (
    id       integer PRIMARY KEY,
    order_id integer NOT NULL,
    carrier  text NOT NULL
);
CREATE RULE shipments_log AS ON INSERT TO public.shipments
    DO ALSO INSERT INTO public.audit_log (actor, action) VALUES ('rule', 'shipment ' || NEW.id);
CREATE TRIGGER shipments_deleted AFTER DELETE ON public.shipments
    FOR EACH STATEMENT EXECUTE FUNCTION public.log_change();

-- returns: a check constraint that calls a user function, which reads a
-- labelled column (whether the order's customer has an email on file).
CREATE FUNCTION public.has_contact(order_id integer) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT c.email IS NOT NULL FROM public.customers c
          JOIN public.orders o ON o.customer_id = c.id WHERE o.id = order_id $$;
CREATE TABLE public.returns (
    id       integer PRIMARY KEY,
    order_id integer NOT NULL CHECK (public.has_contact(order_id)),
    reason   text
);

INSERT INTO public.tickets (id, order_id, status, priority) VALUES (1, 1, 'open', 0), (2, 3, 'open', 1);
INSERT INTO public.ticket_events (id, ticket_id, what) VALUES (1, 1, 'opened'), (2, 2, 'opened');
INSERT INTO public.shipments (id, order_id, carrier) VALUES (1, 1, 'ups');
INSERT INTO public.returns (id, order_id, reason) VALUES (1, 2, 'broken');

-- Another user function with a built-in's name: pg_catalog.chr(integer)
-- wins for an integer, public.chr(text) for a string literal (Postgres
-- prefers the string category for an argument of unknown type). The
-- choice depends on the constant's type, which the decision cache's
-- normalized text does not keep.
CREATE FUNCTION public.chr(customer text) RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT email FROM public.customers WHERE name = customer $$;

-- A user operator on built-in types: Postgres looks an unqualified
-- operator up like a function, so customer_id + status (integer + text)
-- runs public.note_for, which reads customers.ssn, though the text names
-- no function.
CREATE FUNCTION public.note_for(customer integer, label text) RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT label || ': ' || ssn FROM public.customers WHERE id = customer $$;
CREATE OPERATOR public.+ (LEFTARG = integer, RIGHTARG = text, FUNCTION = public.note_for);

-- Labels across inheritance: the same rows are reached through a parent
-- and through its partitions or children. Postgres copies no comment to a
-- partition, so visits_2024.ip is labelled only through its parent; the
-- body of notes_private rows is labelled on the child and comes back from
-- a scan of notes. events_log is labelled as a whole (secret) and so is
-- its inheritance child events_log_archive.
CREATE TABLE public.visits (
    id          integer NOT NULL,
    customer_id integer NOT NULL,
    ip          text,
    at          date NOT NULL
) PARTITION BY RANGE (at);
COMMENT ON COLUMN public.visits.ip IS 'Client address. keyhole: pii.ip';
CREATE TABLE public.visits_2024 PARTITION OF public.visits
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.notes (id integer PRIMARY KEY, body text);
CREATE TABLE public.notes_private (reason text) INHERITS (public.notes);
COMMENT ON COLUMN public.notes_private.body IS 'keyhole: pii.note';
CREATE TABLE public.events_log (id integer, what text);
COMMENT ON TABLE public.events_log IS 'keyhole: secret';
CREATE TABLE public.events_log_archive () INHERITS (public.events_log);

-- A generated column over a labelled one: reading it reveals the email,
-- though Postgres asks a privilege on email_domain alone.
CREATE TABLE public.contacts (
    id           integer PRIMARY KEY,
    email        text,
    email_domain text GENERATED ALWAYS AS (split_part(email, '@', 2)) STORED
);
COMMENT ON COLUMN public.contacts.email IS 'keyhole: pii.email';

INSERT INTO public.visits (id, customer_id, ip, at) VALUES (1, 1, '10.0.0.7', '2024-06-01');
INSERT INTO public.notes (id, body) VALUES (1, 'public note');
INSERT INTO public.notes_private (id, body, reason) VALUES (2, 'private: card ends 4242', 'billing');
INSERT INTO public.events_log_archive (id, what) VALUES (1, 'root password rotated');
INSERT INTO public.contacts (id, email) VALUES (1, 'ada@example.com');

-- A function over a table's row type ("computed field"): Postgres calls
-- it for (x).order_contact on any orders-typed value x, the column
-- notation of order_contact(x), though the text names no call.
CREATE FUNCTION public.order_contact(o public.orders) RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT ssn FROM public.customers WHERE id = o.customer_id $$;

-- A user function whose parameter is a domain: Postgres passes a value of
-- the domain's base type to it (a coercion pg_cast does not list), so
-- cardinality(customer_id) calls it, pg_catalog's cardinality(anyarray)
-- taking arrays only (cases/redteam4.yaml).
CREATE DOMAIN public.customer_ref AS integer;
CREATE FUNCTION public.cardinality(customer public.customer_ref) RETURNS integer
    LANGUAGE sql STABLE
    AS $$ SELECT pg_catalog.length(ssn) FROM public.customers WHERE id = customer $$;

-- A column added with a default to a table with rows: Postgres keeps the
-- default in pg_attribute.attmissingval (atthasmissing) instead of in the
-- rows, and every row that existed then reads the column as it, also after
-- the default is dropped. master is labelled secret (cases/redteam4.yaml).
CREATE TABLE public.vault_keys (id integer PRIMARY KEY);
INSERT INTO public.vault_keys VALUES (1), (2);
ALTER TABLE public.vault_keys ADD COLUMN master text DEFAULT 'hunter2-root-key';
ALTER TABLE public.vault_keys ALTER COLUMN master DROP DEFAULT;
COMMENT ON COLUMN public.vault_keys.master IS 'keyhole: secret';

-- A domain whose check calls a function that reads customers.ssn, and a
-- composite type with a field of it: converting a value to the composite
-- (a literal, ROW(...)::ref_pair, jsonb_populate_record) or to an array
-- of the domain checks the domain, and so runs the function
-- (cases/redteam5.yaml).
CREATE FUNCTION public.ssn_on_file(customer integer) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT customer IS NULL OR EXISTS (SELECT 1 FROM public.customers WHERE id = customer AND ssn IS NOT NULL) $$;
CREATE DOMAIN public.checked_ref AS integer CHECK (public.ssn_on_file(VALUE));
CREATE TYPE public.ref_pair AS (ref public.checked_ref, note text);
