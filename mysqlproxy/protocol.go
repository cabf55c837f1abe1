package mysqlproxy

// Capability flags (include/mysql_com.h; MariaDB shares the low 32 bits).
const (
	clientLongPassword     = 1 << 0 // also MariaDB's CLIENT_MYSQL
	clientFoundRows        = 1 << 1
	clientLongFlag         = 1 << 2
	clientConnectWithDB    = 1 << 3
	clientNoSchema         = 1 << 4
	clientCompress         = 1 << 5
	clientODBC             = 1 << 6
	clientLocalFiles       = 1 << 7
	clientIgnoreSpace      = 1 << 8
	clientProtocol41       = 1 << 9
	clientInteractive      = 1 << 10
	clientSSL              = 1 << 11
	clientIgnoreSigpipe    = 1 << 12
	clientTransactions     = 1 << 13
	clientReserved         = 1 << 14
	clientSecureConnection = 1 << 15
	clientMultiStatements  = 1 << 16
	clientMultiResults     = 1 << 17
	clientPSMultiResults   = 1 << 18
	clientPluginAuth       = 1 << 19
	clientConnectAttrs     = 1 << 20
	clientPluginAuthLenenc = 1 << 21
	clientCanHandleExpired = 1 << 22
	clientSessionTrack     = 1 << 23
	clientDeprecateEOF     = 1 << 24
	clientOptionalMetadata = 1 << 25
	clientZstdCompression  = 1 << 26
	clientQueryAttributes  = 1 << 27
)

// relayCaps are the flags that change what travels after authentication.
// They are negotiated with the client only when the upstream has them
// too, and keyhole logs in upstream with exactly the client's choice, so
// both legs speak the same protocol and packets relay unchanged.
//
// Never offered: COMPRESS (keyhole would have to inflate to decide),
// LOCAL_FILES (LOAD DATA LOCAL reads the agent's files), IGNORE_SPACE
// (changes how the server lexes function names, behind the analyzer's
// back), NO_SCHEMA and ODBC (legacy lexing switches), OPTIONAL_RESULTSET_METADATA
// (results without column definitions), QUERY_ATTRIBUTES (values sent
// beside the statement text: MariaDB has none, and MySQL exposes them to
// SQL through functions the analyzer does not see).
const relayCaps = clientFoundRows | clientLongFlag | clientProtocol41 | clientInteractive |
	clientTransactions | clientMultiStatements | clientMultiResults | clientPSMultiResults |
	clientSessionTrack | clientDeprecateEOF

// MariaDB's extended capabilities (include/mysql_com.h of MariaDB): a
// MariaDB server leaves CLIENT_MYSQL (bit 0, MySQL's LONG_PASSWORD) unset
// in its greeting and carries these in the last 4 of the greeting's 10
// reserved bytes; a client that also leaves bit 0 unset answers with its
// own in the last 4 of the handshake response's 23 filler bytes.
const (
	mariadbProgress         = 1 << 0
	mariadbComMulti         = 1 << 1
	mariadbBulkOperations   = 1 << 2
	mariadbExtendedMetadata = 1 << 3
	mariadbCacheMetadata    = 1 << 4
)

// relayExtCaps are the MariaDB extended flags relayed like relayCaps:
// EXTENDED_METADATA only adds a format or type name ("json", "uuid",
// "inet6") to each column definition after org_name, which keyhole reads
// no further than name; clients (mysql2, Connector/J 3) type JSON and UUID
// columns by it. STMT_BULK_OPERATIONS lets a client send
// COM_STMT_BULK_EXECUTE, decided as the statement it runs (onExecute);
// drivers (Connector/J, Connector/Node's batch) answer a bulk with one
// summed result, a row at a time with one per row. Never offered:
// PROGRESS (progress packets inside a result), COM_MULTI (several
// commands in one), CACHE_METADATA (results without column definitions),
// BULK_UNIT_RESULTS.
const relayExtCaps = mariadbExtendedMetadata | mariadbBulkOperations

// handshakeCaps are the flags keyhole handles itself in each handshake.
const handshakeCaps = clientLongPassword | clientConnectWithDB | clientSecureConnection |
	clientPluginAuth | clientPluginAuthLenenc | clientConnectAttrs | clientIgnoreSigpipe | clientReserved

// conservativeCaps are the relay flags every supported upstream (MySQL
// 5.7+, MariaDB 10.2+) has: offered while an upstream's own greeting has
// not been seen.
const conservativeCaps = relayCaps

