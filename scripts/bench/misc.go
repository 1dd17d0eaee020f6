package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// connectMethod says how the connect time is taken (printed in the report).
const connectMethod = "OpenTunnel call start -> timestamp of the agent's \"tunnel connected\" JSON log event " +
	"(ns resolution, same clock; more precise than polling DescribeTunnel, which is used as a cross-check)"

// measureConnect takes more OpenTunnel -> connected samples (each tunnel
// closed again) and the TLS handshake to the data endpoint as baseline.
func (b *bench) measureConnect(ctx context.Context, st *stack) {
	b.rep.ConnectM = connectMethod
	base := math.NaN()
	var samples []float64
	if st != nil && ctx.Err() == nil {
		base = b.tlsHandshake(ctx, st.info)
		for _, d := range st.connect {
			samples = append(samples, float64(d))
		}
		defer b.addStartRow(st, base)
		defer b.measureFirstByte(ctx, st)
		for i := 1; i < b.opts.connects && ctx.Err() == nil; i++ {
			b.progress("connect sample %d/%d", i+1, b.opts.connects)
			d, tun, err := b.connectOnce(ctx, st)
			if tun.TunnelID != "" {
				b.closeAndWait(ctx, st, tun.TunnelID)
			}
			if err != nil {
				b.fail(err)
				break
			}
			samples = append(samples, float64(d))
		}
	}
	v := median(samples)
	b.add(row{Section: secConnect, Metric: "OpenTunnel -> agent destination connected", Unit: unitMillis, Value: v,
		Samples: samples, Baseline: base, BaselineLabel: "TCP+TLS handshake", Target: "< 100 ms",
		Status: judge(v, v < float64(100*time.Millisecond))})
}

// closeAndWait closes a tunnel and waits (bounded) for the agent to log
// that it ended, so the next sample starts clean.
func (b *bench) closeAndWait(ctx context.Context, st *stack, id string) {
	from := st.agent.mark()
	if err := st.api.closeTunnel(ctx, id); err != nil {
		b.fail(err)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, _, _ = st.agent.waitLine(wctx, from, agentEvent("tunnel closed"))
}

// tlsHandshake is the median time of a TCP connect plus TLS handshake
// (verified against the emulator CA) to the data endpoint.
func (b *bench) tlsHandshake(ctx context.Context, emu emulatorInfo) float64 {
	pem, err := os.ReadFile(emu.CAFile)
	if err != nil {
		return math.NaN()
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	var ds []float64
	for range 5 {
		d := tls.Dialer{Config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t0 := time.Now()
		c, err := d.DialContext(dctx, "tcp", emu.Data)
		el := time.Since(t0)
		cancel()
		if err != nil {
			b.fail(fmt.Errorf("tls handshake with the data endpoint: %w", err))
			return math.NaN()
		}
		c.Close()
		ds = append(ds, float64(el))
	}
	return median(ds)
}

// measurePeak adds the peak memory of the agent and emulator after the load.
func (b *bench) measurePeak(st *stack) {
	if st == nil {
		return
	}
	for _, p := range []struct {
		name, label string
		c           *child
		base        float64
	}{{"agent", "agent idle", st.agent, st.agentIdle}, {"emulator", "emulator, 1 tunnel", st.emu, st.emuOne}} {
		m, err := readMem(p.c.pid())
		if err != nil {
			continue
		}
		b.add(row{Section: secMemory, Metric: p.name + " peak RSS (VmHWM) after all runs", Unit: unitMiB,
			Value: float64(m.HWM), Baseline: p.base, BaselineLabel: p.label})
	}
}

// helloTLS is the size baseline: the smallest Go program that makes a
// verified TLS connection, which any tunnel client has to pay for.
const helloTLS = `package main

import (
	"crypto/tls"
	"os"
)

func main() {
	c, err := tls.Dial("tcp", os.Args[1], nil)
	if err != nil {
		os.Exit(1)
	}
	c.Close()
}
`

// sizeRows cross-builds the stripped tunnel-agent for the device targets,
// next to the TLS hello program as baseline, one target per goroutine, and
// returns their rows in target order with the errors met.
func (b *bench) sizeRows(ctx context.Context, dir string) ([]row, []error) {
	hello := filepath.Join(b.tmp, "hello")
	err := os.MkdirAll(hello, 0o700)
	if err == nil {
		err = os.WriteFile(filepath.Join(hello, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o600)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(hello, "main.go"), []byte(helloTLS), 0o600)
	}
	if err != nil {
		return nil, []error{err}
	}
	rows := make([]row, len(sizeTargets))
	errs := make([]error, len(sizeTargets))
	var wg sync.WaitGroup
	for i, t := range sizeTargets {
		wg.Go(func() {
			size, err := deviceSize(ctx, b.root, dir, t)
			v := float64(size)
			if err != nil {
				errs[i], v = err, math.NaN()
			}
			base := math.NaN()
			out := filepath.Join(hello, "hello-"+strconv.Itoa(i))
			if err := goBuild(ctx, hello, ".", out, append([]string{"GOWORK=off", "GOFLAGS="}, t.Env...)...); err == nil {
				if fi, err := os.Stat(out); err == nil {
					base = float64(fi.Size())
				}
			}
			rows[i] = row{Section: secSize, Metric: "stripped tunnel-agent, " + t.Name, Unit: unitMB, Value: v,
				Baseline: base, BaselineLabel: "Go TLS hello"}
			if i == 0 {
				rows[i].Target, rows[i].Status = "< 10 MB", judge(v, v < 10e6)
			}
		})
	}
	wg.Wait()
	return rows, slices.DeleteFunc(errs, func(e error) bool { return e == nil })
}
