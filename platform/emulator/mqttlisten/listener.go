// Package mqttlisten is a mochi-mqtt listener that lets Server.Close
// end without a data race: the emulator's embedded broker and the tests'
// in-process broker (agent/notify/notifytest) listen through it.
//
// mochi's own listeners (listeners.Net, listeners.TCP) start a goroutine per
// accepted connection that calls Listeners.ClientsWg.Add(1) only inside
// Server.EstablishConnection. A connection accepted while the server closes
// makes that Add race with the ClientsWg.Wait in Server.Close: a DATA RACE
// under -race, and Close can return with that client still running. Here
// the accept loop counts each connection on ClientsWg itself, before
// handing it over, and Close stops the accept loop and waits for it before
// the server's Wait. Close also closes the connections that never sent
// CONNECT, which the server's disconnect of known clients does not reach.
package mqttlisten

import (
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// Listener serves one net.Listener (plain or TLS) to a mochi server.
type Listener struct {
	id     string
	ln     net.Listener
	wg     *sync.WaitGroup // the server's Listeners.ClientsWg
	served chan struct{}   // closed when Serve returns

	mu      sync.Mutex
	serving bool // Serve started
	closed  bool
	conns   map[net.Conn]struct{} // accepted and not ended
}

var _ listeners.Listener = (*Listener)(nil)

// New serves ln under id; wg must be the server's Listeners.ClientsWg.
func New(id string, ln net.Listener, wg *sync.WaitGroup) *Listener {
	return &Listener{id: id, ln: ln, wg: wg, served: make(chan struct{}), conns: map[net.Conn]struct{}{}}
}

// Init does nothing: the net.Listener is open already.
func (l *Listener) Init(*slog.Logger) error { return nil }

// ID is the listener's id.
func (l *Listener) ID() string { return l.id }

// Address is the address listened on.
func (l *Listener) Address() string { return l.ln.Addr().String() }

// Protocol is the listener's network.
func (l *Listener) Protocol() string { return l.ln.Addr().Network() }

// Serve accepts connections until Close.
func (l *Listener) Serve(establish listeners.EstablishFn) {
	defer close(l.served)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.serving = true
	l.mu.Unlock()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.wg.Add(1) // ordered before the server's Wait by l.served
		l.mu.Lock()
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			_ = establish(l.id, c)
			_ = c.Close()
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		}()
	}
}

// Close stops accepting, waits for the accept loop, disconnects the
// listener's clients and closes the connections still being set up.
func (l *Listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	l.closed = true
	serving := l.serving
	l.mu.Unlock()
	_ = l.ln.Close()
	if serving {
		<-l.served
	}
	closeClients(l.id)
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
	}
}
