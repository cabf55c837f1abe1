-- The login keyhole uses upstream (static credentials for the compose
-- stack; production uses Vault dynamic credentials). It may touch every
-- table: the policy is what limits agents.
CREATE ROLE keyhole LOGIN PASSWORD 'keyhole';
GRANT USAGE ON SCHEMA public TO keyhole;
GRANT ALL ON ALL TABLES IN SCHEMA public TO keyhole;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO keyhole;
