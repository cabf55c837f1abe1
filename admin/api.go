package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/keyholedb/keyhole/approval"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/store"
)

// The reviewers' API, /api/v1, JSON in and out. The console's forms and
// the keyhole requests CLI do the same things through it.

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func contextWith(r *http.Request, p *principal) context.Context {
	return context.WithValue(r.Context(), ctxKey{}, p)
}

// ApproveBody is the body of POST /api/v1/requests/{id}/approve.
type ApproveBody struct {
	// For is a duration: 15m, 1h, 1d.
	For string `json:"for"`
	// Scope is "statement" (default) or "access".
	Scope string `json:"scope,omitempty"`
	// Access narrows what is granted (a subset of the request's
	// grantable); empty grants all of it.
	Access      []sqlpolicy.Exception `json:"access,omitempty"`
	Note        string                `json:"note"`
	EndSessions *bool                 `json:"end_sessions,omitempty"`
}

// NoteBody is the body of deny and revoke.
type NoteBody struct {
	Note string `json:"note"`
}

// RequestDetail is GET /api/v1/requests/{id}.
type RequestDetail struct {
	Request store.Request  `json:"request"`
	Grants  []store.Grant  `json:"grants"`
	Denials []store.Denial `json:"denials"`
}

// WhoAmI is GET /api/v1/whoami.
type WhoAmI struct {
	User        string   `json:"user"`
	Role        string   `json:"role"`
	Via         string   `json:"via"`
	MaxDuration string   `json:"max_duration"`
	Durations   []string `json:"durations"`
}

func (c *console) routesAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/whoami", func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		out := WhoAmI{User: p.User, Role: p.Role, Via: p.Via, MaxDuration: c.svc.MaxDuration().String()}
		for _, d := range c.o.Durations {
			out.Durations = append(out.Durations, d.String())
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /api/v1/requests", func(w http.ResponseWriter, r *http.Request) {
		f, err := requestFilter(r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
			return
		}
		reqs, err := c.st.Requests(r.Context(), f)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{Error: c.publicError(err)})
			return
		}
		writeJSON(w, http.StatusOK, nonNilList(reqs))
	})
	mux.HandleFunc("GET /api/v1/requests/{id}", func(w http.ResponseWriter, r *http.Request) {
		d, err := c.requestDetail(r.Context(), r.PathValue("id"))
		if err != nil {
			writeJSON(w, statusFor(err), apiError{Error: c.publicError(err)})
			return
		}
		writeJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("POST /api/v1/requests/{id}/approve", func(w http.ResponseWriter, r *http.Request) {
		var b ApproveBody
		if !c.approverOr403(w, r, true) || !readJSON(w, r, &b) {
			return
		}
		a, err := b.approval()
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
			return
		}
		g, err := c.svc.Approve(r.Context(), reviewerOf(principalOf(r)), r.PathValue("id"), a)
		if err != nil {
			writeJSON(w, statusFor(err), apiError{Error: c.publicError(err)})
			return
		}
		writeJSON(w, http.StatusCreated, g)
	})
	mux.HandleFunc("POST /api/v1/requests/{id}/deny", func(w http.ResponseWriter, r *http.Request) {
		var b NoteBody
		if !c.approverOr403(w, r, true) || !readJSON(w, r, &b) {
			return
		}
		req, err := c.svc.Decline(r.Context(), reviewerOf(principalOf(r)), r.PathValue("id"), b.Note)
		if err != nil {
			writeJSON(w, statusFor(err), apiError{Error: c.publicError(err)})
			return
		}
		writeJSON(w, http.StatusOK, req)
	})
	mux.HandleFunc("GET /api/v1/grants", func(w http.ResponseWriter, r *http.Request) {
		f := store.GrantFilter{Agent: r.URL.Query().Get("agent"), RequestID: r.URL.Query().Get("request")}
		if r.URL.Query().Get("all") == "" {
			f.ActiveAt = time.Now()
		}
		gs, err := c.st.Grants(r.Context(), f)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{Error: c.publicError(err)})
			return
		}
		writeJSON(w, http.StatusOK, nonNilList(gs))
	})
	mux.HandleFunc("POST /api/v1/grants/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		var b NoteBody
		if !c.approverOr403(w, r, true) || !readJSON(w, r, &b) {
			return
		}
		g, err := c.svc.Revoke(r.Context(), reviewerOf(principalOf(r)), r.PathValue("id"), b.Note)
		if err != nil {
			writeJSON(w, statusFor(err), apiError{Error: c.publicError(err)})
			return
		}
		writeJSON(w, http.StatusOK, g)
	})
	mux.HandleFunc("GET /api/v1/feed", func(w http.ResponseWriter, r *http.Request) {
		f, err := feedFilter(r.URL.Query(), time.Now())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
			return
		}
		groups, err := c.st.Feed(r.Context(), f)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{Error: c.publicError(err)})
			return
		}
		writeJSON(w, http.StatusOK, nonNilList(groups))
	})
	mux.HandleFunc("GET /api/v1/agents", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		as, err := c.st.Agents(r.Context(), now.Add(-30*time.Second), now.Add(-24*time.Hour))
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{Error: c.publicError(err)})
			return
		}
		writeJSON(w, http.StatusOK, nonNilList(as))
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no such API endpoint"})
	})
}

func nonNilList[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "body: " + err.Error()})
		return false
	}
	return true
}

func (c *console) approverOr403(w http.ResponseWriter, r *http.Request, api bool) bool {
	if principalOf(r).approver() {
		return true
	}
	c.fail(w, r, api, http.StatusForbidden, "only approvers may approve, decline or revoke")
	return false
}

func (b *ApproveBody) approval() (approval.Approve, error) {
	d, err := parseDuration(b.For)
	if err != nil {
		return approval.Approve{}, err
	}
	return approval.Approve{For: d, Scope: store.Scope(b.Scope), Access: b.Access, Note: b.Note, EndSessions: b.EndSessions}, nil
}

func requestFilter(r *http.Request) (store.RequestFilter, error) {
	q := r.URL.Query()
	f := store.RequestFilter{Agent: q.Get("agent"), Fingerprint: q.Get("fingerprint")}
	switch st := q.Get("status"); st {
	case "", "pending":
		f.Statuses = []store.Status{store.StatusPending}
	case "approved", "declined", "blocked":
		f.Statuses = []store.Status{store.Status(st)}
	case "all":
		f.Statuses = []store.Status{store.StatusPending, store.StatusApproved, store.StatusDeclined, store.StatusBlocked}
	default:
		return f, errBadStatus
	}
	return f, nil
}

var errBadStatus = &apiErr{"status: want pending, approved, declined, blocked or all"}

type apiErr struct{ s string }

func (e *apiErr) Error() string { return e.s }

func (c *console) requestDetail(ctx context.Context, id string) (*RequestDetail, error) {
	req, err := c.st.Request(ctx, id)
	if err != nil {
		return nil, err
	}
	gs, err := c.st.Grants(ctx, store.GrantFilter{RequestID: id})
	if err != nil {
		return nil, err
	}
	ds, err := c.st.Denials(ctx, store.DenialFilter{RequestID: id, Limit: 50})
	if err != nil {
		return nil, err
	}
	return &RequestDetail{Request: *req, Grants: nonNilList(gs), Denials: nonNilList(ds)}, nil
}
