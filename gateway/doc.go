// Package gateway is the running keyhole service: what `keyhole serve`
// starts, built from a config.Config.
//
// New builds, per upstream, its credentials (the static login or the
// shared Vault source), its catalog (read as the upstream's catalog role:
// pg_catalog for postgres://, information_schema for mysql://) and an
// analyzer of its dialect (pganalyze, myanalyze); one decision engine per
// upstream (catalog + analyzer + the policy) in a policy generation that
// is swapped whole; per protocol with upstreams, a front end
// (NewPostgresFrontEnd: pgproxy; NewMySQLFrontEnd: mysqlproxy); the audit
// sinks and the admin server. Run serves until its context ends or
// Shutdown is called. Options.FrontEnds may replace a dialect's front end
// or adjust the FrontEndConfig the gateway built before calling the
// built-in one (the proxies' own tests build keyhole this way), and
// Options.Catalogs may stand in for reading an upstream's schema.
//
// With static logins every session of an upstream logs in as its catalog
// did (catalog.Catalog.SessionsShareLogin); with Vault or a wrapped
// source, or a catalog from Options.Catalogs, sessions may not, and the
// Postgres front end reads each session's starting search path after
// login (router.LoginProbe).
//
// A statement flows: front end → router.Check (the agent's role picks its
// upstream's engine in the current generation) → sqlpolicy.Engine.Check →
// the front end forwards or refuses it and records the audit event.
//
// Just-in-time access (approvals.go): the front ends' Decider wraps the
// router; a statement the policy denies is decided again with the agent's
// timed grants (approval.Service, store), and one still denied opens or
// counts the agent's request for its shape, named in the error. The audit
// recorder the front ends use also indexes blocked statements and sessions
// for the console (console.go, admin.go). Replicas sharing a Postgres
// store forward Postgres CancelRequests to the replica whose key they
// carry (cancel.go).
//
// Reload (SIGHUP, via Options.Reload) re-reads every upstream's schema and
// the policy, and so does an agent's DDL once it has taken effect (the
// front ends call the router's SchemaChanged, sqlpolicy.SchemaNotifier;
// notices coalesce while a reading is due); a change of the policy file
// alone reloads the policy. A
// policy or schema that does not load leaves the running generation in
// force and says why (log line, keyhole_policy_reload_ok 0). Agents that
// a new policy removes or moves to another role or upstream lose their
// upstream credentials at once (the credential source's RevokeAgent) and
// their sessions end. Each generation has its own epoch
// (sqlpolicy.EpochDecider): an allow by the policy stands while its
// generation is in force; an allow by a grant has no epoch, since the
// grant can end at any time.
package gateway
