// Package approval is keyhole's just-in-time access: every denial of a
// statement opens (or counts) an access request keyed by agent and
// statement shape; a reviewer approves it as a timed grant, declines it,
// or revokes the grant; the decision consults the agent's grants next to
// the policy.
//
// The statement path never waits on the database. A Service keeps in
// memory what decisions need (the active grants, which requests were
// declined) and writes what it learns behind, in batches (FlushInterval):
// the pending writes are bounded (MaxPending); when they are full the
// statement that adds one waits for the writer (back-pressure) rather than
// a request being dropped. Denials of the same shape between two flushes
// are one counted write.
//
// Replicas sharing a Postgres store see each other's approvals,
// declines and revocations by polling a change counter (SyncInterval,
// default 200 ms): an expiry takes effect at once (grants carry their end
// and every decision compares it with the clock), a revocation on this
// replica at once and on the others within one poll.
//
// Every reviewer action is audited (audit.KindGrantApproved, ...), by the
// replica where it happened; a grant's expiry by exactly one replica (the
// store arbitrates).
package approval
