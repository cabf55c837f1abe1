// Package mysqlproxy is keyhole's MySQL/MariaDB wire front end and
// upstream relay.
//
// Every client connection is one value whose serve method runs these
// phases in order; the first error ends the connection and is turned into
// exactly one ERR packet (errno and SQLSTATE together) by wireError:
//
//  1. greet: HandshakeV10 with keyhole's connection id, a fresh scramble,
//     caching_sha2_password as the default plugin, and the capability
//     flags every configured upstream has (learned from their greetings;
//     see relayCaps). TLS on an SSL request. The handshake response picks
//     the client character set: big5, sjis, cp932, gbk and gb18030 (which
//     can hide a backslash in a multibyte character) and unknown
//     collations are refused (1115). Before authentication every packet
//     is bounded by 16 KiB (1043 past it) and read as it arrives.
//  2. authenticate: a SPIFFE client certificate; else the agent's secret
//     against its stored MySQL verifier (mysql_native_password or
//     caching_sha2_password's scramble, no TLS needed; a client that
//     answers in another plugin is switched); else an agent token sent
//     whole — caching_sha2_password full authentication over TLS, or from
//     loopback with keyhole's RSA key, or mysql_clear_password for clients
//     that enable it. A token cannot travel in mysql_native_password (it
//     sends a hash): such clients are switched to caching_sha2_password,
//     and one that cannot follow gets 1251. Failures are 1045 (28000),
//     counted by the shared failure limiter.
//  3. credentials: the agent's role picks the upstream; the database named
//     at connect is decided as USE `db`; creds.Source hands out a lease
//     for (agent, role, upstream).
//  4. dial upstream: keyhole logs in as the lease's user with exactly the
//     relay flags negotiated with the client (both legs then frame
//     results alike and packets pass unchanged), the client's collation
//     and database; sets the role's resource limits (SET SESSION of
//     Decider.UpstreamSettings) and reads back the session's sql_mode,
//     client character set and database, which it hands the analyzer's
//     session (they decide how text is lexed and where names resolve) —
//     pipelined, one round trip; then relays the upstream's OK to the
//     client. A limit the server refuses, or a mode or character set the
//     analyzer cannot lex safely, ends the session.
//  5. relay: one command at a time (MySQL's protocol is half duplex).
//     COM_QUERY text (multi-statement text as a whole) and
//     COM_STMT_PREPARE are decided before anything is sent upstream;
//     COM_STMT_EXECUTE is decided again (a policy reload may have narrowed
//     the role), accepts only statement ids prepared through keyhole, and
//     goes upstream without a cursor, so COM_STMT_FETCH is refused;
//     MariaDB's COM_STMT_BULK_EXECUTE (offered with EXTENDED_METADATA, the
//     MariaDB extended flags keyhole relays) likewise.
//     COM_INIT_DB and COM_FIELD_LIST are decided as the statements they
//     are equivalent to (myanalyze.InitDBText, FieldListText), and
//     COM_FIELD_LIST returns only the columns the role may read (a refused
//     one is not audited: clients send it on their own, the mysql CLI's
//     completion for every table it lists);
//     COM_PING, COM_STATISTICS, COM_SET_OPTION and COM_QUIT pass;
//     COM_RESET_CONNECTION resets the analyzer's session and sets the
//     reset upstream session up as in phase 4 before the client gets its
//     OK. A KILL sent alone is never relayed (its id is keyhole's, not the
//     upstream's): one of the agent's own connections has its statement
//     stopped (KILL QUERY, what the mysql CLI sends on Ctrl-C) or ends
//     with 1927; any other id gets 1094. COM_CHANGE_USER, replication,
//     COM_PROCESS_KILL and unknown commands are refused with 1047 and the
//     session goes on. Responses are relayed as raw packets (only the
//     packets that end results, and row boundaries, are looked at: step,
//     in answer.go) and written once per burst the upstream sends, not
//     once per packet. A session with no TLS on either leg is relayed on
//     one of the process's event loops (loop.go; Config.Relay), with no
//     goroutine of its own: one read and one write per readable event,
//     the same decisions and the same answer walk; whatever may block (a
//     command larger than the read buffer, COM_INIT_DB, COM_FIELD_LIST,
//     COM_RESET_CONNECTION, KILL, a denial that may open an access
//     request, a stop during a command, the session's end) goes to a
//     goroutine with every buffered byte, which hands the session back at
//     its next idle point. On a goroutine over a plain TCP upstream the
//     wait for an answer is armed before the command is written, so no
//     read is tried that must fail (request).
//     A command must start at sequence id 0 (else 1156); one over 64 KiB
//     reserves its size from the server's buffer budget
//     (Limits.BufferMemory) before its bytes are read, and releases it
//     once answered.
//
// A refused statement gets 1142 (table) or 1143 (column), SQLSTATE 42000,
// with the rule, table.column, label and what the agent may use instead
// in the message; one that names what does not exist gets the server's
// own errno (1064, 1146, 1054, 1305, 1243; 1049 for a database); like the
// server's own errors it leaves an open transaction as it was. The session ends with 1053 when the lease
// is revoked or keyhole shuts down, 1045 when the agent expires, leaves
// the policy or is revoked (RevokeAgent), 4031 on the idle timeout, 1047
// (08S01) on bytes that are not the protocol, 1153 on a packet over
// Limits.MaxPacketSize, 1041 when the buffer budget has no room for a
// command within 10s, 1148 when the server asks for a client file (LOAD
// DATA LOCAL, never negotiated), and 1105 (HY000) when the upstream or its
// credentials are unavailable (never with Vault's or the upstream's text).
//
// max_rows (per result set, text and binary rows): past the role's cap no
// row is relayed, the upstream statement is stopped with KILL QUERY on a
// side connection logged in as the same user, the rest of the response is
// drained, and the client gets 1104 (42000); the session stays usable.
//
// Audit: one statement event per COM_QUERY and COM_STMT_EXECUTE (when it
// completes, with rows and error), per denied prepare, per COM_INIT_DB
// and per allowed COM_FIELD_LIST; connection events as on Postgres, with
// protocol "mysql".
// A statement whose answer does not complete is audited too: when the
// client is gone keyhole reads the answer to its end (killing a statement
// still sending rows); when the session is stopped from outside it shuts
// the upstream's write side, kills the statement and reads its answer
// before closing; a lost upstream is audited with 1105.
//
// Shutdown: idle sessions end at once, busy ones when their command and
// open transaction complete, or at the deadline (the statement in flight
// is then killed).
package mysqlproxy
