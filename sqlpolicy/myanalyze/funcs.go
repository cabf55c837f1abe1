package myanalyze

import (
	"strings"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// builtinSchema is the FuncRef.Schema of MariaDB's native functions.
const builtinSchema = "builtin"

// builtinFuncs are MariaDB 10.11 native functions (names as TiDB's parser
// reports them, lower-case) that compute a value from their arguments and
// the session: they read no table and change nothing beyond the session's
// own user variables. A name not listed here and not a stored function is
// refused. Only names MariaDB itself resolves as native belong here: a
// name TiDB or MySQL 8 knows but MariaDB does not (REGEXP_LIKE,
// BIN_TO_UUID, TO_NUMBER ...) is a call of the stored function or UDF of
// that name in the current database, which runs with its definer's
// rights (TestBuiltinsAreNative checks every name against the server).
var builtinFuncs = setOf(`
	abs acos asin atan atan2 ceil ceiling conv cos cot crc32 crc32c degrees exp floor ln log log10 log2 mod
	pi pow power radians rand round sign sin sqrt tan truncate
	ascii bin bit_length char char_length character_length chr concat concat_ws elt export_set field
	find_in_set format from_base64 hex insert instr lcase left length locate lower lpad ltrim
	make_set mid oct octet_length ord position quote repeat replace reverse right rpad rtrim soundex space
	strcmp substr substring substring_index to_base64 trim ucase unhex upper weight_string regexp_instr
	regexp_replace regexp_substr natural_sort_key sformat
	adddate addtime convert_tz curdate current_date current_time current_timestamp curtime date date_add
	date_format date_sub datediff day dayname dayofmonth dayofweek dayofyear extract from_days
	from_unixtime get_format hour last_day localtime localtimestamp makedate maketime microsecond minute
	month monthname now period_add period_diff quarter sec_to_time second str_to_date subdate subtime
	sysdate time time_format time_to_sec timediff timestamp timestampadd timestampdiff to_days to_seconds
	unix_timestamp utc_date utc_time utc_timestamp week weekday weekofyear year yearweek
	coalesce greatest least if ifnull isnull nullif nvl nvl2 interval decode_oracle
	cast convert binary charset collation coercibility
	json_array json_array_append json_array_insert json_compact json_contains json_contains_path
	json_depth json_detailed json_equals json_exists json_extract json_insert json_keys json_length
	json_loose json_merge json_merge_patch json_merge_preserve json_normalize json_object json_overlaps
	json_pretty json_query json_quote json_remove json_replace json_search json_set json_type
	json_unquote json_valid json_value
	md5 sha sha1 sha2 aes_encrypt aes_decrypt compress uncompress uncompressed_length random_bytes
	des_encrypt des_decrypt encode decode encrypt old_password password
	inet_aton inet_ntoa inet6_aton inet6_ntoa is_ipv4 is_ipv6 is_ipv4_compat is_ipv4_mapped
	uuid uuid_short sys_guid
	connection_id current_user current_role database schema user session_user system_user version
	found_rows row_count last_insert_id last_value
	default values name_const
	bit_count
	column_add column_check column_create column_delete column_exists column_get column_json column_list
	extractvalue updatexml
	st_astext st_aswkt st_asbinary st_aswkb st_geomfromtext st_geomfromwkb st_x st_y st_distance
	st_contains st_within st_intersects point linestring polygon
	to_char
	count sum avg max min group_concat bit_and bit_or bit_xor std stddev stddev_pop stddev_samp
	var_pop var_samp variance json_arrayagg json_objectagg
	row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
	median percentile_cont percentile_disc
	`)

// dangerousFuncs are native functions refused whatever the policy says:
// they read files, wait on or signal other sessions, or burn server time.
var dangerousFuncs = map[string]sqlpolicy.Problem{
	"load_file": {Code: sqlpolicy.ProblemFileAccess, Detail: "LOAD_FILE reads a file on the database server"},
	"sleep":     {Code: sqlpolicy.ProblemDangerousFunc, Detail: "SLEEP holds a server thread"},
	"benchmark": {Code: sqlpolicy.ProblemDangerousFunc, Detail: "BENCHMARK burns server CPU"},
	"get_lock": {Code: sqlpolicy.ProblemDangerousFunc,
		Detail: "named locks (GET_LOCK) are shared with other sessions"},
	"release_lock":      {Code: sqlpolicy.ProblemDangerousFunc, Detail: "named locks are shared with other sessions"},
	"release_all_locks": {Code: sqlpolicy.ProblemDangerousFunc, Detail: "named locks are shared with other sessions"},
	"is_free_lock":      {Code: sqlpolicy.ProblemDangerousFunc, Detail: "named locks are shared with other sessions"},
	"is_used_lock": {Code: sqlpolicy.ProblemDangerousFunc,
		Detail: "IS_USED_LOCK reveals other sessions' connection ids"},
	"master_pos_wait":  {Code: sqlpolicy.ProblemDangerousFunc, Detail: "replication wait functions block on server state"},
	"master_gtid_wait": {Code: sqlpolicy.ProblemDangerousFunc, Detail: "replication wait functions block on server state"},
	"source_pos_wait":  {Code: sqlpolicy.ProblemDangerousFunc, Detail: "replication wait functions block on server state"},
	"nextval":          {Code: sqlpolicy.ProblemUnsupported, Detail: "sequences (NEXT VALUE FOR, NEXTVAL) are not modelled"},
	"lastval":          {Code: sqlpolicy.ProblemUnsupported, Detail: "sequences (PREVIOUS VALUE FOR, LASTVAL) are not modelled"},
	"setval":           {Code: sqlpolicy.ProblemUnsupported, Detail: "sequences (SETVAL) are not modelled"},
}

// quotedKeywordFuncs are the builtinFuncs names MariaDB's grammar knows as
// keywords, not through its registry of native functions
// (item_create.cc): written as a quoted identifier (`now`(), `left`(x,
// 1), `count`(x)) such a name is a call of the stored function of that
// name in the current database, which runs with its definer's rights,
// where keyhole's parser still sees the built-in. (Names of the
// registry, `abs`(x) or `concat`(x), stay the built-in quoted or not.)
// TestQuotedKeywordFuncs checks the list against the server.
var quotedKeywordFuncs = setOf(`
	adddate ascii avg binary bit_and bit_or bit_xor cast char charset column_add column_create
	column_delete column_get convert count cume_dist curdate current_date current_role current_time
	current_timestamp current_user curtime date date_add date_sub day default dense_rank extract
	first_value get_format group_concat hour if insert interval json_arrayagg json_objectagg lag
	last_value lead left linestring localtime localtimestamp max median mid min minute month now
	nth_value ntile percent_rank percentile_cont percentile_disc point polygon position rank repeat
	replace right row_number second session_user std stddev stddev_pop stddev_samp subdate substr
	substring sum sysdate system_user time timestamp timestampadd timestampdiff trim truncate user
	utc_date utc_time utc_timestamp values var_pop var_samp variance weight_string year
	`)

// spacedKeywordFuncs are the builtinFuncs names MariaDB's lexer takes
// for function keywords only when "(" follows at once (lex.h
// sql_functions; with IGNORE_SPACE, also after white space): now (),
// count (id) or substr/**/(x, 1) call the stored function of that name.
// TestQuotedKeywordFuncs checks the list against the server.
var spacedKeywordFuncs = setOf(`
	adddate bit_and bit_or bit_xor cast count cume_dist curdate curtime date_add date_sub dense_rank
	extract first_value group_concat json_arrayagg json_objectagg lag lead linestring max median mid
	min now nth_value ntile percent_rank percentile_cont percentile_disc point polygon position rank
	session_user std stddev stddev_pop stddev_samp subdate substr substring sum system_user trim
	var_pop var_samp variance
	`)

// spacedCall reports whether text has name as a word followed by white
// space or a comment and then "(" (text in string literals that looks
// so counts too, which errs on the safe side).
func spacedCall(text, name string) bool {
	lower := strings.ToLower(text)
	for i := 0; ; {
		j := strings.Index(lower[i:], name)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(name)
		word := (start == 0 || !isIdentByte(lower[start-1]) && !strings.ContainsRune(".`@", rune(lower[start-1]))) &&
			(end == len(lower) || !isIdentByte(lower[end]))
		if next := skipBlank(lower, end); word && next > end && next < len(lower) && lower[next] == '(' {
			return true
		}
		i = end
	}
}

// quotedCall reports whether text calls name written as a quoted
// identifier: `name` (or "name", an identifier under ANSI_QUOTES)
// followed, after white space and comments, by "(". Text in string
// literals that looks so counts too (the call is then refused, which
// errs on the safe side).
func quotedCall(text, name string) bool {
	lower := strings.ToLower(text)
	for _, q := range []string{"`", `"`} {
		pat := q + name + q
		for i := 0; ; {
			j := strings.Index(lower[i:], pat)
			if j < 0 {
				break
			}
			k := i + j + len(pat)
			if next := skipBlank(lower, k); next < len(lower) && lower[next] == '(' {
				return true
			}
			i = k
		}
	}
	return false
}

// skipBlank returns the offset of the first byte at or after i that is
// not white space or in a comment.
func skipBlank(s string, i int) int {
	for i < len(s) {
		switch {
		case isSpace(s[i]):
			i++
		case strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return len(s)
			}
			i += 2 + j + 2
		case s[i] == '#' || strings.HasPrefix(s[i:], "-- "):
			i = lineEnd(s, i)
		default:
			return i
		}
	}
	return i
}
