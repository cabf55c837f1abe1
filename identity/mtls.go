package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrBadSPIFFEID is returned (wrapped) for a malformed SPIFFE ID.
var ErrBadSPIFFEID = errors.New("invalid SPIFFE ID")

// ParseSPIFFEID checks that s is a SPIFFE ID as the SPIFFE-ID spec defines
// it: scheme "spiffe", a lowercase trust domain of [a-z0-9.-_], an optional
// path, and no port, user info, query or fragment.
func ParseSPIFFEID(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSPIFFEID, err)
	}
	if u.Scheme != "spiffe" || u.Opaque != "" || u.User != nil || u.Port() != "" ||
		u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || strings.Contains(s, "#") {
		return "", fmt.Errorf("%w: %q", ErrBadSPIFFEID, s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%w: %q has no trust domain", ErrBadSPIFFEID, s)
	}
	for _, c := range u.Host {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", fmt.Errorf("%w: %q: trust domain must be lowercase [a-z0-9.-_]", ErrBadSPIFFEID, s)
		}
	}
	if u.Path != "" {
		if strings.HasSuffix(u.Path, "/") {
			return "", fmt.Errorf("%w: %q: trailing slash", ErrBadSPIFFEID, s)
		}
		for _, seg := range strings.Split(u.Path[1:], "/") {
			if seg == "" || seg == "." || seg == ".." {
				return "", fmt.Errorf("%w: %q: empty or dot path segment", ErrBadSPIFFEID, s)
			}
		}
	}
	return s, nil
}

// certificate maps a verified client certificate to an agent. The TLS
// stack has already verified the chain against the trust bundle; this only
// reads the identity. An X.509-SVID carries exactly one URI SAN, the
// SPIFFE ID (SPIFFE X509-SVID spec §2).
func certificate(spiffe map[string]string, user string, cert *x509.Certificate) (*Agent, error) {
	if cert == nil {
		return nil, authErrf(ReasonCertificate, "no client certificate")
	}
	if len(cert.URIs) != 1 {
		return nil, authErrf(ReasonCertificate, "client certificate has %d URI SANs, want exactly one SPIFFE ID", len(cert.URIs))
	}
	id, err := ParseSPIFFEID(cert.URIs[0].String())
	if err != nil {
		return nil, NewAuthError(ReasonCertificate, fmt.Errorf("client certificate: %w", err))
	}
	agent, ok := spiffe[id]
	if !ok {
		return nil, authErrf(ReasonCertificate, "SPIFFE ID %s is not mapped to an agent", id)
	}
	if agent != user {
		return nil, authErrf(ReasonCertificate, "SPIFFE ID %s is agent %q, not user %q", id, agent, user)
	}
	// The session's authority ends with the certificate.
	return &Agent{Name: agent, Method: MethodMTLS, Expires: cert.NotAfter}, nil
}
