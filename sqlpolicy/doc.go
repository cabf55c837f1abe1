// Package sqlpolicy decides, per statement, whether an agent may run SQL.
//
// The model has four steps:
//
//  1. Analyze: a dialect Analyzer (sqlpolicy/pganalyze for Postgres) parses
//     the text into an AST and reports an Access: per statement the verb,
//     every relation and column read or written (through views, CTEs,
//     subqueries, `*`), every function called, every setting changed, and
//     a Problem for anything it could not or would not model.
//  2. Access is dialect-neutral; a Policy (LoadPolicyFile, ParsePolicy;
//     format in docs/policy.md) maps agents to roles, roles to grants of
//     verbs on relations and columns, and denies label patterns
//     (pii.*, secret) on columns labelled in the policy or in column
//     comments.
//  3. Decide is deny by default and fails closed: every statement of a text
//     must be allowed by a rule, any Problem denies unless a rule names it,
//     and a denied label beats any grant.
//  4. The Decision names the deciding rule, structured Reasons, the
//     SQLSTATE and the wire texts (message, detail, and a hint an LLM
//     agent can act on).
//
// A role's resource limits (Limit: timeouts, memory) are dialect-neutral
// amounts: the analyzer maps them to the settings a new upstream session
// starts with (Decider.UpstreamSettings) and marks the setting changes a
// limit governs (Setting.Limit, Setting.Amount), which Decide compares
// with the role's limits.
//
// Where the catalog's login is not the sessions' (Vault), a session may
// start in a state the catalog does not describe (Postgres: its search
// path): the analyzer names a query (SessionProber, Decider.LoginProbe)
// the proxy runs after login, and the session learns its start from the
// row (ProbeLearner).
//
// The contract is dialect-neutral: an Analyzer owns everything one SQL
// dialect decides (name resolution, its Session state, which settings are
// guarded, which relations are system catalogs and which functions are
// built in) and writes those judgements into the Access; Decide reads only
// the Access, the policy and the catalog's labels.
//
// Engine ties the steps together for the proxies (Decider), with a
// byte-bounded decision cache; Holder swaps engines on policy reload. An
// EpochDecider also tells a proxy when an allow it gave still stands
// (nothing the decision depends on changed), so that a prepared
// statement's Bind need not be decided again.
package sqlpolicy
