package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLocalProxyEndToEnd runs the bench with LOCALPROXY set to a wrapper
// around `tunnelctl localproxy` (the drop-in with the AWS localproxy
// command line), or to $LOCALPROXY when set (e.g. the C++ binary), with
// small transfers and no size builds, and checks that every LOCALPROXY row
// was measured next to ours.
func TestLocalProxyEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end bench run (builds and runs the programs): skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	wrapper := os.Getenv(localProxyEnv) // e.g. the AWS C++ localproxy
	if wrapper == "" {
		wrapper = tunnelctlWrapper(ctx, t, dir)
	}
	out := filepath.Join(dir, "out.json")
	o := options{quick: true, out: out, reps: 1, bulk: 16 << 20, bulkMax: 2 * time.Second, latDur: 200 * time.Millisecond,
		connects: 1, budget: 50 * time.Second, localproxy: wrapper, noSizes: true}
	ok, err := run(ctx, func() {}, o)
	http.DefaultClient.CloseIdleConnections() // the API client's keep-alive connections (goleak)
	if err != nil {
		t.Fatal(err)
	}
	rep := readReport(t, out)
	if !ok {
		t.Errorf("bench reported a failure: %v", rep.Errors)
	}
	for _, r := range []lpRole{lpSource, lpDestination} {
		var n int
		for _, row := range rep.Rows {
			if !strings.HasSuffix(row.Metric, ", "+r.label()) {
				continue
			}
			n++
			if row.Value == nil || row.Baseline == nil || row.Status == statusFail {
				t.Errorf("row %q: value %v, baseline %v, status %q", row.Metric, row.Value, row.Baseline, row.Status)
			}
		}
		// 4 bulk, 2 round trip, 2 memory, 1 CPU.
		if n != 9 {
			t.Errorf("%d rows for %s, want 9", n, r.label())
		}
	}
}

// tunnelctlWrapper builds tunnelctl and writes a LOCALPROXY script that
// runs `tunnelctl localproxy`.
func tunnelctlWrapper(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	root, err := moduleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tunnelctl := filepath.Join(dir, "tunnelctl")
	if err := goBuild(ctx, root, "./cmd/tunnelctl", tunnelctl, "CGO_ENABLED=0"); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "localproxy.sh")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec "+tunnelctl+" localproxy \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper
}

// jsonRow is a row as written to the JSON file (null for not measured).
type jsonRow struct {
	Metric   string   `json:"metric"`
	Value    *float64 `json:"value"`
	Baseline *float64 `json:"baseline"`
	Status   string   `json:"status"`
}

func readReport(t *testing.T, path string) struct {
	Rows   []jsonRow `json:"rows"`
	Errors []string  `json:"errors"`
} {
	t.Helper()
	var rep struct {
		Rows   []jsonRow `json:"rows"`
		Errors []string  `json:"errors"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}
