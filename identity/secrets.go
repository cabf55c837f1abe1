package identity

import (
	"bytes"
	"fmt"
	"os"
)

// agentSecrets are the stored verifiers of agents that log in with a
// secret: SCRAM-SHA-256 (Postgres) and MySQL. One value is never changed;
// ReloadSecrets swaps in a new one.
type agentSecrets struct {
	verifiers map[string]Verifier
	// mockKey derives the salts of made-up verifiers (mockVerifier).
	mockKey []byte
	mysql   map[string]MySQLVerifier
}

// secretsConfig is where the verifiers come from: inline maps (fixed for
// the process) and files (read again by ReloadSecrets).
type secretsConfig struct {
	scram SCRAMConfig
	mysql MySQLConfig
}

// load reads every verifier the config names.
func (c secretsConfig) load() (*agentSecrets, error) {
	s := &agentSecrets{verifiers: map[string]Verifier{}, mysql: map[string]MySQLVerifier{}}
	scram := func(where, agent, text string) error {
		if _, dup := s.verifiers[agent]; dup {
			return fmt.Errorf("%w: %s: agent %q has two verifiers", ErrConfig, where, agent)
		}
		v, err := ParseVerifier(text)
		if err != nil {
			return fmt.Errorf("%w: %s: agent %q: %w", ErrConfig, where, agent, err)
		}
		s.verifiers[agent] = v
		return nil
	}
	mysql := func(where, agent, text string) error {
		if _, dup := s.mysql[agent]; dup {
			return fmt.Errorf("%w: %s: agent %q has two MySQL verifiers", ErrConfig, where, agent)
		}
		v, err := ParseMySQLVerifier(text)
		if err != nil {
			return fmt.Errorf("%w: %s: agent %q: %w", ErrConfig, where, agent, err)
		}
		s.mysql[agent] = v
		return nil
	}
	if err := addVerifiers("scram.verifiers", c.scram.Verifiers, scram); err != nil {
		return nil, err
	}
	if err := addVerifiersFile("scram.verifiers_file", c.scram.VerifiersFile, scram); err != nil {
		return nil, err
	}
	if err := addVerifiers("mysql.verifiers", c.mysql.Verifiers, mysql); err != nil {
		return nil, err
	}
	if err := addVerifiersFile("mysql.verifiers_file", c.mysql.VerifiersFile, mysql); err != nil {
		return nil, err
	}
	s.mockKey = mockKey(s.verifiers)
	return s, nil
}

// addVerifiers hands each agent's verifier text of m to add.
func addVerifiers(where string, m map[string]string, add func(where, agent, text string) error) error {
	for agent, text := range m {
		if agent == "" {
			return fmt.Errorf("%w: %s: empty agent name", ErrConfig, where)
		}
		if err := add(where, agent, text); err != nil {
			return err
		}
	}
	return nil
}

// addVerifiersFile reads a YAML map agent → verifier from path ("" is
// none) into add.
func addVerifiersFile(key, path string, add func(where, agent, text string) error) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrConfig, key, err)
	}
	var m map[string]string
	if err := decodeStrict(bytes.Clone(data), &m); err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrConfig, key, path, err)
	}
	return addVerifiers(path, m, add)
}

// SecretChanges names the agents whose stored secret a ReloadSecrets
// changed or removed, per protocol: their sessions that logged in with the
// old secret are to end.
type SecretChanges struct {
	SCRAM map[string]bool // Postgres SCRAM-SHA-256 verifiers
	MySQL map[string]bool // MySQL verifiers
}

// Empty reports whether no agent's secret changed.
func (c SecretChanges) Empty() bool { return len(c.SCRAM) == 0 && len(c.MySQL) == 0 }

// SecretFiles are the verifier files c names, which Auth.ReloadSecrets
// reads again.
func (c Config) SecretFiles() []string {
	var files []string
	for _, f := range []string{c.SCRAM.VerifiersFile, c.MySQL.VerifiersFile} {
		if f != "" {
			files = append(files, f)
		}
	}
	return files
}

// ReloadSecrets reads scram.verifiers_file and mysql.verifiers_file again
// and swaps the verifiers in at once: new logins check the new secrets. It
// returns the agents whose verifier changed or was removed, whose sessions
// that logged in with a secret the caller ends (a secret is rotated because
// it leaked). A file that cannot be read or parsed leaves every secret as
// it was.
func (a *Auth) ReloadSecrets() (SecretChanges, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	next, err := a.secretCfg.load()
	if err != nil {
		return SecretChanges{}, err
	}
	cur := a.secrets.Load()
	a.secrets.Store(next)
	return SecretChanges{
		SCRAM: changedSecrets(cur.verifiers, next.verifiers),
		MySQL: changedSecrets(cur.mysql, next.mysql),
	}, nil
}

// changedSecrets is the agents of cur whose verifier next lacks or holds
// another of.
func changedSecrets[V interface{ Encode() string }](cur, next map[string]V) map[string]bool {
	var out map[string]bool
	for agent, v := range cur {
		if w, ok := next[agent]; !ok || w.Encode() != v.Encode() {
			if out == nil {
				out = map[string]bool{}
			}
			out[agent] = true
		}
	}
	return out
}
