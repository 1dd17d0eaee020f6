package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

const benchThing = "bench-thing"

// Service ids of the tunnel: the sink and the echo service.
const (
	svcSink = "SINK"
	svcEcho = "ECHO"
	svcGen  = "GEN"
)

// tunnelServices are the services of the bench tunnel (3 is the maximum).
var tunnelServices = []string{svcSink, svcEcho, svcGen}

// emulatorInfo is what tunnel-emulator prints at start.
type emulatorInfo struct {
	APIURL, Data, MQTT, CAFile string
}

var emuLineRe = regexp.MustCompile(`^(API endpoint|Data endpoint|MQTT broker|CA certificate):\s+(\S+)`)

// startEmulator runs tunnel-emulator on loopback with port 0 everywhere (it
// prints the bound addresses, so there is no free-port race) and a temp
// state directory.
func (b *bench) startEmulator(ctx context.Context) (*child, emulatorInfo, error) {
	var info emulatorInfo
	state := filepath.Join(b.tmp, "emulator")
	args := []string{"--api-addr", "127.0.0.1:0", "--data-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
		"--state-dir", state}
	c, err := b.start("tunnel-emulator", b.bins["tunnel-emulator"], args, nil)
	if err != nil {
		return nil, info, err
	}
	vals := map[string]string{}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, _, err = c.waitLine(wctx, 0, func(l string) bool {
		if m := emuLineRe.FindStringSubmatch(l); m != nil {
			vals[m[1]] = m[2]
		}
		return len(vals) == 4
	})
	if err != nil {
		return c, info, fmt.Errorf("waiting for tunnel-emulator to print its endpoints: %w", err)
	}
	info = emulatorInfo{APIURL: vals["API endpoint"], Data: vals["Data endpoint"], MQTT: vals["MQTT broker"], CAFile: vals["CA certificate"]}
	return c, info, nil
}

// issueDeviceCert runs `tunnel-emulator certs` for the bench thing.
func (b *bench) issueDeviceCert(ctx context.Context) (cert, key string, err error) {
	dir := filepath.Join(b.tmp, "device")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := b.start("tunnel-emulator certs", b.bins["tunnel-emulator"],
		[]string{"certs", "--thing", benchThing, "--out", dir, "--state-dir", filepath.Join(b.tmp, "emulator")}, nil)
	if err != nil {
		return "", "", err
	}
	vals := map[string]string{}
	_, _, err = c.waitLine(ctx, 0, func(l string) bool {
		if k, v, ok := strings.Cut(l, ":"); ok {
			vals[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
		return vals["certificate"] != "" && vals["private key"] != ""
	})
	if err != nil {
		return "", "", fmt.Errorf("tunnel-emulator certs: %w", err)
	}
	return vals["certificate"], vals["private key"], nil
}

// writeAgentConfig writes the agent's YAML config for the emulator.
func (b *bench) writeAgentConfig(emu emulatorInfo, cert, key string) (string, error) {
	host, port, ok := strings.Cut(emu.MQTT, ":")
	if !ok {
		return "", fmt.Errorf("emulator MQTT address %q has no port", emu.MQTT)
	}
	q := func(s string) string { j, _ := json.Marshal(s); return string(j) } // JSON strings are YAML
	services := []string{
		"  " + svcSink + ": " + q(b.sink.Addr()),
		"  " + svcEcho + ": " + q(b.echo.Addr()),
		"  " + svcGen + ": " + q(b.gen.Addr()),
	}
	if b.stuck != nil {
		services = append(services, "  "+svcStuck+": "+q(b.stuck.Addr()))
	}
	cfg := strings.Join(slices.Concat([]string{
		"thing_name: " + benchThing,
		"endpoint: " + q(host),
		"port: " + port,
		"cert: " + q(cert),
		"key: " + q(key),
		"root_ca: " + q(emu.CAFile),
		"services:"}, services, []string{
		"max_tunnels: 10",
		"data_endpoint: " + q(emu.Data),
		"ca_file: " + q(emu.CAFile),
		"log_level: info",
		"log_format: json",
		"state_dir: " + q(filepath.Join(b.tmp, "agent-state")),
	}), "\n") + "\n"
	path := filepath.Join(b.tmp, "agent.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// agentWarnings returns the distinct messages of the agent's WARN and
// ERROR lines from line index from on, joined.
func agentWarnings(c *child, from int) string {
	c.mu.Lock()
	lines := slices.Clone(c.lines[min(from, len(c.lines)):])
	c.mu.Unlock()
	var msgs []string
	for _, l := range lines {
		var a struct{ Level, Msg string }
		if json.Unmarshal([]byte(l), &a) == nil && (a.Level == "WARN" || a.Level == "ERROR") && !slices.Contains(msgs, a.Msg) {
			msgs = append(msgs, a.Msg)
		}
	}
	return strings.Join(msgs, "; ")
}

// agentLine is the part of a tunnel-agent JSON log line the bench reads.
type agentLine struct {
	Time  time.Time `json:"time"`
	Msg   string    `json:"msg"`
	Event string    `json:"event"`
}

func parseAgentLine(l string) (agentLine, bool) {
	var a agentLine
	if !strings.HasPrefix(l, "{") || json.Unmarshal([]byte(l), &a) != nil {
		return a, false
	}
	return a, true
}

// agentEvent matches a JSON log line with the given message or event.
func agentEvent(name string) func(string) bool {
	return func(l string) bool {
		a, ok := parseAgentLine(l)
		return ok && (a.Msg == name || a.Event == name)
	}
}

// startAgent runs tunnel-agent (with BENCH_AGENT_ENV added to its
// environment) and waits until it has subscribed; it returns the time from
// the process start to the "subscribed" event's timestamp.
func (b *bench) startAgent(ctx context.Context, cfgPath string) (*child, time.Duration, error) {
	t0 := time.Now()
	c, err := b.start("tunnel-agent", b.bins["tunnel-agent"], []string{"run", "--config", cfgPath}, strings.Fields(os.Getenv("BENCH_AGENT_ENV")))
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	line, _, err := c.waitLine(ctx, 0, agentEvent("subscribed"))
	if err != nil {
		return c, 0, fmt.Errorf("waiting for tunnel-agent to subscribe: %w", err)
	}
	a, _ := parseAgentLine(line)
	return c, a.Time.Sub(t0), nil
}

var proxyLineRe = regexp.MustCompile(`^([A-Za-z0-9:_-]+): listening on (\S+)`)

// startProxy runs `tunnelctl proxy` (process name) as the source with the
// token in a 0600 file (never in argv) and returns the local address of
// each service.
func (b *bench) startProxy(ctx context.Context, emu emulatorInfo, token, name string) (*child, map[string]string, error) {
	tokenFile := filepath.Join(b.tmp, strings.ReplaceAll(name, " ", "-")+".token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return nil, nil, err
	}
	args := []string{"proxy", "--services", svcSink + "=0," + svcEcho + "=0," + svcGen + "=0", "--endpoint", emu.Data,
		"--ca-file", emu.CAFile, "--token-file", tokenFile}
	c, err := b.start(name, b.bins["tunnelctl"], args, nil)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	addrs := map[string]string{}
	_, _, err = c.waitLine(ctx, 0, func(l string) bool {
		if m := proxyLineRe.FindStringSubmatch(l); m != nil {
			addrs[m[1]] = m[2]
		}
		return len(addrs) == len(tunnelServices)
	})
	if err != nil {
		return c, nil, fmt.Errorf("waiting for %s to listen: %w", name, err)
	}
	return c, addrs, nil
}
