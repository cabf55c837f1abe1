package audit

import (
	"log/slog"
	"regexp"
	"strings"
)

// tokenShape is a JWS or JWE in compact form: a base64url JSON header
// ("eyJ" is `{"`) and at least two more dot-separated base64url parts.
var tokenShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*){2,4}`)

// RedactedToken replaces an agent token in text keyhole writes.
const RedactedToken = "[token]"

// RedactTokens returns s with every agent token (a JWT) in it replaced by
// RedactedToken. Text that reaches logs and audit events can hold one the
// agent sent where keyhole did not expect a credential: a driver given
// the token as the user name too, so that "password authentication
// failed for user <token>", the session's user and the event's agent
// carried a token that was still valid.
func RedactTokens(s string) string {
	if !strings.Contains(s, "eyJ") {
		return s
	}
	return tokenShape.ReplaceAllLiteralString(s, RedactedToken)
}

// RedactAttr is a slog.HandlerOptions.ReplaceAttr that applies
// RedactTokens to string and error values (and the message).
func RedactAttr(_ []string, a slog.Attr) slog.Attr {
	switch v := a.Value; v.Kind() {
	case slog.KindString:
		if s := v.String(); strings.Contains(s, "eyJ") {
			a.Value = slog.StringValue(RedactTokens(s))
		}
	case slog.KindAny:
		if err, ok := v.Any().(error); ok && err != nil {
			if s := err.Error(); strings.Contains(s, "eyJ") {
				a.Value = slog.StringValue(RedactTokens(s))
			}
		}
	}
	return a
}

// redactEvent applies RedactTokens to the fields of ev that carry what a
// client or a reviewer typed.
func redactEvent(ev *Event) {
	for _, f := range []*string{&ev.Agent, &ev.Error, &ev.Reviewer, &ev.Note, &ev.Purpose, &ev.Database} {
		if strings.Contains(*f, "eyJ") {
			*f = RedactTokens(*f)
		}
	}
}
