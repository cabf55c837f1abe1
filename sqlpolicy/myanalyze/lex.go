package myanalyze

import (
	"strings"

	"github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// lexMode is the part of sql_mode that changes how MariaDB splits text
// into tokens.
type lexMode struct {
	ansiQuotes         bool // "x" is an identifier, not a string
	noBackslashEscapes bool // '\' is an ordinary character in strings
}

// scanner walks text the way MariaDB's lexer (sql_lex.cc) finds the
// boundaries of strings, quoted identifiers and comments, so that keyhole
// refuses text whose boundaries TiDB's lexer would see elsewhere:
//
//   - /*! ... */ and /*!NNNNN ... */ run on MariaDB (and TiDB always
//     parses their content), /*M! ... */ and /*M!NNNNNN ... */ run on
//     MariaDB only, /*T! ... */ on TiDB only: all refused here, after
//     expandExecutable replaced those MariaDB runs with their content;
//   - /*+ ... */ is an optimizer hint to TiDB and MySQL 8 and a comment
//     to MariaDB 10.11; a SET_VAR hint in it would change sql_mode on
//     MySQL: refused;
//   - "-- " ends a line in MariaDB after a space or a control character,
//     in TiDB after a Unicode space (which includes the bytes 0x85 and
//     0xA0 when a Latin-1 byte is read as a rune): control bytes other
//     than ordinary white space, and any byte above 0x7F, are refused
//     outside quotes and comments; NUL is refused everywhere;
//   - backslash escapes (unless NO_BACKSLASH_ESCAPES) and double quotes
//     (strings, or identifiers under ANSI_QUOTES) follow the session's
//     sql_mode, which the parser is given as well.
type scanner struct {
	s    string
	mode lexMode
	// maxDepth and maxTerms, when positive, bound the nesting of
	// parentheses and the length of operator chains (summed over the
	// enclosing levels; see Options.MaxTerms): TiDB's parser builds a
	// tree level per operator and parenthesis, and walks it recursively.
	maxDepth, maxTerms int
	// sessionKeyed is set when the normalized form is keyed on the
	// session's lexing mode (NormalizeIn): every string literal the mode
	// makes one is replaced, escaped or double-quoted ones included.
	sessionKeyed bool
}

// prevTok is what the last significant token was, for telling a string
// literal that is a value from one that is a name.
type prevTok uint8

const (
	prevStart   prevTok = iota // start of text
	prevPunct                  // an operator, '(' or ','
	prevValueKw                // a keyword after which a string is a value (LIKE, THEN ...)
	prevName                   // an identifier or other keyword, a number, ')', '@'
	prevValue                  // a string literal replaced by '?'
	prevKept                   // a string literal kept verbatim
)

// valueKeywords are the keywords after which a string literal is a value.
// After any other word (a column, AS, DISTINCT ...), a number or ')', a
// string is, or may be, an alias: SELECT expr [AS] 'name' names the
// column, and the name decides what outer references bind to.
var valueKeywords = setOf(`SELECT WHERE AND OR XOR NOT LIKE RLIKE REGEXP IS IN THEN ELSE WHEN CASE INTERVAL
	BINARY DATE TIME TIMESTAMP SEPARATOR ESCAPE VALUES VALUE SET BETWEEN DIV MOD HAVING ON LIMIT OFFSET
	AGAINST DEFAULT RETURN SOUNDS ANY ALL SOME EXISTS DO`)

// chainWords are the keywords that chain operands into one tree level
// each (a AND b AND c, t JOIN u JOIN v, SELECT ... UNION SELECT ...).
var chainWords = setOf(`AND OR XOR NOT DIV MOD JOIN UNION EXCEPT INTERSECT LIKE REGEXP RLIKE IS BETWEEN IN`)

// token kinds the normalizer cares about.
const (
	tokOther = iota
	tokString
	tokNumber
)

// check scans the whole text and returns the first Problem, or nil.
func (sc scanner) check() *sqlpolicy.Problem {
	_, p := sc.walk(nil)
	return p
}

// walk scans the text, calling emit (when non-nil) for every literal it
// may replace and for everything between. It returns the problem that
// stopped it.
func (sc scanner) walk(emit func(kind int, text string)) (int, *sqlpolicy.Problem) {
	s := sc.s
	out := func(kind int, from, to int) {
		if emit != nil && to > from {
			emit(kind, s[from:to])
		}
	}
	start := 0 // start of pending "other" text
	i := 0
	last := prevStart
	// terms[d] counts the operators of the current comma-separated item
	// at paren depth d; sum is their total over the open levels.
	terms := []int{0}
	sum := 0
	term := func() *sqlpolicy.Problem {
		if sc.maxTerms <= 0 {
			return nil
		}
		terms[len(terms)-1]++
		sum++
		if sum > sc.maxTerms {
			return &sqlpolicy.Problem{Code: sqlpolicy.ProblemTooComplex,
				Detail: "the statement chains too many operators, joins or set operations to analyze"}
		}
		return nil
	}
	for i < len(s) {
		c := s[i]
		if sc.maxDepth > 0 {
			switch c {
			case '(':
				terms = append(terms, 0)
				if len(terms)-1 > sc.maxDepth {
					return i, &sqlpolicy.Problem{Code: sqlpolicy.ProblemTooComplex,
						Detail: "the statement nests parentheses too deeply to analyze"}
				}
			case ')':
				if len(terms) > 1 {
					sum -= terms[len(terms)-1]
					terms = terms[:len(terms)-1]
				}
			case ',', ';':
				sum -= terms[len(terms)-1]
				terms[len(terms)-1] = 0
			case '+', '-', '*', '/', '%', '&', '|', '^', '<', '>', '=', '!', '~':
				if p := term(); p != nil {
					return i, p
				}
			}
		}
		switch {
		case c == 0:
			return i, lexProblem("the text contains a NUL byte")
		case c == '\'' || (c == '"' && !sc.mode.ansiQuotes):
			end, esc, ok := sc.quoted(i, c, !sc.mode.noBackslashEscapes)
			if !ok {
				return i, &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnparseable, Detail: "unterminated string literal"}
			}
			// Unless the normalized form is keyed on the session's mode, a
			// string that has a backslash, or is double-quoted, lexes
			// differently under another sql_mode: it is kept verbatim, so
			// texts that share a normalized form share their token
			// boundaries under every mode. A string that may be a name
			// (an alias) is kept too; one after an introducer (_utf8'x',
			// N'x', X'1F') is part of that token.
			value := last == prevStart || last == prevPunct || last == prevValueKw || last == prevValue
			if value && !isIdentByte(prevByte(s, i)) && (sc.sessionKeyed || c == '\'' && !esc) {
				out(tokOther, start, i)
				out(tokString, i, end)
				start = end
				last = prevValue
			} else {
				last = prevKept
			}
			i = end
		case c == '"' || c == '`':
			end, _, ok := sc.quoted(i, c, false)
			if !ok {
				return i, &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnparseable, Detail: "unterminated quoted identifier"}
			}
			i = end
			last = prevName
		case c == '#':
			i = lineEnd(s, i)
		case c == '-' && i+1 < len(s) && s[i+1] == '-' && (i+2 == len(s) || s[i+2] <= ' ' || s[i+2] == 0x7f):
			// MariaDB: "--" then a space or a control character starts a
			// comment. Control characters other than white space are
			// refused below, so both lexers agree when the text passes.
			if i+2 < len(s) && !isSpace(s[i+2]) {
				return i, lexProblem("a \"--\" comment followed by a control character")
			}
			i = lineEnd(s, i)
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			end, p := sc.comment(i)
			if p != nil {
				return i, p
			}
			i = end
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			end := numberEnd(s, i)
			if end > i && !isIdentByte(prevByte(s, i)) && prevByte(s, i) != '.' && prevByte(s, i) != '@' &&
				(end == len(s) || !isIdentByte(s[end])) {
				out(tokOther, start, i)
				out(tokNumber, i, end)
				start = end
				i = end
				last = prevName
				continue
			}
			last = prevName
			// Part of an identifier (t1, 1abc, 0xZZ): skip the word.
			for i < len(s) && (isIdentByte(s[i]) || s[i] == '.') {
				if s[i] >= 0x80 {
					return i, lexProblem("a byte above 0x7F outside quotes (quote non-ASCII identifiers with backticks)")
				}
				i++
			}
		case isWordStart(c) && !isIdentByte(prevByte(s, i)):
			j := i
			for j < len(s) && isIdentByte(s[j]) && s[j] < 0x80 {
				j++
			}
			if sc.maxTerms > 0 && j-i <= 9 && chainWord(s[i:j]) {
				if p := term(); p != nil {
					return i, p
				}
			}
			last = prevName
			if j-i <= 9 && wordIn(valueKeywords, s[i:j]) {
				last = prevValueKw
			}
			i = j
			if i < len(s) && s[i] >= 0x80 {
				return i, lexProblem("a byte above 0x7F outside quotes (quote non-ASCII identifiers with backticks)")
			}
		case c >= 0x80:
			return i, lexProblem("a byte above 0x7F outside quotes (quote non-ASCII identifiers with backticks)")
		case c < ' ' && !isSpace(c) || c == 0x7f:
			return i, lexProblem("a control character outside quotes")
		default:
			switch {
			case isSpace(c):
			case c == ')' || c == '@' || c == '.' || isIdentByte(c):
				last = prevName
			default:
				last = prevPunct
			}
			i++
		}
	}
	out(tokOther, start, len(s))
	return len(s), nil
}

