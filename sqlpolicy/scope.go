package sqlpolicy

// Grant allows one verb on a list of relations ("schema.table", or
// "schema.*" for every relation of a schema).
type Grant struct {
	Verb   Verb     `json:"verb"`
	Tables []string `json:"tables"`
}

// Principal is who a statement is decided for: the agent's name (which the
// policy maps to a role) and, optionally, a narrower scope carried by its
// token. With a scope, a statement must be allowed by the role AND by the
// scope (the intersection); a nil Scope does not narrow.
//
// Purpose is the task the agent's token names (its "purpose" claim), shown
// to reviewers with the requests it opens; it never changes a decision.
type Principal struct {
	Agent   string  `json:"agent"`
	Scope   []Grant `json:"scope,omitempty"`
	Purpose string  `json:"purpose,omitempty"`
}
