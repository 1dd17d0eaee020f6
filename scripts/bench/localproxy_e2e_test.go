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
// command line) that aborts processes on purpose, as the C++ localproxy
// does when a local reader falls behind (its 3rd process at once, its 6th
// 0.1 s in: during its setup or run, or, on a fast machine, after the bench
// already stopped it, which is then no crash), or to $LOCALPROXY
// when set (e.g. the C++ binary), with small transfers and no size builds.
// Every LOCALPROXY row must be measured next to ours from the runs that
// completed, the crashes counted in their own row, and the bench must not
// fail because of them.
func TestLocalProxyEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end bench run (builds and runs the programs): skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	wrapper, minCrashes, maxCrashes := os.Getenv(localProxyEnv), 0, 1<<30 // e.g. the AWS C++ localproxy
	if wrapper == "" {
		wrapper, minCrashes, maxCrashes = tunnelctlWrapper(ctx, t, dir), 1, 2
	}
	out := filepath.Join(dir, "out.json")
	o := options{quick: true, out: out, reps: 1, bulk: 16 << 20, bulkMax: 2 * time.Second, latDur: 200 * time.Millisecond,
		connects: 1, budget: 90 * time.Second, localproxy: wrapper, noSizes: true, lean: true}
	ok, err := run(ctx, func() {}, o)
	http.DefaultClient.CloseIdleConnections() // the API client's keep-alive connections (goleak)
	if err != nil {
		t.Fatal(err)
	}
	rep := readReport(t, out)
	if !ok {
		t.Errorf("bench reported a failure: %v", rep.Errors)
	}
	crashes := 0
	for _, r := range []lpRole{lpSource, lpDestination} {
		var n int
		for _, row := range rep.Rows {
			if !strings.HasSuffix(row.Metric, ", "+r.label()) {
				continue
			}
			n++
			crashRow := strings.Contains(row.Metric, "(crashes)")
			switch {
			case row.Value == nil || (row.Baseline == nil && !crashRow) || row.Status == statusFail:
				t.Errorf("row %q: value %v, baseline %v, status %q", row.Metric, row.Value, row.Baseline, row.Status)
			case crashRow:
				crashes += int(*row.Value)
			}
		}
		// 4 bulk, 2 round trip, 2 memory, 1 CPU, 1 crash count.
		if n != 10 {
			t.Errorf("%d rows for %s, want 10", n, r.label())
		}
	}
	if crashes < minCrashes || crashes > maxCrashes {
		t.Errorf("crash rows count %d crashes, want %d to %d", crashes, minCrashes, maxCrashes)
	}
}

// tunnelctlWrapper builds tunnelctl and writes a LOCALPROXY script that
// runs `tunnelctl localproxy`, except that its 3rd start aborts (SIGABRT)
// at once and its 6th aborts itself 0.1 s in.
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
	script := "#!/bin/sh\n" +
		"n=$(($(cat " + dir + "/starts 2>/dev/null || echo 0) + 1))\necho $n > " + dir + "/starts\n" +
		"case $n in 3) kill -ABRT $$ ;; 6) (sleep 0.1; kill -ABRT $$) & ;; esac\n" +
		"exec " + tunnelctl + " localproxy \"$@\"\n"
	wrapper := filepath.Join(dir, "localproxy.sh")
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
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
