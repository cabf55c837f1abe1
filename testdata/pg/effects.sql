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
