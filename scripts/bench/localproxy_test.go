package main

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCheckLocalProxy(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "lp")
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
		wantErr        error
		errText        string
	}{
		{name: "unset", in: "", want: ""},
		{name: "executable", in: exe, want: exe},
		{name: "not executable", in: plain, wantErr: ErrNotExecutable},
		{name: "directory", in: dir, wantErr: ErrNotExecutable},
		{name: "missing", in: filepath.Join(dir, "nope"), wantErr: os.ErrNotExist, errText: "LOCALPROXY="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkLocalProxy(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseOptionsLocalProxy(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "lp")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == localProxyEnv {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name       string
		args       []string
		lp         string
		wantBudget time.Duration
		wantErr    bool
	}{
		{"quick without", []string{"--quick"}, "", 50 * time.Second, false},
		{"full without", nil, "", 360 * time.Second, false},
		{"quick with", []string{"--quick"}, exe, 100 * time.Second, false},
		{"full with", nil, exe, 720 * time.Second, false},
		{"explicit budget kept", []string{"--budget", "70s"}, exe, 70 * time.Second, false},
		{"not executable", nil, filepath.Dir(exe), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args, env(tt.lp), io.Discard)
			if tt.wantErr {
				if err == nil {
					t.Fatal("accepted a LOCALPROXY that is not executable")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.budget != tt.wantBudget || o.localproxy != tt.lp {
				t.Errorf("budget %s, localproxy %q; want %s, %q", o.budget, o.localproxy, tt.wantBudget, tt.lp)
			}
		})
	}
}

func TestLPServiceArg(t *testing.T) {
	tests := []struct {
		name    string
		targets map[string]string
		want    string
		wantErr bool
	}{
		{"source ports", map[string]string{svcSink: "4001", svcEcho: "4002", svcGen: "4003"}, "SINK=4001,ECHO=4002,GEN=4003", false},
		{"destination addresses", map[string]string{svcSink: "127.0.0.1:1", svcEcho: "127.0.0.1:2", svcGen: "127.0.0.1:3"},
			"SINK=127.0.0.1:1,ECHO=127.0.0.1:2,GEN=127.0.0.1:3", false},
		{"missing service", map[string]string{svcSink: "1", svcEcho: "2"}, "", true},
		{"empty address", map[string]string{svcSink: "1", svcEcho: "2", svcGen: ""}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lpServiceArg(tunnelServices, tt.targets)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %q, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestLPArgs(t *testing.T) {
	tests := []struct {
		role lpRole
		want []string
	}{
		{lpSource, []string{"-s", "A=1", "-b", "127.0.0.1", "-e", "127.0.0.1:9", "-c", "/ca", "-v", "3"}},
		{lpDestination, []string{"-d", "A=127.0.0.1:1", "-e", "127.0.0.1:9", "-c", "/ca", "-v", "3"}},
	}
	for _, tt := range tests {
		svc := "A=1"
		if tt.role == lpDestination {
			svc = "A=127.0.0.1:1"
		}
		got := lpArgs(tt.role, svc, "127.0.0.1:9", "/ca")
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.role, got, tt.want)
		}
		for _, a := range got {
			if a == "-t" || a == "--access-token" {
				t.Errorf("%s: the token must not be passed in argv: %q", tt.role, got)
			}
		}
	}
}

func TestParseSubjectHash(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"6749398f\n", "6749398f", false},
		{"  0a1b2c3d  ", "0a1b2c3d", false},
		{"6749398F", "", true},
		{"unable to load certificate", "", true},
		{"", "", true},
		{"../../x\n", "", true},
	}
	for _, tt := range tests {
		got, err := parseSubjectHash(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseSubjectHash(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 3 || ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] {
		t.Fatalf("ports %v: want 3 distinct", ports)
	}
	for _, p := range ports {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		if err != nil {
			t.Fatalf("port %d not free after freePorts returned: %v", p, err)
		}
		ln.Close()
	}
}

func TestLPRowNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{lpMetric(bulkName("upload", 1), lpSource), "bulk upload, 1 stream, LOCALPROXY as source"},
		{lpMetric(bulkName("download", 8), lpDestination), "bulk download, 8 streams, LOCALPROXY as destination"},
		{lpMetric("round trip p99", lpSource), "round trip p99, LOCALPROXY as source"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
