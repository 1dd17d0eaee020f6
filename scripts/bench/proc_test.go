package main

import (
	"os"
	"testing"
	"time"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in   string
		want procMem
	}{
		{"Name:\ttunnel-agent\nVmPeak:\t  800000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t7\n",
			procMem{RSS: 10 << 20, HWM: 20 << 20}},
		{"VmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nRssAnon:\t    6144 kB\nRssFile:\t    4096 kB\nRssShmem:\t       0 kB\n",
			procMem{RSS: 10 << 20, HWM: 20 << 20, Anon: 6 << 20, File: 4 << 20}},
	}
	for _, tt := range tests {
		m, err := parseStatus([]byte(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		if m != tt.want {
			t.Errorf("parseStatus(%q) = %+v, want %+v", tt.in, m, tt.want)
		}
	}
	if _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("missing VmRSS accepted")
	}
	if _, err := parseStatus([]byte("RssAnon:\t6144 kB\nRssFile:\t4096 kB\n")); err == nil {
		t.Error("RssAnon and RssFile accepted without VmRSS and VmHWM")
	}
}

func TestParseStat(t *testing.T) {
	// The name may hold spaces and parentheses; utime=150, stime=50 ticks.
	in := "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 7 0 100 0 0\n"
	d, err := parseStat([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if d != 2*time.Second {
		t.Errorf("got %v, want 2s", d)
	}
	if _, err := parseStat([]byte("1 (x) S 1")); err == nil {
		t.Error("short stat accepted")
	}
}

func TestReadSelf(t *testing.T) {
	if _, err := readMem(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := readCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func TestParseSwitches(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"Name:\tx\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n", 127},
		{"voluntary_ctxt_switches:\t5", 5},
		{"Name:\tx\n", 0},
		{"voluntary_ctxt_switches:\tgarbage\nnonvoluntary_ctxt_switches:\t3\n", 3},
	}
	for _, tt := range tests {
		if got := parseSwitches(tt.in); got != tt.want {
			t.Errorf("parseSwitches(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	if n := ctxSwitches([]int{os.Getpid()}); n <= 0 {
		t.Errorf("ctxSwitches(self) = %d, want > 0", n)
	}
}
