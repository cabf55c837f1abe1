package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/keyholedb/keyhole/creds"
)

// ErrInvalid is wrapped by every error Load and Validate return for a bad
// configuration (as opposed to an unreadable file).
var ErrInvalid = errors.New("invalid configuration")

// Error is one problem in the configuration, located by key path and, when
// the configuration came from a file, by line.
type Error struct {
	File string // "" when not from a file
	Line int    // 0 when unknown
	Key  string // dotted key path, e.g. "upstreams.shop.addr"
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return ErrInvalid }

// Errors is every problem found, in file order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Load reads, strictly decodes and validates a keyhole.yaml. Relative file
// names in it are resolved against the file's directory. Secrets are not
// resolved: call ResolveSecrets once flags have been applied.
func Load(path string) (*Config, error) {
	c, err := Read(path)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Read is Load without Validate, for callers that complete the
// configuration (with flags) first: syntax, types and unknown keys are
// still errors. Validate afterwards reports file:line for keys from the
// file.
func Read(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := decode(path, data)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.resolvePaths(dir)
	return c, nil
}

// Parse decodes and validates configuration text; name is used in errors.
func Parse(name string, data []byte) (*Config, error) {
	c, err := decode(name, data)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func decode(name string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err == nil {
		if es := movedKeys(name, &root); len(es) > 0 {
			return nil, es
		}
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{File: name, Line: extra.Line, Msg: "more than one YAML document"}
	}
	c.Path = name
	c.lines = map[string]int{}
	collectLines(&root, "", c.lines)
	return &c, nil
}

// movedKeys reports the upstream keys that the url key replaced, with
// what to write instead (a plain "unknown key" would not say).
func movedKeys(name string, root *yaml.Node) Errors {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil
	}
	ups := mapValue(root.Content[0], "upstreams")
	if ups == nil || ups.Kind != yaml.MappingNode {
		return nil
	}
	var es Errors
	for i := 0; i+1 < len(ups.Content); i += 2 {
		up := ups.Content[i+1]
		if up.Kind != yaml.MappingNode {
			continue
		}
		for j := 0; j+1 < len(up.Content); j += 2 {
			k := up.Content[j]
			switch k.Value {
			case "addr", "database", "sslmode":
				es = append(es, &Error{File: name, Line: k.Line, Key: "upstreams." + ups.Content[i].Value + "." + k.Value,
					Msg: "replaced by url: postgres://HOST:PORT/DATABASE?sslmode=MODE (or mysql://...)"})
			}
		}
	}
	return es
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

var (
	reUnknown = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
	reLine    = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// yamlError turns a yaml.v3 error into Errors with file:line.
func yamlError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var es Errors
		for _, m := range te.Errors {
			es = append(es, lineError(name, m))
		}
		return es
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return Errors{lineError(name, msg)}
}

func lineError(name, msg string) *Error {
	if m := reUnknown.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: n, Msg: fmt.Sprintf("unknown key %q", m[2])}
	}
	if m := reLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: n, Msg: m[2]}
	}
	return &Error{File: name, Msg: msg}
}

// collectLines records the line of every key path in the document.
func collectLines(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectLines(c, path, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			lines[p] = k.Line
			collectLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = v.Line
			collectLines(v, p, lines)
		}
	}
}

// resolvePaths makes relative file names relative to dir.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	abs(&c.TLS.ClientCAFile)
	for k, u := range c.Upstreams {
		abs(&u.CAFile)
		c.Upstreams[k] = u
	}
	abs(&c.Identity.Tokens.PublicKeyFile)
	abs(&c.Identity.Tokens.RevokedFile)
	for i := range c.Identity.JWKS {
		abs(&c.Identity.JWKS[i].File)
	}
	abs(&c.Identity.SCRAM.VerifiersFile)
	if v := c.Creds.Vault; v != nil {
		abs(&v.CACert)
		if a := v.Auth.AppRole; a != nil {
			abs(&a.SecretIDFile)
		}
		if k := v.Auth.Kubernetes; k != nil {
			abs(&k.TokenFile)
		}
	}
	abs(&c.Audit.File)
	abs(&c.Policy.File)
	c.resolveApprovalPaths(abs)
}

// Overridden records that the value of key (a dotted path such as
// "listen.postgres") no longer comes from the file, so that Validate does
// not point at the file's line for it.
func (c *Config) Overridden(key string) {
	if c.overridden == nil {
		c.overridden = map[string]bool{}
	}
	c.overridden[key] = true
}

