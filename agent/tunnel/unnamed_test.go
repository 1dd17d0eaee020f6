package tunnel

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestUnnamedMapping: a single mapping without a service id (the C++
// localproxy's "-d host:port" / "-s port") stands for the tunnel's only
// service, at either end and for every client type.
func TestUnnamedMapping(t *testing.T) {
	unnamedDst := func(_, dst *Config) { dst.Services = map[string]string{Unnamed: dst.Services["SSH"]} }
	unnamedSrc := func(src, _ *Config) { src.Services = map[string]string{Unnamed: "127.0.0.1:0"} }
	tests := []struct {
		name       string
		clientType string
		tweak      func(src, dst *Config)
		listen     string // source listener to use
	}{
		{"destination unnamed, V3 source", "", unnamedDst, "SSH"},
		{"destination unnamed, V2 source", "V2", unnamedDst, "SSH"},
		{"destination unnamed, V1 source", "V1", unnamedDst, "SSH"},
		{"source unnamed, V3", "", unnamedSrc, Unnamed},
		{"source unnamed, V2", "V2", unnamedSrc, Unnamed},
		{"source unnamed, V1", "V1", unnamedSrc, Unnamed},
		{"both unnamed", "", func(src, dst *Config) { unnamedSrc(src, dst); unnamedDst(src, dst) }, Unnamed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, pairOpts{services: []string{"SSH"}, clientType: tt.clientType, tweak: tt.tweak})
			addr := p.src.s.Addr(tt.listen)
			if addr == nil {
				t.Fatalf("no source listener for %q", tt.listen)
			}
			for i := range 3 {
				if err := transfer(addr.String(), 256<<10, uint64(i)); err != nil {
					t.Fatalf("transfer %d: %v\nsource log:\n%s\ndestination log:\n%s", i, err, p.src.ev.logText(), p.dst.ev.logText())
				}
			}
		})
	}
}

// TestUnnamedMappingSeveralServices: with a tunnel of two services the
// unnamed mapping matches neither, and both ends say why.
func TestUnnamedMappingSeveralServices(t *testing.T) {
	t.Run("destination", func(t *testing.T) {
		p := newPair(t, pairOpts{services: []string{"SSH", "HTTP"}, tweak: func(_, dst *Config) {
			dst.Services = map[string]string{Unnamed: dst.Services["SSH"]}
		}})
		expectRefused(t, p.src.s.Addr("SSH").String())
		waitUntil(t, "destination warning", func() bool {
			return strings.Contains(p.dst.ev.logText(), "unnamed service mapping serves a tunnel with exactly one service")
		})
	})
	t.Run("source", func(t *testing.T) {
		p := newPair(t, pairOpts{services: []string{"SSH", "HTTP"}, tweak: func(src, _ *Config) {
			src.Services = map[string]string{Unnamed: "127.0.0.1:0"}
		}})
		expectRefused(t, p.src.s.Addr(Unnamed).String())
		waitUntil(t, "source warning", func() bool {
			return strings.Contains(p.src.ev.logText(), "unnamed service mapping needs a tunnel with exactly one service")
		})
	})
}

// expectRefused connects to addr and expects the connection to be closed
// without any byte coming back.
func expectRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write([]byte("hello"))
	n, err := c.Read(make([]byte, 16))
	if n != 0 || !(errors.Is(err, io.EOF) || isReset(err)) {
		t.Fatalf("read %d bytes, %v: want the connection closed with nothing echoed", n, err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func TestUnnamedMappingMustBeAlone(t *testing.T) {
	r := newRelay(t, true, "SSH")
	for _, mode := range []Mode{ModeSource, ModeDestination} {
		cfg := testConfig(r, mode, map[string]string{Unnamed: "127.0.0.1:0", "SSH": "127.0.0.1:0"})
		_, err := New(cfg)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "must be the only one") {
			t.Errorf("mode %d: New with an unnamed and a named mapping: %v, want ErrInvalidConfig naming the rule", mode, err)
		}
	}
}