// Server status flags (SERVER_STATUS_*).
const (
	serverStatusInTrans       = 0x0001
	serverStatusAutocommit    = 0x0002
	serverMoreResultsExist    = 0x0008
	serverStatusCursorExists  = 0x0040
	serverSessionStateChanged = 0x4000
)

// Session state change types (enum_session_state_type).
const sessionTrackSchema = 1

// Commands (enum_server_command).
const (
	comSleep            = 0x00
	comQuit             = 0x01
	comInitDB           = 0x02
	comQuery            = 0x03
	comFieldList        = 0x04
	comCreateDB         = 0x05
	comDropDB           = 0x06
	comRefresh          = 0x07
	comShutdown         = 0x08
	comStatistics       = 0x09
	comProcessInfo      = 0x0a
	comConnect          = 0x0b
	comProcessKill      = 0x0c
	comDebug            = 0x0d
	comPing             = 0x0e
	comTime             = 0x0f
	comDelayedInsert    = 0x10
	comChangeUser       = 0x11
	comBinlogDump       = 0x12
	comTableDump        = 0x13
	comConnectOut       = 0x14
	comRegisterSlave    = 0x15
	comStmtPrepare      = 0x16
	comStmtExecute      = 0x17
	comStmtSendLongData = 0x18
	comStmtClose        = 0x19
	comStmtReset        = 0x1a
	comSetOption        = 0x1b
	comStmtFetch        = 0x1c
	comDaemon           = 0x1d
	comBinlogDumpGTID   = 0x1e
	comResetConnection  = 0x1f
	comClone            = 0x20
	comStmtBulkExecute  = 0xfa // MariaDB
	comMulti            = 0xfe // MariaDB
)

var commandNames = map[byte]string{
	comSleep: "COM_SLEEP", comQuit: "COM_QUIT", comInitDB: "COM_INIT_DB", comQuery: "COM_QUERY",
	comFieldList: "COM_FIELD_LIST", comCreateDB: "COM_CREATE_DB", comDropDB: "COM_DROP_DB",
	comRefresh: "COM_REFRESH", comShutdown: "COM_SHUTDOWN", comStatistics: "COM_STATISTICS",
	comProcessInfo: "COM_PROCESS_INFO", comConnect: "COM_CONNECT", comProcessKill: "COM_PROCESS_KILL",
	comDebug: "COM_DEBUG", comPing: "COM_PING", comTime: "COM_TIME", comDelayedInsert: "COM_DELAYED_INSERT",
	comChangeUser: "COM_CHANGE_USER", comBinlogDump: "COM_BINLOG_DUMP", comTableDump: "COM_TABLE_DUMP",
	comConnectOut: "COM_CONNECT_OUT", comRegisterSlave: "COM_REGISTER_SLAVE", comStmtPrepare: "COM_STMT_PREPARE",
	comStmtExecute: "COM_STMT_EXECUTE", comStmtSendLongData: "COM_STMT_SEND_LONG_DATA",
	comStmtClose: "COM_STMT_CLOSE", comStmtReset: "COM_STMT_RESET", comSetOption: "COM_SET_OPTION",
	comStmtFetch: "COM_STMT_FETCH", comDaemon: "COM_DAEMON", comBinlogDumpGTID: "COM_BINLOG_DUMP_GTID",
	comResetConnection: "COM_RESET_CONNECTION", comClone: "COM_CLONE",
	comStmtBulkExecute: "COM_STMT_BULK_EXECUTE", comMulti: "COM_MULTI",
}

func commandName(c byte) string {
	if n, ok := commandNames[c]; ok {
		return n
	}
	return "unknown command"
}

// Authentication plugins.
const (
	pluginNative      = "mysql_native_password"
	pluginCachingSHA2 = "caching_sha2_password"
	pluginClear       = "mysql_clear_password"
)

// caching_sha2_password AuthMoreData bytes.
const (
	sha2RequestPublicKey = 0x02
	sha2FastAuthOK       = 0x03
	sha2FullAuth         = 0x04
)

// maxPreAuthPacket bounds every packet read before the agent is
// authenticated (handshake response, auth switch and RSA responses).
const maxPreAuthPacket = 16 << 10

// statementIDLast is MariaDB's "the statement prepared last" id in
// COM_STMT_EXECUTE (a pipelined prepare+execute).
const statementIDLast = 0xffffffff