func (c *Config) isOverridden(key string) bool {
	for k := key; k != ""; {
		if c.overridden[k] {
			return true
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return false
}

// Validate checks a configuration, whether read from a file, completed
// with flags or built in code. Problems with keys that came from a file
// are reported with its name and line.
func (c *Config) Validate() error {
	file, lines := c.Path, c.lines
	var es Errors
	bad := func(key, format string, args ...any) {
		line := 0
		for k := key; k != "" && line == 0; {
			line = lines[k]
			if i := strings.LastIndexAny(k, ".["); i >= 0 {
				k = k[:i]
			} else {
				k = ""
			}
		}
		f := file
		if c.isOverridden(key) {
			f, line = "", 0 // the value came from a flag, not the file
		}
		es = append(es, &Error{File: f, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
	}

	checkAddr := func(key, addr string) {
		if addr == "" {
			return
		}
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad(key, "address %q: want host:port", addr)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(key, "address %q: bad port", addr)
		}
	}
	checkAddr("listen.postgres", c.Listen.Postgres)
	checkAddr("listen.mysql", c.Listen.MySQL)
	checkAddr("listen.admin", c.Listen.Admin)
	checkAddr("listen.metrics", c.Listen.Metrics)
	if c.Listen.Pprof && c.Listen.Admin == "" {
		bad("listen.pprof", "needs listen.admin (the profiler is served there)")
	}

	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	if c.TLS.CertFile != "" && c.TLS.GenerateSelfSigned {
		bad("tls.generate_self_signed", "set together with cert_file")
	}
	if c.TLS.CertFile == "" && !c.TLS.GenerateSelfSigned {
		bad("tls", "set cert_file and key_file (or --tls-cert/--tls-key), or generate_self_signed: true for development")
	}

	if len(c.Upstreams) == 0 {
		bad("upstreams", "at least one upstream is required")
	}
	allLogins := len(c.Upstreams) > 0
	catalogRoles := map[string]string{}
	var mysqlUps []string
	for _, name := range sortedKeys(c.Upstreams) {
		u := c.Upstreams[name]
		key := "upstreams." + name
		if name == "" {
			key = "upstreams.\"\""
		} else if !validUpstreamName(name) {
			bad(key, "upstream name %q: use letters, digits, '_', '-' and '.' (roles name it)", name)
		}
		if u.Login == nil {
			allLogins = false
		}
		if u.URL == "" {
			bad(key+".url", "required: postgres://HOST[:PORT]/DATABASE or mysql://HOST[:PORT]/DATABASE")
			continue
		}
		p, login, err := ParseUpstreamURL(u.URL)
		switch {
		case err != nil:
			bad(key+".url", "%s", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
			continue
		case login.User != "" || !login.Password.Empty():
			bad(key+".url", "carries a login: keyhole.yaml holds no credential (use creds.static with password_env, or creds.vault)")
		case p.Database == "":
			bad(key+".url", "names no database: want %s://HOST[:PORT]/DATABASE", p.Dialect)
		}
		if p.Dialect == DialectMySQL {
			mysqlUps = append(mysqlUps, strconv.Quote(name))
		}
		if p.CAFile != "" && u.CAFile != "" {
			bad(key+".ca_file", "set together with the URL's sslrootcert")
		}
		if c.Creds.Vault != nil {
			role := c.CatalogRole(name)
			if other, dup := catalogRoles[role]; dup {
				bad(key+".catalog_role", "upstreams %s and %s would read their schemas with the same Vault role %q, which names one database: give each upstream its own catalog_role (upstreams.NAME.catalog_role in keyhole.yaml)", other, name, role)
			}
			catalogRoles[role] = name
		}
	}
	// Postgres listens on its default address unless told otherwise; the
	// MySQL listener is off by default, so it and the mysql:// upstreams
	// go together: neither is useful alone, and either alone is a typo.
	switch {
	case len(mysqlUps) > 0 && c.Listen.MySQL == "":
		bad("listen.mysql", "upstreams [%s] are mysql:// but listen.mysql is empty: agents could not reach them (set listen.mysql, or --listen-mysql)", strings.Join(mysqlUps, " "))
	case len(mysqlUps) == 0 && c.Listen.MySQL != "" && len(c.Upstreams) > 0:
		bad("listen.mysql", "no upstream is mysql://: nothing would be served at %s", c.Listen.MySQL)
	}

	id := c.Identity
	if id.Tokens.PublicKeyFile == "" && len(id.JWKS) == 0 && len(id.SCRAM.Verifiers) == 0 &&
		id.SCRAM.VerifiersFile == "" && len(id.SPIFFE) == 0 {
		bad("identity", "no way for agents to authenticate: set tokens.public_key_file, jwks, scram or spiffe")
	}
	for i, j := range id.JWKS {
		key := fmt.Sprintf("identity.jwks[%d]", i)
		if (j.File == "") == (j.URL == "") {
			bad(key, "set exactly one of file and url")
		}
		if j.URL != "" {
			if u, err := url.Parse(j.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				bad(key+".url", "%q: want an http(s) URL", j.URL)
			}
		}
		if j.Issuer == "" {
			bad(key+".issuer", "required")
		}
	}
	if len(id.SPIFFE) > 0 && c.TLS.ClientCAFile == "" {
		bad("identity.spiffe", "needs tls.client_ca_file")
	}
	for id, agent := range c.Identity.SPIFFE {
		if !strings.HasPrefix(id, "spiffe://") {
			bad("identity.spiffe."+id, "%q is not a spiffe:// ID", id)
		}
		if agent == "" {
			bad("identity.spiffe."+id, "agent name required")
		}
	}

	switch {
	case c.Creds.Static == nil && c.Creds.Vault == nil:
		if !allLogins {
			bad("creds", "set static or vault")
		}
	case c.Creds.Static != nil && c.Creds.Vault != nil:
		bad("creds", "set only one of static and vault")
	case c.Creds.Static != nil:
		if c.Creds.Static.User == "" {
			bad("creds.static.user", "required")
		}
	case c.Creds.Vault != nil:
		// creds owns the section's rules; the keys point into the file.
		for _, err := range unjoin(c.Creds.Vault.VaultConfig.Validate()) {
			var ce *creds.ConfigError
			if errors.As(err, &ce) {
				bad("creds.vault."+ce.Key, "%s", ce.Msg)
			} else {
				bad("creds.vault", "%v", err)
			}
		}
	}

	if c.Audit.File == "" && !c.Audit.Stdout {
		bad("audit", "set file or stdout: every decision is audited")
	}
	if c.Audit.MaxBytes < 0 {
		bad("audit.max_bytes", "negative")
	}
	if c.Audit.Backups < 0 {
		bad("audit.backups", "negative")
	}
	if c.Policy.File == "" {
		bad("policy.file", "required")
	}

	if c.Limits.MaxConns < 0 {
		bad("limits.max_conns", "negative")
	}
	if c.Limits.MaxStartups < 0 {
		bad("limits.max_startups", "negative")
	}
	if c.Limits.MaxConnsPerAgent < 0 {
		bad("limits.max_conns_per_agent", "negative")
	}
	if c.Limits.MaxMessageSize < 0 {
		bad("limits.max_message_size", "negative")
	}
	if c.Limits.MaxPreparedPerSession < 0 {
		bad("limits.max_prepared_per_session", "negative")
	}
	switch c.Limits.Relay {
	case "", RelayLoop, RelayGoroutine:
	default:
		bad("limits.relay", "%q: want loop or goroutine", c.Limits.Relay)
	}
	for k, d := range map[string]int64{
		"limits.startup_timeout":     int64(c.Limits.StartupTimeout),
		"limits.idle_timeout":        int64(c.Limits.IdleTimeout),
		"limits.shutdown_grace":      int64(c.Limits.ShutdownGrace),
		"limits.upstream_reuse_idle": int64(c.Limits.UpstreamReuseIdle),
	} {
		if d < 0 {
			bad(k, "negative")
		}
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		bad("log.format", "%q: want json or text", c.Log.Format)
	}
	switch strings.ToLower(c.Log.Level) {
	case "", "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}

	c.validateApprovals(bad)

	if len(es) == 0 {
		return nil
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
	return es
}

// joined is an error of errors.Join.
type joined interface{ Unwrap() []error }

// unjoin lists the errors errors.Join joined (err itself when it is
// another error; none for nil).
func unjoin(err error) []error {
	if j, ok := err.(joined); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// validUpstreamName is the policy's rule for the names roles use
// (roles.NAME.upstream).
func validUpstreamName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '@') {
			return false
		}
	}
	return s != ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