func lexProblem(what string) *sqlpolicy.Problem {
	return &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnparseable,
		Detail: what + ": MariaDB and keyhole's parser could read it differently"}
}

func prevByte(s string, i int) byte {
	if i == 0 {
		return ' '
	}
	return s[i-1]
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// chainWord reports whether word is one of chainWords.
func chainWord(word string) bool { return wordIn(chainWords, word) }

// wordIn reports whether word (at most 9 bytes), upper-cased, is in set,
// without allocating (a map index by string(bytes) does not copy).
func wordIn(set map[string]bool, word string) bool {
	var up [9]byte
	for k := 0; k < len(word); k++ {
		c := word[k]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[k] = c
	}
	return set[string(up[:len(word)])]
}

func isWordStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

func lineEnd(s string, i int) int {
	if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(s)
}

// quoted returns the end (one past the closing quote) of the quoted token
// starting at s[i] == q, whether it has a backslash escape, and false when
// it does not end. A doubled quote stands for one.
func (sc scanner) quoted(i int, q byte, backslash bool) (end int, esc bool, ok bool) {
	s := sc.s
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case 0:
			return 0, false, false
		case '\\':
			if backslash {
				esc = true
				j++
			}
		case q:
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1, esc, true
		}
	}
	return 0, false, false
}

