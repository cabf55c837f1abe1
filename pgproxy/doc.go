// Package pgproxy is keyhole's Postgres wire front end and upstream relay.
//
// Every client connection is one value (conn.go) whose serve method runs
// these phases in order; the first error ends the connection and is turned
// into exactly one ErrorResponse by wireError:
//
//  1. startup (startup.go): SSLRequest (TLS when configured, else 'N'),
//     GSSENCRequest ('N'), CancelRequest (forwarded to the upstream that
//     owns the key), StartupMessage v3.x (replication and startup options
//     refused; client_encoding must be a spelling Postgres reads as UTF8).
//  2. authenticate (conn.go): SPIFFE client certificate, else SCRAM-SHA-256
//     when the user has a stored verifier, else a cleartext agent token
//     (TLS or loopback only). SCRAM guesses are limited per (source
//     address, agent) by the shared identity.Limiter; tokens are not
//     limited. Until the agent is authenticated a client message may not exceed 32 KiB.
//  3. credentials (dial.go): the agent's role picks the upstream;
//     creds.Source hands out a short-lived lease for (agent, role,
//     upstream).
//  4. dial upstream (dial.go, login.go): a reset session kept from an
//     earlier client that logged in exactly so is taken when there is
//     one (reuse.go); else keyhole logs in with the lease
//     (TLS when the upstream has a TLS configuration; trust, cleartext,
//     md5 or SCRAM-SHA-256, with channel binding over TLS when offered;
//     a SCRAM password that is not ASCII goes through pgconn for
//     SASLprep) and application_name "keyhole:<agent> <client's
//     application_name>" (63 bytes, as pg_stat_activity shows it); the
//     server's ParameterStatus values are relayed and the client gets
//     keyhole's own BackendKeyData (mapped to the upstream's for cancels).
//     Where the upstream's sessions do not log in as its catalog's login
//     (Vault), keyhole then runs the analyzer's session probe (probe.go;
//     sqlpolicy.Decider.LoginProbe): one simple Query whose row tells the
//     session its starting search path, before the client gets
//     ReadyForQuery. A failed or malformed answer refuses the session
//     (08001). Static logins have no probe and no extra round trip.
//  5. relay (relay.go): until either side ends.
//     - The client goroutine (client.go) reads the client, decides every
//     Query and Parse with the sqlpolicy.Decider before anything is sent
//     upstream, and forwards messages as received, in batches. A Bind of
//     a statement Parsed in an earlier sync block is decided again (a
//     reload may have narrowed the role), unless the Decider vouches
//     (sqlpolicy.EpochDecider) that its policy generation and the
//     session's generation are those the allow was made under. For each
//     message the server will answer it queues a typed request (queue.go),
//     handed to the upstream side before the bytes leave.
//     - The upstream side (upstream.go) matches each answer to its
//     request by the protocol's rules (after an error the server skips to
//     Sync, simple Queries included; a Query ends in its own
//     ReadyForQuery; Execute ends in CommandComplete, EmptyQueryResponse,
//     PortalSuspended or ErrorResponse), relays it, and audits what ran.
//     Messages pipelined behind a statement that starts COPY FROM STDIN,
//     before its CopyDone or CopyFail, are read by the server as COPY
//     input: a Sync there is ignored (and no answer is awaited), anything
//     else ends the session with the server's 08P01.
//     An answer the rules do not allow ends the session.
//     - The goroutine relay (relay.go) reads the upstream only while it
//     owes answers: by the client goroutine itself after a batch ending
//     in Sync or Query (one goroutine per round trip), else by an
//     upstream goroutine that ends when nothing is owed. An idle session
//     on it is one goroutine blocked on the client, with no read or
//     write buffer; a message the server sends on its own while nothing
//     is owed (a FATAL at shutdown or pg_terminate_backend) is read with
//     the next answer, as a client connected to Postgres directly would
//     read it.
//     - The loop relay (loop.go; Limits.Relay "loop", the default) runs
//     the steady state of a session with no TLS on either side on one of
//     the process's shared epoll loops (internal/evloop), with the same
//     message handling: no goroutine and no buffer while idle, and a
//     message the server sends on its own is relayed when it comes. The
//     session moves there at a quiet point of the goroutine relay and
//     back to it for what may wait (COPY FROM STDIN, a message larger
//     than 8 KiB, a name whose creation is not settled) and to end.
//     The session ends when the lease is revoked, the agent's authority
//     expires, the policy forgets the agent, or it has been idle (nothing
//     in flight, nothing sent) for Limits.IdleTimeout (default 1h). When
//     the client leaves with everything answered, outside a transaction,
//     the upstream session is reset (DISCARD ALL) and kept for reuse
//     (reuse.go); otherwise keyhole passes Terminate on and still reads
//     and audits what the server answers to what it was sent.
//
// Refusals: a message keyhole refuses (denied Query or Parse, a Parse
// declaring a parameter of a user-defined type, whose conversion at Bind
// can run code the text does not show, a Bind, Describe or Execute of a
// statement or portal keyhole did not allow, a FunctionCall) never
// reaches the server; in its place keyhole sends a
// statement that fails in the server's raw parser, and the client gets the
// refusal in place of that error. So the server's own transaction state
// stays the truth: the sync block's implicit transaction rolls back, an
// open transaction is aborted (25P02 afterwards, COMMIT becomes ROLLBACK,
// ROLLBACK TO SAVEPOINT recovers), and the rest of the block is skipped,
// with ReadyForQuery reporting the status Postgres reports. Like Postgres,
// keyhole discards the client's messages after a refused extended message
// until Sync.
//
// Names: keyhole tracks every prepared statement and portal by what the
// server answered to the message that created it, and refuses a name the
// server did not accept. SQL-level and protocol-level prepared statements
// share one namespace: a DEALLOCATE (ALL, DISCARD ALL) an allowed text
// runs drops the Parsed statements it names for the client at once, and a
// Close of a name drops the analyzer's PREPAREd statement of it, so a
// name re-created by the other level is never run as the text keyhole
// decided for it. Cursors DECLAREd by allowed text are portals the
// client may Describe, Execute (with a row limit) and Close; their ends
// (CLOSE, COMMIT unless WITH HOLD, ROLLBACK, ROLLBACK TO SAVEPOINT,
// DISCARD ALL) are followed from the server's command tags, and the
// savepoints from the statements' names (sqlpolicy.Statement.Savepoint):
// a ROLLBACK TO a savepoint drops the portals opened after it was set, as
// the server does (pgJDBC's autosave=always keeps its fetch-size portal
// across the ROLLBACK TO its newest autosave savepoint), and a RELEASE
// moves the portals opened inside the released savepoints to the level it
// was set at. A SAVEPOINT or RELEASE whose name keyhole did not read makes
// it drop, until the block ends, every portal opened while a savepoint
// may have been held at a ROLLBACK TO. A cursor or
// named portal outlives the decision that allowed it: after a policy
// change (a reload, a grant's end) its statement is decided again before
// each FETCH, MOVE or Execute of it (conn.portalStands); FETCH and MOVE of
// a named protocol portal too. A name whose
// re-creation in an earlier sync block is still unanswered, while an older
// object of the name may exist upstream, is used only once the server's
// answer is known.
//
// Audit: one statement event per simple Query and per Execute (a portal
// fetched in parts gives one event per fetch, "suspended" until the last,
// as the server logs it), with rows and error; one for an allowed
// statement whose Bind the server refused (planning folds SELECT 1/0, a
// parameter is not valid input: it reached the server, and its Execute is
// skipped); one per denied text; a run
// the session ended under before the server answered is audited with
// outcome "unknown".
//
// max_rows (DataRows, and COPY TO STDOUT rows, per statement, across the
// Executes and the FETCH statements that fetch a portal's or cursor's): rows past the role's cap are not relayed; the
// client gets 54000 at once, the upstream statement is cancelled, and the
// rest of the block is not relayed. The cancel is sent only while
// nothing past the block is upstream (the client's next messages wait
// for it to land): a client that pipelined its next block may have the
// server running it already, and the statement then runs to its end,
// its rows dropped, rather than cancel a statement whose answer the
// client gets. Known gap: the cancel races the
// statement; if it lands after the statement finished, the statement's
// transaction is not aborted (the status after the cut says so) and
// statements pipelined behind it in the same sync block run, though the
// client (as after any error) treats them as skipped; they are audited as
// they ran.
//
// Named objects: a session holds at most Limits.MaxNames (10000) named
// prepared statements, and as many named portals and cursors; the Parse,
// Bind, DECLARE text or prepared DECLARE's Execute that would create one
// more is refused (54000) like any refused message, and the session goes
// on. The unnamed statement and portal are not counted.
//
// Memory: client message bodies are read as they arrive, so an announced
// length costs nothing until the bytes come; a message larger than the
// 8 KiB base buffer first reserves its size from a process-wide budget
// (Limits.BufferMemory), waiting for room, and large buffers are dropped
// once drained. A session on a loop stops reading the client while 65536
// of its requests are unanswered (a client pipelining without reading
// answers), as the goroutine relay's blocked writes do.
//
// application_name: a SET, SET LOCAL or set_config that would drop the
// "keyhole:<agent>" prefix is refused (keyhole never rewrites the text it
// decided); RESET returns to the connection's value.
//
// Upstream database: Upstream.Database when set, else the database the
// client asked for. Startup parameters passed upstream: DateStyle,
// TimeZone, IntervalStyle, extra_float_digits (and application_name as
// above); client_encoding is always UTF8; options and replication are
// refused.
//
// Shutdown: idle sessions end at once; busy ones when their statement or
// transaction completes, or at the deadline (the upstream statement is
// then cancelled).
//
// SQLSTATEs of session-ending errors: 57P01 credentials revoked / shutdown,
// 28000 agent expired or removed from the policy, 57P05 idle timeout,
// 08P01 protocol violation, 08001 upstream or credentials unavailable,
// 08006 upstream connection lost or its answers broke the protocol,
// 53300 too many connections, 53200 no buffer memory for a message.
package pgproxy
