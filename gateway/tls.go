package gateway

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/identity"
)

// serverTLS is what agents' TLS handshakes see: the configured certificate
// or, for development, a self-signed one made in memory; with a client CA,
// client certificates are asked for and verified (mTLS, SPIFFE).
func serverTLS(c config.TLS, log *slog.Logger) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if c.CertFile != "" {
		cert, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	} else {
		cert, err = selfSignedCert()
		if err != nil {
			return nil, fmt.Errorf("tls: generate self-signed certificate: %w", err)
		}
		log.Warn("no TLS certificate configured: generated a self-signed one in memory (development only; agents cannot verify it)")
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pool, err := readCertPool(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return tls.Certificate{}, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "keyhole (self-signed)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func readCertPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	return pool, nil
}

// buildAuth builds the agent authenticator. A private key given as the
// token key (handy in development: the file keyhole token mint signs with)
// is reduced to its public half, kept in a temporary file for the
// authenticator to read; cleanup removes it.
func buildAuth(c identity.Config) (auth *identity.Auth, cleanup func(), err error) {
	cleanup = func() {}
	if f := c.Tokens.PublicKeyFile; f != "" {
		if _, perr := identity.ReadPublicKeyFile(f); perr != nil {
			priv, err := identity.ReadPrivateKeyFile(f)
			if err != nil {
				return nil, cleanup, fmt.Errorf("identity: token key: %w", perr)
			}
			pub, err := writePublicKey(priv)
			if err != nil {
				return nil, cleanup, fmt.Errorf("identity: token key: %w", err)
			}
			cleanup = func() { os.Remove(pub) }
			c.Tokens.PublicKeyFile = pub
		}
	}
	a, err := identity.New(c)
	if err != nil {
		cleanup()
		return nil, func() {}, fmt.Errorf("identity: %w", err)
	}
	return a, cleanup, nil
}

func writePublicKey(priv ed25519.PrivateKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "keyhole-token-*.pub")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := pem.Encode(f, &pem.Block{Type: "PUBLIC KEY", Bytes: der}); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
