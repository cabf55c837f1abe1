package admin

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/argon2"

	"github.com/keyholedb/keyhole/internal/filestamp"
)

// Reviewer roles.
const (
	RoleViewer   = "viewer"   // reads the console and the API
	RoleApprover = "approver" // also approves, declines and revokes
)

// UsersFile is the reviewers file: local accounts with argon2id password
// hashes and the SHA-256 hashes of their API tokens. It is strict YAML:
//
//	reviewers:
//	  alice:
//	    role: approver
//	    password: $argon2id$v=19$m=65536,t=3,p=2$SALT$HASH
//	    tokens:
//	      - {name: laptop-cli, sha256: 5e88…}
type UsersFile struct {
	Reviewers map[string]*User `yaml:"reviewers"`
}

// User is one reviewer.
type User struct {
	Role     string     `yaml:"role"`
	Password string     `yaml:"password,omitempty"`
	Tokens   []APIToken `yaml:"tokens,omitempty"`
}

// APIToken is a reviewer's token for the CLI and scripts; only its hash
// is kept.
type APIToken struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
}

// APITokenPrefix starts every API token, so a leaked one is recognizable.
const APITokenPrefix = "khr_"

// argon2id parameters for new hashes (RFC 9106's second recommended
// option, with 64 MiB): a guess costs ~64 MiB and tens of milliseconds.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// HashPassword returns the PHC-format argon2id hash of password.
func HashPassword(password string) (string, error) {
	if len(password) < 12 {
		return "", errors.New("a reviewer password needs at least 12 characters")
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// VerifyPassword checks password against a PHC argon2id hash, in time
// that does not depend on where they differ.
func VerifyPassword(hash, password string) bool {
	p, err := parsePHC(hash)
	if err != nil {
		return false
	}
	key := argon2.IDKey([]byte(password), p.salt, p.t, p.m, p.p, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1
}

type phc struct {
	m, t      uint32
	p         uint8
	salt, key []byte
}

func parsePHC(s string) (*phc, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return nil, errors.New("not an argon2id hash ($argon2id$v=19$m=…,t=…,p=…$salt$hash)")
	}
	var p phc
	var par int
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.m, &p.t, &par); err != nil || p.m < 8*1024 || p.m > 4<<20 || p.t < 1 || p.t > 20 || par < 1 || par > 16 {
		return nil, errors.New("argon2id parameters out of range (m ≥ 8192 KiB, 1 ≤ t ≤ 20, 1 ≤ p ≤ 16)")
	}
	p.p = uint8(par)
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(p.salt) < 8 {
		return nil, errors.New("argon2id salt")
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) < 16 {
		return nil, errors.New("argon2id hash")
	}
	return &p, nil
}

// dummyHash is verified for unknown users, so a login takes as long
// whether or not the name exists.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("keyhole-dummy-password-for-timing")
	return h
})

// NewAPIToken returns a new random API token and the hash to keep.
func NewAPIToken() (token, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token = APITokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, TokenHash(token)
}

// TokenHash is the SHA-256 (hex) an API token is kept as. A fast hash is
// right for 256 random bits: there is nothing to guess.
func TokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// ParseUsers decodes and checks a reviewers file.
func ParseUsers(data []byte) (*UsersFile, error) {
	var f UsersFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reviewers file: %w", err)
	}
	if f.Reviewers == nil {
		f.Reviewers = map[string]*User{}
	}
	tokens := map[string]string{}
	for _, name := range sortedNames(f.Reviewers) {
		u := f.Reviewers[name]
		switch {
		case !validUser(name):
			return nil, fmt.Errorf("reviewers file: reviewer %q: use letters, digits, '.', '_', '-', '@'", name)
		case u == nil:
			return nil, fmt.Errorf("reviewers file: reviewer %s: empty", name)
		case u.Role != RoleViewer && u.Role != RoleApprover:
			return nil, fmt.Errorf("reviewers file: reviewer %s: role %q: want viewer or approver", name, u.Role)
		}
		if u.Password != "" {
			if _, err := parsePHC(u.Password); err != nil {
				return nil, fmt.Errorf("reviewers file: reviewer %s: password: %w", name, err)
			}
		}
		for _, tk := range u.Tokens {
			if b, err := hex.DecodeString(tk.SHA256); err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("reviewers file: reviewer %s: token %q: sha256 must be 64 hex digits", name, tk.Name)
			}
			if other, dup := tokens[tk.SHA256]; dup {
				return nil, fmt.Errorf("reviewers file: the same token is listed for %s and %s", other, name)
			}
			tokens[tk.SHA256] = name
		}
	}
	return &f, nil
}

// Marshal encodes the file (keyhole reviewers writes it).
func (f *UsersFile) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# keyhole reviewers: edit with `keyhole reviewers`; keyhole reloads it when it changes.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

func validUser(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return false
		}
	}
	return true
}

func sortedNames(m map[string]*User) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// users is the reviewers file, re-read when it changes (checked at most
// once a second).
type users struct {
	path  string
	mu    sync.Mutex
	f     *UsersFile
	stamp filestamp.Stamp // f's file (internal/filestamp)
	seen  time.Time
	err   error
}

func (u *users) get() (*UsersFile, error) {
	if u.path == "" {
		return &UsersFile{Reviewers: map[string]*User{}}, nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.f != nil && time.Since(u.seen) < time.Second {
		return u.f, nil
	}
	u.seen = time.Now()
	fi, err := os.Stat(u.path)
	if err != nil {
		if u.f != nil {
			return u.f, nil // keep the last good one
		}
		return nil, fmt.Errorf("reviewers file: %w", err)
	}
	if u.f != nil && filestamp.Of(fi) == u.stamp {
		return u.f, nil
	}
	data, err := os.ReadFile(u.path)
	if err == nil {
		var f *UsersFile
		if f, err = ParseUsers(data); err == nil {
			u.f, u.stamp, u.err = f, filestamp.Of(fi), nil
			return f, nil
		}
	}
	u.err = err
	if u.f != nil {
		return u.f, nil
	}
	return nil, err
}

// byToken finds the reviewer an API token belongs to.
func (f *UsersFile) byToken(token string) (string, *User) {
	h := TokenHash(token)
	for name, u := range f.Reviewers {
		for _, t := range u.Tokens {
			if subtle.ConstantTimeCompare([]byte(t.SHA256), []byte(h)) == 1 {
				return name, u
			}
		}
	}
	return "", nil
}
