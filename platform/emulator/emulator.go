package emulator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/batchconn"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// Log attribute keys.
const (
	attrTunnel  = "tunnel"
	attrThing   = "thing"
	attrMode    = "mode"
	attrChannel = "channel"
)

// Defaults applied by Config.setDefaults.
const (
	DefaultRegion         = "us-east-1"
	DefaultAccountID      = "123456789012"
	DefaultMaxOpenTunnels = 100
	DefaultRetention      = 3 * time.Hour
	defaultSweepInterval  = time.Second
	loopbackAnyPort       = "127.0.0.1:0"
)

// Config configures an Emulator. Empty addresses mean 127.0.0.1:0, except
// MQTTPlainAddr, where empty means no plain listener.
type Config struct {
	APIAddr       string // control plane (HTTP, or HTTPS with APITLS)
	DataAddr      string // data plane WebSocket (wss unless DataPlaintext)
	MQTTAddr      string // embedded broker, mutual TLS
	MQTTPlainAddr string // embedded broker, plain TCP (debugging only)

	Region         string        // default us-east-1
	AccountID      string        // default 123456789012
	MaxOpenTunnels int           // LimitExceededException beyond this; default 100
	StateDir       string        // CA and certificates; default DefaultStateDir()
	Retention      time.Duration // how long closed tunnels stay listable; default 3h
	Strict         bool          // close connections that violate protocol.md §10 item 5

	// RotateDisconnects closes the connection of a mode whose token is
	// rotated (AWS's behaviour is unknown; by default connections stay up).
	RotateDisconnects bool

	MQTTURL           string // tcp://host:port or ssl://host:port: external broker instead of the embedded one
	NotifyTopicFormat string // default DefaultNotifyTopicFormat; must contain one %s
	APITLS            bool   // serve the API over HTTPS with the emulator's server certificate
	DataPlaintext     bool   // serve ws:// instead of wss:// (debugging only)

	Bandwidth     int64            // bytes per second per tunnel, both directions together (AWS: about 800 KB/s); 0: unlimited
	IdleTimeout   time.Duration    // drop a data-plane connection without traffic for this long, like AWS's load balancer (~60s); 0: never
	SweepInterval time.Duration    // how often expiry and retention are checked; default 1s
	Now           func() time.Time // clock; default time.Now (tests inject one)
	Logger        *slog.Logger     // default: discard
}

// DefaultStateDir returns $XDG_STATE_HOME/tunnel-emulator, or
// ~/.local/state/tunnel-emulator.
func DefaultStateDir() (string, error) {
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "tunnel-emulator"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find home directory for the state directory (set --state-dir): %w", err)
	}
	return filepath.Join(home, ".local", "state", "tunnel-emulator"), nil
}

func (c *Config) setDefaults() error {
	for _, a := range []*string{&c.APIAddr, &c.DataAddr, &c.MQTTAddr} {
		if *a == "" {
			*a = loopbackAnyPort
		}
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Region, DefaultRegion)
	def(&c.AccountID, DefaultAccountID)
	def(&c.NotifyTopicFormat, DefaultNotifyTopicFormat)
	if c.MaxOpenTunnels == 0 {
		c.MaxOpenTunnels = DefaultMaxOpenTunnels
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = defaultSweepInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.StateDir == "" {
		d, err := DefaultStateDir()
		if err != nil {
			return err
		}
		c.StateDir = d
	}
	return nil
}

func (c *Config) validate() error {
	switch {
	case !protocol.ValidRegion(c.Region):
		return fmt.Errorf("region %q is not an AWS region name (like us-east-1): %w", c.Region, ErrInvalidArgument)
	case !accountRe.MatchString(c.AccountID):
		return fmt.Errorf("account id %q must be 12 digits: %w", c.AccountID, ErrInvalidArgument)
	case c.MaxOpenTunnels < 0:
		return fmt.Errorf("max open tunnels %d must be positive: %w", c.MaxOpenTunnels, ErrInvalidArgument)
	case c.Bandwidth < 0:
		return fmt.Errorf("bandwidth %d must be positive: %w", c.Bandwidth, ErrInvalidArgument)
	case c.IdleTimeout < 0:
		return fmt.Errorf("idle timeout %s must be positive: %w", c.IdleTimeout, ErrInvalidArgument)
	case c.Retention < 0:
		return fmt.Errorf("retention %s must be positive: %w", c.Retention, ErrInvalidArgument)
	case strings.Count(c.NotifyTopicFormat, "%s") != 1:
		return fmt.Errorf("notify topic format %q must contain %%s once: %w", c.NotifyTopicFormat, ErrInvalidArgument)
	case c.MQTTURL != "" && !strings.HasPrefix(c.MQTTURL, "tcp://") && !strings.HasPrefix(c.MQTTURL, "ssl://") &&
		!strings.HasPrefix(c.MQTTURL, "tls://"):
		return fmt.Errorf("mqtt url %q must start with tcp://, ssl:// or tls://: %w", c.MQTTURL, ErrInvalidArgument)
	}
	return nil
}

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
	if e.cfg.APITLS {
		e.apiLn = tls.NewListener(e.apiLn, tlsCfg)
	}
	if e.dataLn, err = net.Listen("tcp", e.cfg.DataAddr); err != nil {
		return fmt.Errorf("listen for the data plane on %s (choose another --data-addr): %w", e.cfg.DataAddr, err)
	}
	// Under TLS, so that the TLS records of a relayed message leave in one
	// system call (see peer.writeLoop) and reads take 64 KiB at a time.
	e.dataLn = batchconn.Listener{Listener: e.dataLn}
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
	e.apiSrv = &http.Server{Handler: http.HandlerFunc(e.serveAPI), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
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
	cert, err := e.ca.ClientCertificate("tunnel-emulator")
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