// comment checks the /* comment at s[i] and returns its end.
func (sc scanner) comment(i int) (int, *sqlpolicy.Problem) {
	s := sc.s
	body := s[i+2:]
	switch {
	case strings.HasPrefix(body, "!"):
		return 0, &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported,
			Detail: "executable comments (/*! ... */) run on the server; write the statement without them"}
	case strings.HasPrefix(body, "M!"):
		return 0, &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported,
			Detail: "MariaDB executable comments (/*M! ... */) run on the server; write the statement without them"}
	case strings.HasPrefix(body, "T!"):
		return 0, &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported,
			Detail: "TiDB executable comments (/*T! ... */) are not comments to keyhole's parser"}
	}
	j := strings.Index(body, "*/")
	if j < 0 {
		return 0, &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnparseable, Detail: "unterminated comment"}
	}
	if strings.IndexByte(body[:j], 0) >= 0 {
		return 0, lexProblem("a NUL byte in a comment")
	}
	if strings.HasPrefix(body, "+") && strings.Contains(strings.ToLower(body[:j]), "set_var") {
		return 0, &sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Setting: "sql_mode",
			Detail: "SET_VAR optimizer hints change session settings for the statement"}
	}
	return i + 2 + j + 2, nil
}

// numberEnd returns the end of a decimal number literal at s[i] (digits,
// one '.', an exponent), or i when s[i] does not start one. Hex and bit
// literals (0x1F, X'1F', b'01') are left alone.
func numberEnd(s string, i int) int {
	j := i
	digits := 0
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
		digits++
	}
	if j < len(s) && s[j] == '.' {
		j++
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
			digits++
		}
	}
	if digits == 0 {
		return i
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		k := j + 1
		if k < len(s) && (s[k] == '+' || s[k] == '-') {
			k++
		}
		if k < len(s) && s[k] >= '0' && s[k] <= '9' {
			for k < len(s) && s[k] >= '0' && s[k] <= '9' {
				k++
			}
			j = k
		}
	}
	return j
}

