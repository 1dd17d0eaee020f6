package emulator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/batchconn"
)

// Log attribute keys.
const (
	attrTunnel  = "tunnel"
	attrThing   = "thing"
	attrMode    = "mode"
	attrChannel = "channel"
)

// Emulator is a running local Secure Tunneling service.
type Emulator struct {
	cfg     Config
	log     *slog.Logger
	ca      *CA
	store   *store
	pub     publisher
	broker  *broker
	apiLn   net.Listener
	dataLn  net.Listener
	apiSrv  *http.Server
	dataSrv *http.Server
	connMu  sync.Mutex
	closing bool
	conns   sync.WaitGroup // data-plane connection handlers (hijacked, so http.Server does not track them)
}

// trackConn registers a data-plane connection handler; it reports false
// once shutdown has begun.
func (e *Emulator) trackConn() bool {
	e.connMu.Lock()
	defer e.connMu.Unlock()
	if e.closing {
		return false
	}
	e.conns.Add(1)
	return true
}

// New creates or loads the CA and server certificate in cfg.StateDir and
// binds every listener. Run serves them.
func New(cfg Config) (*Emulator, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Emulator{cfg: cfg, log: cfg.Logger, store: newStore(&cfg)}
	var err error
	if e.ca, err = LoadOrCreateCA(cfg.StateDir); err != nil {
		return nil, err
	}
	statePath := filepath.Join(cfg.StateDir, stateFileName)
	if err := e.store.load(statePath); err != nil {
		return nil, err
	}
	if n := len(e.store.tunnels); n > 0 {
		e.log.Info("tunnels restored from the state directory", "path", statePath, "tunnels", n, "open", e.store.openCount(cfg.Now()))
	}
	e.store.sv = newSaver(statePath, e.store.snapshot, e.log)
	cert, err := e.ca.ServerCertificate()
	if err != nil {
		return nil, err
	}
	if err := e.listen(cert); err != nil {
		e.closeListeners()
		return nil, err
	}
	return e, nil
}

func (e *Emulator) listen(cert tls.Certificate) error {
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	var err error
	if e.apiLn, err = net.Listen("tcp", e.cfg.APIAddr); err != nil {
		return fmt.Errorf("listen for the API on %s (choose another --api-addr): %w", e.cfg.APIAddr, err)
	}
	e.apiLn = netutil.LimitListener(e.apiLn, e.cfg.MaxAPIConns)
	if e.cfg.APITLS {
		e.apiLn = tls.NewListener(e.apiLn, tlsCfg)
	}
	if e.dataLn, err = net.Listen("tcp", e.cfg.DataAddr); err != nil {
		return fmt.Errorf("listen for the data plane on %s (choose another --data-addr): %w", e.cfg.DataAddr, err)
	}
	// Under TLS, so that the TLS records of a relayed message leave in one
	// system call (see peer.writeLoop) and reads take 64 KiB at a time.
	e.dataLn = batchconn.Listener{Listener: netutil.LimitListener(e.dataLn, e.cfg.MaxDataConns)}
	if !e.cfg.DataPlaintext {
		e.dataLn = tls.NewListener(e.dataLn, tlsCfg)
	}
	if e.cfg.MQTTURL != "" {
		tc, err := e.externalBrokerTLS()
		if err != nil {
			return err
		}
		e.pub = newPahoPublisher(e.cfg.MQTTURL, tc)
	} else {
		if e.broker, err = newBroker(&e.cfg, e.ca, cert, e.log); err != nil {
			return err
		}
		e.pub = e.broker
	}
	errLog := slog.NewLogLogger(e.log.Handler(), slog.LevelDebug)
	e.apiSrv = &http.Server{Handler: http.HandlerFunc(e.serveAPI), ErrorLog: errLog,
		ReadHeaderTimeout: min(10*time.Second, e.cfg.APIReadTimeout), ReadTimeout: e.cfg.APIReadTimeout,
		WriteTimeout: e.cfg.APIWriteTimeout, IdleTimeout: e.cfg.APIIdleTimeout, MaxHeaderBytes: maxAPIHeaderBytes}
	e.dataSrv = &http.Server{Handler: http.HandlerFunc(e.serveData), ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes: 2 * maxHandshakeSize, ErrorLog: errLog}
	return nil
}

