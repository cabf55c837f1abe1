package testvault

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy in front of a server, for cutting the network
// without losing the server's state.
type Proxy struct {
	// Addr is the proxy's URL, http://127.0.0.1:port.
	Addr string

	target string
	ln     net.Listener
	mu     sync.Mutex
	mode   Mode
	delay  time.Duration
	conns  map[net.Conn]struct{}
}

// Mode is what the proxy does with connections.
type Mode int

const (
	// Up relays connections to the server.
	Up Mode = iota
	// Refuse closes every connection at once (like a stopped server).
	Refuse
	// Blackhole accepts connections and never answers (like a dropped
	// network), so clients run into their timeouts.
	Blackhole
)

// NewProxy starts a proxy to the server, closed when t ends.
func (s *Server) NewProxy(t testing.TB) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testvault: proxy listen: %v", err)
	}
	p := &Proxy{
		Addr:   "http://" + ln.Addr().String(),
		target: s.Addr[len("http://"):],
		ln:     ln,
		conns:  map[net.Conn]struct{}{},
	}
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// Set switches the mode. Leaving Up closes every open connection, so
// clients' pooled keep-alive connections die too.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	if m != Up {
		for c := range p.conns {
			_ = c.Close()
			delete(p.conns, c)
		}
	}
}

// SetDelay makes relayed connections wait d before passing on the
// server's first answer (a slow Vault). 0 turns it off.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Close stops the proxy and closes all connections.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.Set(Refuse)
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		switch mode {
		case Refuse:
			p.mu.Unlock()
			_ = c.Close()
			continue
		case Blackhole:
			p.conns[c] = struct{}{}
			p.mu.Unlock()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		go p.relay(c)
	}
}

func (p *Proxy) relay(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if _, ok := p.conns[c]; !ok { // cut while dialing
		p.mu.Unlock()
		_ = u.Close()
		_ = c.Close()
		return
	}
	p.conns[u] = struct{}{}
	delay := p.delay
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() {
		if delay > 0 {
			var b [1]byte
			if n, err := u.Read(b[:]); err == nil && n == 1 {
				time.Sleep(delay)
				_, _ = c.Write(b[:])
			}
		}
		_, _ = io.Copy(c, u)
		done <- struct{}{}
	}()
	<-done
	_ = c.Close()
	_ = u.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}
