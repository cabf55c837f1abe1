package gateway

import (
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// cancelTimeout bounds forwarding one CancelRequest to a peer.
const cancelTimeout = 5 * time.Second

// forwardCancel delivers a Postgres CancelRequest for a key another
// replica handed out to that replica's Postgres listener
// (cluster.peers), as the client would have: a new connection carrying
// the 16-byte request, closed by the peer once it acted. The peer's
// replica number is in the key, so it handles the request itself and
// never forwards it again.
func (g *Gateway) forwardCancel(replica uint8, pid uint32, secret []byte) {
	addr, ok := g.cfg.Cluster.Peers[int(replica)]
	if !ok {
		g.log.Info("cancel request for a replica not in cluster.peers; dropped", "replica", replica)
		return
	}
	c, err := net.DialTimeout("tcp", addr, cancelTimeout)
	if err != nil {
		g.log.Warn("forward cancel request to peer", "replica", replica, "addr", addr, "err", err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(cancelTimeout))
	msg, err := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(nil)
	if err == nil {
		_, err = c.Write(msg)
	}
	if err != nil {
		g.log.Warn("forward cancel request to peer", "replica", replica, "addr", addr, "err", err)
		return
	}
	// The peer closes the connection after forwarding the cancel
	// upstream; waiting orders it before whatever the client does next.
	_, _ = io.Copy(io.Discard, c)
	g.log.Info("cancel request forwarded to peer", "replica", replica, "addr", addr)
}