// externalBrokerTLS trusts the system roots plus the emulator CA and
// presents a client certificate from the emulator CA (CommonName
// tunnel-emulator), for ssl:// brokers configured with the CA file.
func (e *Emulator) externalBrokerTLS() (*tls.Config, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	roots.AddCert(e.ca.cert)
	cert, err := e.ca.ClientCertificate(serviceClientCN)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func (e *Emulator) closeListeners() {
	for _, l := range []net.Listener{e.apiLn, e.dataLn} {
		if l != nil {
			_ = l.Close()
		}
	}
	if e.pub != nil {
		e.pub.close()
	}
}

// Run serves the API, the data plane and the broker until ctx is cancelled,
// then closes every tunnel connection (close code 1001) and returns nil.
func (e *Emulator) Run(ctx context.Context) error {
	if e.broker != nil {
		if err := e.broker.srv.Serve(); err != nil {
			e.closeListeners()
			return fmt.Errorf("start mqtt broker: %w", err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	serve := func(srv *http.Server, ln net.Listener) func() error {
		return func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
			return nil
		}
	}
	g.Go(serve(e.apiSrv, e.apiLn))
	g.Go(serve(e.dataSrv, e.dataLn))
	g.Go(func() error { e.sweepLoop(gctx); return nil })
	g.Go(func() error {
		<-gctx.Done()
		e.shutdown()
		return nil
	})
	return g.Wait()
}

func (e *Emulator) shutdown() {
	e.connMu.Lock()
	e.closing = true
	e.connMu.Unlock()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.apiSrv.Shutdown(sctx)
	_ = e.dataSrv.Shutdown(sctx)
	for _, r := range e.store.relays() {
		r.closeAll(closeGoingAway, "emulator shutting down")
	}
	e.conns.Wait()
	e.pub.close()
}

func (e *Emulator) sweepLoop(ctx context.Context) {
	tick := time.NewTicker(e.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			e.sweep()
		}
	}
}

// sweep expires tunnels (dropping their connections) and forgets closed
// tunnels past the retention.
func (e *Emulator) sweep() {
	for _, t := range e.store.sweep() {
		e.log.Info("tunnel expired", attrTunnel, t.id)
		t.relay.closeAll(closeNormal, "tunnel expired")
	}
}

// APIURL is the control-plane endpoint, e.g. http://127.0.0.1:8440.
func (e *Emulator) APIURL() string {
	scheme := "http"
	if e.cfg.APITLS {
		scheme = "https"
	}
	return scheme + "://" + e.apiLn.Addr().String()
}

// DataEndpoint is the data-plane host:port (wss unless DataPlaintext).
func (e *Emulator) DataEndpoint() string { return e.dataLn.Addr().String() }

// MQTTAddr is the embedded broker's mutual-TLS host:port ("" with MQTTURL).
func (e *Emulator) MQTTAddr() string {
	if e.broker == nil {
		return ""
	}
	return e.broker.addr
}

// MQTTPlainAddr is the embedded broker's plain TCP host:port, if enabled.
func (e *Emulator) MQTTPlainAddr() string {
	if e.broker == nil {
		return ""
	}
	return e.broker.plainAddr
}

// CAFile is the path of the CA certificate clients should trust.
func (e *Emulator) CAFile() string { return e.ca.CertFile() }

// CAPool is a pool holding the emulator's CA.
func (e *Emulator) CAPool() *x509.CertPool { return e.ca.Pool() }

// IssueDeviceCert writes a device certificate for thing into dir (see CA.IssueDeviceCert).
func (e *Emulator) IssueDeviceCert(thing, dir string) (certFile, keyFile string, err error) {
	return e.ca.IssueDeviceCert(thing, dir)
}
