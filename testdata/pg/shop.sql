-- shop: the Postgres fixture schema for keyhole's policy corpus
-- (testdata/pg/cases) and for tests that need a realistic upstream.
-- Labels: customers.email and customers.ssn are labelled in
-- testdata/policy/shop.yaml; customers.phone is labelled by its column
-- comment below; public.secrets is labelled as a whole in shop.yaml.

CREATE TABLE public.customers (
    id         integer PRIMARY KEY,
    name       text NOT NULL,
    nickname   text,
    email      text NOT NULL,
    ssn        text,
    phone      text,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- A dropped column, as real tables have: it keeps its attribute number,
-- and column alias lists (customers AS c(a, b, c)) skip it.
ALTER TABLE public.customers DROP COLUMN nickname;
COMMENT ON TABLE public.customers IS 'People who bought something.';
COMMENT ON COLUMN public.customers.phone IS 'Contact phone number. keyhole: pii.phone';

CREATE TABLE public.products (
    id    integer PRIMARY KEY,
    title text NOT NULL,
    price numeric(10,2) NOT NULL
);

CREATE SEQUENCE public.order_id_seq START 1000;

CREATE TABLE public.orders (
    id          integer PRIMARY KEY DEFAULT nextval('public.order_id_seq'),
    customer_id integer NOT NULL REFERENCES public.customers(id),
    product_id  integer NOT NULL REFERENCES public.products(id),
    total       numeric(10,2) NOT NULL,
    status      text NOT NULL DEFAULT 'new',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_id_idx ON public.orders (customer_id);

CREATE TABLE public.secrets (
    id    integer PRIMARY KEY,
    name  text NOT NULL,
    value text NOT NULL
);

CREATE TABLE public.audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    detail     jsonb
);

CREATE VIEW public.customer_emails AS
    SELECT id, email FROM public.customers;

CREATE VIEW public.order_summary AS
    SELECT customer_id, count(*) AS n_orders, sum(total) AS revenue
    FROM public.orders
    GROUP BY customer_id;

CREATE MATERIALIZED VIEW public.daily_revenue AS
    SELECT date_trunc('day', created_at) AS day, sum(total) AS revenue
    FROM public.orders
    GROUP BY 1;

-- A SQL function that hands out a labelled column: calling it must count as
-- reading customers.ssn (or be denied as a user function).
CREATE FUNCTION public.get_ssn(customer integer) RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT ssn FROM public.customers WHERE id = customer $$;

CREATE FUNCTION public.order_total(customer integer) RETURNS numeric
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (SELECT coalesce(sum(total), 0) FROM public.orders WHERE customer_id = customer);
END
$$;

-- A procedure that writes orders: CALL must be granted explicitly.
CREATE PROCEDURE public.touch_order(target integer)
    LANGUAGE sql
    AS $$ UPDATE public.orders SET status = status WHERE id = target $$;

CREATE SCHEMA internal;
CREATE TABLE internal.api_keys (
    id      integer PRIMARY KEY,
    owner   text NOT NULL,
    api_key text NOT NULL
);
-- Same name as public.orders: with internal first on the search path, an
-- unqualified "orders" means this table.
CREATE TABLE internal.orders (
    id   integer PRIMARY KEY,
    note text
);

INSERT INTO public.customers (id, name, email, ssn, phone, created_at) VALUES
    (1, 'Ada Lovelace',  'ada@example.com',   '078-05-1120', '+1-555-0100', '2024-01-03 10:00:00+00'),
    (2, 'Alan Turing',   'alan@example.com',  '219-09-9999', '+1-555-0101', '2024-02-11 12:30:00+00'),
    (3, 'Grace Hopper',  'grace@example.com', '457-55-5462', NULL,          '2024-03-20 08:15:00+00'),
    (4, 'Edsger Dijkstra', 'ewd@example.com', NULL,          '+31-555-0199', '2024-04-01 09:00:00+00');

INSERT INTO public.products (id, title, price) VALUES
    (1, 'Keyboard', 49.90),
    (2, 'Monitor', 219.00),
    (3, 'Cable', 9.50);

INSERT INTO public.orders (id, customer_id, product_id, total, status, created_at) VALUES
    (1, 1, 1, 49.90,  'shipped',  '2024-05-01 10:00:00+00'),
    (2, 1, 3, 19.00,  'shipped',  '2024-05-02 11:00:00+00'),
    (3, 2, 2, 219.00, 'new',      '2024-05-03 12:00:00+00'),
    (4, 3, 1, 49.90,  'refunded', '2024-05-04 13:00:00+00'),
    (5, 4, 3, 9.50,   'new',      '2024-05-05 14:00:00+00');

INSERT INTO public.secrets (id, name, value) VALUES
    (1, 'stripe_key', 'sk_live_not_a_real_key'),
    (2, 'smtp_password', 'hunter2');

INSERT INTO public.audit_log (actor, action, detail) VALUES
    ('ops', 'login', '{"ip": "10.0.0.1"}'),
    ('ops', 'export', '{"rows": 12}');

INSERT INTO internal.api_keys (id, owner, api_key) VALUES
    (1, 'billing', 'ak_test_123');

INSERT INTO internal.orders (id, note) VALUES
    (1, 'shadow');

REFRESH MATERIALIZED VIEW public.daily_revenue;