// normalize replaces number literals with ? and the string literals that
// are values with '?', and keeps everything else verbatim. Texts that share a
// normalized form must share their analysis under every session's
// sql_mode, so text with a backslash or a double quote (whose token
// boundaries depend on NO_BACKSLASH_ESCAPES and ANSI_QUOTES) is not
// normalized at all.
func normalize(s string) (string, *sqlpolicy.Problem) {
	if strings.ContainsAny(s, "\\\"") {
		return "", &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported,
			Detail: "text with backslashes or double quotes lexes differently per sql_mode"}
	}
	return scanner{s: s}.normalize()
}

// normalize replaces literals in sc.s as walk finds them.
func (sc scanner) normalize() (string, *sqlpolicy.Problem) {
	var b strings.Builder
	b.Grow(len(sc.s))
	_, p := sc.walk(func(kind int, text string) {
		switch kind {
		case tokOther:
			b.WriteString(text)
		case tokString:
			// Distinct from a number's placeholder: which kind of literal
			// stands somewhere can decide whether the text parses at all
			// (LIMIT '1' does not), and the two parsers do not always
			// agree on that (MariaDB takes LAG(x, '1'), TiDB does not).
			b.WriteString("'?'")
		default:
			b.WriteByte('?')
		}
	})
	if p != nil {
		return "", p
	}
	return b.String(), nil
}

// hasReturning reports whether the word RETURNING occurs in sql outside
// string literals, for a clearer refusal of MariaDB's ... RETURNING, which
// TiDB's parser does not read.
func hasReturning(sql string, mode mysql.SQLMode) bool {
	found := false
	_, _ = scanner{s: sql, mode: lexModeOf(mode), sessionKeyed: true}.walk(func(kind int, text string) {
		for !found && kind == tokOther {
			i := strings.Index(strings.ToLower(text), "returning")
			if i < 0 {
				return
			}
			end := i + len("returning")
			found = !isIdentByte(prevByte(text, i)) && (end == len(text) || !isIdentByte(text[end]))
			text = text[end:]
		}
	})
	return found
}

// mariaDBVersionID is MariaDB's MYSQL_VERSION_ID for a VERSION() string
// ("10.11.19-MariaDB-0+deb12u1" is 101119), what its lexer compares the
// number of a versioned comment with; 0 for a MySQL server or a version
// keyhole cannot read (executable comments are then refused).
func mariaDBVersionID(v string) int {
	if !strings.Contains(strings.ToLower(v), "mariadb") {
		return 0
	}
	var parts [3]int
	n, digits := 0, 0
	for i := 0; i < len(v) && n < 3; i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			parts[n] = parts[n]*10 + int(c-'0')
			digits++
			if parts[n] > 99 {
				return 0
			}
		case c == '.' && digits > 0 && n < 2:
			n, digits = n+1, 0
		default:
			if n != 2 || digits == 0 {
				return 0
			}
			n = 3
		}
	}
	if n < 2 || digits == 0 && n == 2 {
		return 0
	}
	return parts[0]*10000 + parts[1]*100 + parts[2]
}

