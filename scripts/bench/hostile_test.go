package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestHostileDrills runs `bench --hostile` (the three process-level drills of
// issue 20 against the real emulator, agent and tunnelctl proxy) and
// requires every bound to hold. About 30 s: only with TUNNEL_HOSTILE_FULL=1;
// the quick variants are agent/tunnel's TestHostile* tests.
func TestHostileDrills(t *testing.T) {
	if os.Getenv("TUNNEL_HOSTILE_FULL") == "" {
		t.Skip("process-level hostile drills: set TUNNEL_HOSTILE_FULL=1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	o := options{hostile: true, drills: "ABC", out: filepath.Join(t.TempDir(), "out.json"), budget: 4 * time.Minute, noSizes: true}
	ok, err := run(ctx, func() {}, o)
	http.DefaultClient.CloseIdleConnections()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Error("a hostile drill missed its bound (see the table above)")
	}
}

func TestHostileOptions(t *testing.T) {
	o, err := parseOptions([]string{"--hostile", "--drills", "AC"}, func(string) string { return "" }, nil)
	if err != nil || !o.hostile || o.drills != "AC" {
		t.Fatalf("options %+v, %v", o, err)
	}
}
