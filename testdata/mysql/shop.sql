-- shop: the MariaDB fixture schema for keyhole's MySQL policy corpus
-- (testdata/mysql/cases) and the catalog tests. Tests load it into a
-- database of a random name: every word "shop" (and "shop_internal")
-- is replaced by that database's name (internal/testmariadb.Rename).
-- Labels: customers.email and customers.ssn are labelled in
-- testdata/mysql/policy.yaml; customers.phone by its column comment
-- below; shop.secrets as a whole in the policy.

CREATE TABLE customers (
    id         INT PRIMARY KEY,
    name       VARCHAR(100) NOT NULL,
    email      VARCHAR(200) NOT NULL,
    ssn        VARCHAR(20),
    phone      VARCHAR(40) COMMENT 'Contact phone number. keyhole: pii.phone',
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- A generated column over a labelled one: reading it reveals email.
    email_domain VARCHAR(200) AS (SUBSTRING_INDEX(email, '@', -1)) VIRTUAL,
    -- A unique key on a labelled column, as most schemas have: it holds
    -- id too, so a query of id alone may read it, and its rows come back
    -- in email order unless ORDER BY sorts them completely (the
    -- index-order rule, docs/mysql.md).
    UNIQUE KEY customers_email_uq (email)
) COMMENT 'People who bought something.';

CREATE TABLE products (
    id    INT PRIMARY KEY,
    title VARCHAR(100) NOT NULL,
    price DECIMAL(10,2) NOT NULL
);

CREATE TABLE orders (
    id          INT AUTO_INCREMENT PRIMARY KEY,
    customer_id INT NOT NULL,
    product_id  INT NOT NULL,
    total       DECIMAL(10,2) NOT NULL,
    status      VARCHAR(20) NOT NULL DEFAULT 'new',
    created_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    KEY orders_customer_id_idx (customer_id),
    CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT orders_product_fk FOREIGN KEY (product_id) REFERENCES products (id)
);

CREATE TABLE secrets (
    id    INT PRIMARY KEY,
    name  VARCHAR(100) NOT NULL,
    value VARCHAR(200) NOT NULL
);

CREATE TABLE audit_log (
    id     BIGINT AUTO_INCREMENT PRIMARY KEY,
    at     DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    actor  VARCHAR(50) NOT NULL,
    action VARCHAR(50) NOT NULL,
    detail JSON
);

CREATE VIEW customer_emails AS SELECT id, email FROM customers;

CREATE VIEW order_summary AS
    SELECT customer_id, COUNT(*) AS n_orders, SUM(total) AS revenue
    FROM orders GROUP BY customer_id;

-- A view whose column names hide what they carry: contact is the email.
CREATE VIEW customer_contacts AS SELECT id, name, email AS contact FROM customers;

-- A stored function that hands out a labelled column: calling it must be
-- granted explicitly (it runs with its definer's rights).
CREATE FUNCTION get_ssn(c INT) RETURNS VARCHAR(20) READS SQL DATA
    RETURN (SELECT ssn FROM customers WHERE id = c);

CREATE PROCEDURE touch_order(t INT)
    UPDATE orders SET status = status WHERE id = t;

-- Notes on orders. Deleting an order deletes its notes and changing its
-- id changes theirs (foreign key actions), and a trigger that runs as its
-- definer copies every new note into audit_log: writes to orders and
-- order_notes do more than their statements say.
CREATE TABLE order_notes (
    id       INT AUTO_INCREMENT PRIMARY KEY,
    order_id INT NOT NULL,
    note     VARCHAR(200) NOT NULL,
    CONSTRAINT order_notes_order_fk FOREIGN KEY (order_id) REFERENCES orders (id)
        ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE TRIGGER order_notes_audit AFTER INSERT ON order_notes FOR EACH ROW
    INSERT INTO audit_log (actor, action, detail) VALUES ('trigger', 'note', JSON_OBJECT('order', NEW.order_id));

-- A stored function named like a function MariaDB does not have natively
-- (TiDB and Oracle's TO_NUMBER): an unqualified call runs it, with its
-- definer's rights.
CREATE FUNCTION to_number(x VARCHAR(40)) RETURNS VARCHAR(200) READS SQL DATA
    RETURN (SELECT GROUP_CONCAT(ssn) FROM customers);

CREATE TABLE shop_internal.api_keys (
    id      INT PRIMARY KEY,
    owner   VARCHAR(50) NOT NULL,
    api_key VARCHAR(100) NOT NULL
);

INSERT INTO customers (id, name, email, ssn, phone, created_at) VALUES
    (1, 'Ada Lovelace',  'ada@example.com',   '078-05-1120', '+1-555-0100', '2024-01-03 10:00:00'),
    (2, 'Alan Turing',   'alan@example.com',  '219-09-9999', '+1-555-0101', '2024-02-11 12:30:00'),
    (3, 'Grace Hopper',  'grace@example.com', '457-55-5462', NULL,          '2024-03-20 08:15:00'),
    (4, 'Edsger Dijkstra', 'ewd@example.com', NULL,          '+31-555-0199', '2024-04-01 09:00:00');

INSERT INTO products (id, title, price) VALUES
    (1, 'Keyboard', 49.90), (2, 'Monitor', 219.00), (3, 'Cable', 9.50);

INSERT INTO orders (id, customer_id, product_id, total, status, created_at) VALUES
    (1, 1, 1, 49.90,  'shipped',  '2024-05-01 10:00:00'),
    (2, 1, 3, 19.00,  'shipped',  '2024-05-02 11:00:00'),
    (3, 2, 2, 219.00, 'new',      '2024-05-03 12:00:00'),
    (4, 3, 1, 49.90,  'refunded', '2024-05-04 13:00:00'),
    (5, 4, 3, 9.50,   'new',      '2024-05-05 14:00:00');

INSERT INTO secrets (id, name, value) VALUES
    (1, 'stripe_key', 'sk_live_not_a_real_key'), (2, 'smtp_password', 'hunter2');

INSERT INTO audit_log (actor, action, detail) VALUES
    ('ops', 'login', '{"ip": "10.0.0.1"}'), ('ops', 'export', '{"rows": 12}');

INSERT INTO order_notes (order_id, note) VALUES (1, 'gift wrap'), (3, 'call before delivery');

INSERT INTO shop_internal.api_keys (id, owner, api_key) VALUES (1, 'billing', 'ak_test_123');
