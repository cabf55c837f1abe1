package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Key files are PEM: the private key as PKCS#8 ("PRIVATE KEY", RFC 5958),
// the public key as PKIX SubjectPublicKeyInfo ("PUBLIC KEY", RFC 8410 for
// Ed25519) — the same encodings `openssl genpkey -algorithm ed25519` uses.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// ErrKeyFile is returned (wrapped) for a key file that is not what it should be.
var ErrKeyFile = errors.New("invalid key file")

// GenerateKey returns a new Ed25519 key for signing agent tokens.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return priv, nil
}

// WriteKeyFile writes key to path (mode 0600, refusing to overwrite) and
// its public key to path+".pub" (mode 0644).
func WriteKeyFile(path string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("encode public key: %w", err)
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeNew(path+".pub", pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: pubDER}), 0o644)
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

func readPEM(path, typ string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block: %w", path, ErrKeyFile)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("%s: PEM type %q, want %q: %w", path, block.Type, typ, ErrKeyFile)
	}
	return block.Bytes, nil
}

// ReadPrivateKeyFile reads an Ed25519 private key written by WriteKeyFile
// (or openssl genpkey -algorithm ed25519).
func ReadPrivateKeyFile(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, pemPrivate)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		// The parse error says nothing about the key bytes.
		return nil, fmt.Errorf("%s: %w: %w", path, ErrKeyFile, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: %T is not an Ed25519 key: %w", path, k, ErrKeyFile)
	}
	return priv, nil
}

// ReadPublicKeyFile reads an Ed25519 public key (PKIX PEM).
func ReadPublicKeyFile(path string) (ed25519.PublicKey, error) {
	der, err := readPEM(path, pemPublic)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrKeyFile, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: %T is not an Ed25519 key: %w", path, k, ErrKeyFile)
	}
	return pub, nil
}