// expandExecutable returns the text MariaDB (of MYSQL_VERSION_ID version)
// runs for sc.s: an executable comment's markers become spaces and its
// content stays, a versioned comment the server skips becomes spaces,
// byte offsets are kept. MariaDB's lexer (sql_lex.cc, MY_LEX_LONG_COMMENT)
// reads /*! and /*M! followed by a 5- or 6-digit number as versioned: the
// content runs when the number is at most the server's and, for /*!,
// outside 50700-99999 (MySQL 5.7 and 8 syntax, which MariaDB skips);
// without a number it always runs. Inside running content the lexer works
// as outside (strings may hold "*/") and the first "*/" outside quotes
// ends it. What keyhole cannot follow exactly is refused: a comment of
// any kind inside running content (a "-- " comment there swallows the
// "*/": /*!40000 +1 -- x */ NEWLINE +2 */ adds 2), a nested /* in a
// skipped one (the server allows one level), a ";" inside (the next
// statement is lexed afresh), an unterminated one. version 0 (MySQL, or
// unknown) leaves the text as it is, for check to refuse every one.
func (sc scanner) expandExecutable(version int) (string, *sqlpolicy.Problem) {
	s := sc.s
	if version == 0 || !strings.Contains(s, "/*!") && !strings.Contains(s, "/*M!") {
		return s, nil
	}
	refuse := func(what string) (string, *sqlpolicy.Problem) {
		return "", &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported,
			Detail: what + " in an executable comment (/*! ... */): write the statement without it"}
	}
	b := []byte(s)
	blank := func(from, to int) {
		for k := from; k < to; k++ {
			if b[k] != '\n' {
				b[k] = ' '
			}
		}
	}
	inExec := false
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			backslash := c != '`' && !(c == '"' && sc.mode.ansiQuotes) && !sc.mode.noBackslashEscapes
			end, _, ok := sc.quoted(i, c, backslash)
			if !ok {
				// check reports it.
				return s, nil
			}
			i = end
		case c == '#' || c == '-' && i+1 < len(s) && s[i+1] == '-' && (i+2 == len(s) || s[i+2] <= ' ' || s[i+2] == 0x7f):
			if inExec {
				return refuse("a line comment")
			}
			i = lineEnd(s, i)
		case c == ';' && inExec:
			return refuse(`a ";"`)
		case c == '*' && inExec && i+1 < len(s) && s[i+1] == '/':
			blank(i, i+2)
			inExec = false
			i += 2
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			if inExec {
				return refuse("a comment")
			}
			maria := strings.HasPrefix(s[i+2:], "M!")
			if !maria && !strings.HasPrefix(s[i+2:], "!") {
				j := strings.Index(s[i+2:], "*/")
				if j < 0 {
					return s, nil // check reports it
				}
				i += 2 + j + 2
				continue
			}
			k := i + 3
			if maria {
				k++
			}
			n := 0
			for n < 6 && k+n < len(s) && s[k+n] >= '0' && s[k+n] <= '9' {
				n++
			}
			if n < 5 {
				// Not versioned: the content runs.
				blank(i, k)
				inExec = true
				i = k
				continue
			}
			v := 0
			for _, d := range s[k : k+n] {
				v = v*10 + int(d-'0')
			}
			if v <= version && (v < 50700 || v > 99999 || maria) {
				blank(i, k+n)
				inExec = true
				i = k + n
				continue
			}
			j := strings.Index(s[k:], "*/")
			if j < 0 {
				return refuse("no end")
			}
			if strings.Contains(s[k:k+j], "/*") {
				return refuse("a nested comment")
			}
			blank(i, k+j+2)
			i = k + j + 2
		default:
			i++
		}
	}
	if inExec {
		return refuse("no end")
	}
	// A blank right after "--" would make a "-- " comment of what MariaDB
	// reads as two minus signs and the comment's content: SELECT 0
	// --/*!40000 -ASCII(email) */ is 0 - - -ASCII(email) to MariaDB.
	for k := 2; k < len(b); k++ {
		if b[k] != s[k] && b[k-1] == '-' && b[k-2] == '-' {
			return refuse(`a "--" right before it`)
		}
	}
	return string(b), nil
}
