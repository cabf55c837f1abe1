// Package pgproxy is keyhole's Postgres wire front end and upstream relay.
//
// Every client connection is one value whose serve method runs these phases
// in order; the first error ends the connection and is turned into exactly
// one ErrorResponse by wireError:
//
//  1. startup: SSLRequest (TLS when configured, else 'N'), GSSENCRequest
//     ('N'), CancelRequest (forwarded to the upstream that owns the key),
//     StartupMessage v3.x (replication and startup options refused).
//  2. authenticate: SPIFFE client certificate, else SCRAM-SHA-256 when the
//     user has a stored verifier, else a cleartext agent token (TLS or
//     loopback only). SCRAM guesses are limited per (source address,
//     agent) by the shared identity.Limiter; tokens are not limited.
//  3. credentials: the agent's role picks the upstream; creds.Source hands
//     out a short-lived lease for (agent, role, upstream).
//  4. dial upstream: pgconn logs in with the lease, the connection is
//     hijacked, its ParameterStatus values are relayed and the client gets
//     keyhole's own BackendKeyData (mapped to the upstream's for cancels).
//  5. relay: every Query and Parse is decided by the sqlpolicy.Decider
//     before anything is sent upstream; denied text never leaves keyhole.
//     The session ends when the lease is revoked, the agent's authority
//     expires or the policy forgets the agent. Messages are relayed as
//     received (only those keyhole must inspect are decoded) and written
//     in batches: a direction writes once its peer has sent nothing more.
//
// Extended protocol: the text is decided at Parse; Bind, Describe and
// Execute of a statement or portal keyhole did not allow (denied or
// unknown name) are refused and never forwarded. The refusal is sent once
// the upstream has answered the messages before it (so a client that
// Flushes sees it); then keyhole, like Postgres, discards messages until
// Sync and answers ReadyForQuery with the upstream's true transaction
// status. Only the first error of a sync block reaches the client.
//
// Audit: one statement event per simple Query (when it completes, with
// rows and error), per denied Parse, and per executed portal (with rows).
//
// max_rows (DataRows, and COPY TO STDOUT rows, per statement): rows past
// the role's cap are not relayed; the upstream
// statement is cancelled and the client gets 54000 before ReadyForQuery.
// Known gap: statements pipelined behind the cut one in the same sync
// block are already upstream; if the cancel lands after the cut statement
// finished they run, though the client (as after any error) treats them
// as skipped.
//
// Upstream database: Upstream.Database when set, else the database the
// client asked for. Startup parameters passed upstream: application_name,
// DateStyle, TimeZone, IntervalStyle, extra_float_digits;
// client_encoding is always UTF8; options and replication are refused.
//
// Shutdown: idle sessions end at once; busy ones when their statement or
// transaction completes, or at the deadline (the upstream statement is
// then cancelled).
//
// SQLSTATEs of session-ending errors: 57P01 credentials revoked / shutdown,
// 28000 agent expired or removed from the policy, 57P05 idle timeout,
// 08P01 protocol violation, 08001 upstream or credentials unavailable,
// 53300 too many connections.
package pgproxy
