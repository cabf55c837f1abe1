package testvault

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// VerifyPassword reports whether password matches the SCRAM-SHA-256
// verifier Postgres stores for role (read from pg_authid with adminDSN).
// The test Postgres trusts local TCP, so logging in proves nothing about
// the password; this does.
func VerifyPassword(ctx context.Context, adminDSN, role, password string) (bool, error) {
	c, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return false, fmt.Errorf("connect admin: %w", err)
	}
	defer c.Close(ctx)
	var verifier *string
	if err := c.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&verifier); err != nil {
		return false, fmt.Errorf("read verifier of %s: %w", role, err)
	}
	if verifier == nil {
		return false, fmt.Errorf("role %s has no password", role)
	}
	// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
	v, ok := strings.CutPrefix(*verifier, "SCRAM-SHA-256$")
	if !ok {
		return false, fmt.Errorf("role %s: password is not a SCRAM-SHA-256 verifier", role)
	}
	iterSalt, keys, ok := strings.Cut(v, "$")
	if !ok {
		return false, fmt.Errorf("role %s: malformed verifier", role)
	}
	iterS, saltS, _ := strings.Cut(iterSalt, ":")
	storedS, _, _ := strings.Cut(keys, ":")
	iter, err := strconv.Atoi(iterS)
	if err != nil {
		return false, fmt.Errorf("role %s: malformed iteration count", role)
	}
	salt, err1 := base64.StdEncoding.DecodeString(saltS)
	stored, err2 := base64.StdEncoding.DecodeString(storedS)
	if err1 != nil || err2 != nil {
		return false, fmt.Errorf("role %s: malformed verifier encoding", role)
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return false, err
	}
	mac := hmac.New(sha256.New, salted)
	mac.Write([]byte("Client Key"))
	clientKey := mac.Sum(nil)
	sum := sha256.Sum256(clientKey)
	return hmac.Equal(sum[:], stored), nil
}
