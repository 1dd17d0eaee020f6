package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// The TLS floor: what terminating TLS costs a Go process, with nothing else
// (no WebSocket, no tunnel protocol, no MQTT). The bench re-executes itself
// as relays whose ends speak TLS where the tunnel's processes do, chained
// like them in front of the sink or the generator:
//
//	load -> tcp->tls ("proxy") -> tls->tls ("emulator") -> tls->tcp ("agent") -> service
//
// Each hop is io.Copy both ways over crypto/tls with Go's defaults (TLS 1.3,
// the same cipher the tunnel negotiates on loopback). Its CPU per GiB is the
// floor the tunnel's process in the same position is compared with.
const relayModeEnv = "TUNNEL_BENCH_RELAY_MODE"

// Relay modes: what the relay accepts -> what it dials.
const (
	modeTCPToTCP = ""
	modeTCPToTLS = "tcp-tls"
	modeTLSToTLS = "tls-tls"
	modeTLSToTCP = "tls-tcp"
)

// relayListen listens on loopback, with TLS (a fresh self-signed P-256
// certificate) when the mode accepts TLS.
func relayListen(mode string) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil || !strings.HasPrefix(mode, "tls-") {
		return ln, err
	}
	cert, err := selfSigned()
	if err != nil {
		ln.Close()
		return nil, err
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// relayDial dials the next hop, with TLS when the mode says so. The floor
// measures the cost of the record layer, not of verification, so the peer's
// self-signed certificate is not checked (bench-only, loopback).
func relayDial(mode, to string) (net.Conn, error) {
	if strings.HasSuffix(mode, "-tls") {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
			Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // loopback floor, see above
		return d.Dial("tcp", to)
	}
	return net.DialTimeout("tcp", to, 5*time.Second)
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench-floor"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// tlsFloorModes are the chain's hops from the load generator's side, named
// after the tunnel process in the same position.
var tlsFloorModes = []struct{ mode, like string }{
	{modeTCPToTLS, "tunnelctl proxy"}, {modeTLSToTLS, "emulator"}, {modeTLSToTCP, "agent"},
}

// tlsFloor is a TLS relay chain per bulk direction, with one CPU meter per
// position (shared by both chains).
type tlsFloor struct {
	addrs  map[string]string // direction -> chain entry
	relays []*child
	meters map[string]*cpuMeter // position ("agent", ...) -> CPU of both chains
	bytes  int64
}

// startTLSFloor starts a chain to the sink (upload) and one to the
// generator (download).
func (b *bench) startTLSFloor(ctx context.Context) *tlsFloor {
	f := &tlsFloor{addrs: map[string]string{}, meters: map[string]*cpuMeter{}}
	for _, d := range directions {
		addr, relays, err := b.startTLSChain(ctx, "tls-floor-"+d.name, d.directAddr(b))
		f.relays = append(f.relays, relays...)
		if err != nil {
			b.fail(err)
			return f
		}
		f.addrs[d.name] = addr
	}
	return f
}

// startTLSChain starts the TLS floor's three relays in front of to, from
// the service's side (tls->tcp, tls<->tls, tcp->tls), and returns the
// chain's entry with the relays in that order.
func (b *bench) startTLSChain(ctx context.Context, name, to string) (string, []*child, error) {
	var modes []string
	for i := len(tlsFloorModes) - 1; i >= 0; i-- {
		modes = append(modes, tlsFloorModes[i].mode)
	}
	return b.startChain(ctx, to, modes, func(_ int, mode string) string { return name + "-" + mode })
}

// run moves one bulk transfer each way through the chains, metering the
// relays' CPU per position.
func (f *tlsFloor) run(ctx context.Context, b *bench, d direction, series map[bulkKey]*bulkSeries) {
	addr := f.addrs[d.name]
	if addr == "" {
		return
	}
	var meters []*cpuMeter
	for _, r := range f.relays {
		if strings.HasPrefix(r.name, "tls-floor-"+d.name+"-") {
			meters = append(meters, &cpuMeter{pid: r.pid()})
		}
	}
	key := bulkKey{tlsFloorKey + " " + d.name, 1, false, ""}
	var before int64
	if s := series[key]; s != nil {
		before = s.bytes
	}
	if err := b.bulkRun(ctx, d, directDial(addr), 1, series, key, meters, nil); err != nil {
		b.fail(err)
		return
	}
	f.bytes += series[key].bytes - before
	// meters are in chain order from the service's side: agent, emulator, proxy.
	for i, m := range meters {
		like := tlsFloorModes[len(tlsFloorModes)-1-i].like
		if f.meters[like] == nil {
			f.meters[like] = &cpuMeter{}
		}
		f.meters[like].total += m.total
	}
}

// perGiB is the floor's CPU seconds per GiB for the position like.
func (f *tlsFloor) perGiB(like string) float64 {
	m := f.meters[like]
	if m == nil || f.bytes == 0 {
		return math.NaN()
	}
	return m.total.Seconds() / (float64(f.bytes) / (1 << 30))
}

func (f *tlsFloor) stop() {
	for _, r := range f.relays {
		_ = r.stop()
	}
}

// tlsFloorKey names the bulk series through the TLS floor chains.
const tlsFloorKey = "via TLS relays"

// startRelay re-executes the bench as one relay in mode to addr and returns
// it with its listen address.
func (b *bench) startRelay(ctx context.Context, name, to, mode string) (*child, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	c, err := b.start(name, self, nil, []string{relayChildEnv + "=" + to, relayModeEnv + "=" + mode})
	if err != nil {
		return nil, "", err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	line, _, err := c.waitLine(wctx, 0, func(l string) bool { return strings.HasPrefix(l, "ready ") })
	if err != nil {
		return c, "", fmt.Errorf("relay process %s: %w", name, err)
	}
	return c, strings.TrimPrefix(line, "ready "), nil
}
