// Command greengrass-sdk cross-checks the test Greengrass nucleus
// (platform/greengrass/fakenucleus) with AWS's own IPC client, the npm
// aws-iot-device-sdk-v2 greengrasscoreipc client on aws-crt's native
// event-stream, and then puts our own client (platform/greengrass) through the
// same authorization failures, so that the two can be compared. It is the
// greengrass-sdk stage of scripts/test.sh; run it from the repository root:
//
//	go run ./scripts/greengrass-sdk [-dir DIR]
//
// The npm packages are installed in DIR (default
// $XDG_CACHE_HOME/tunnel-agent/greengrass-sdk, i.e. outside the source tree),
// pinned to the versions below; node and npm must be on PATH. The world is
// real: the emulator's MQTT broker (mutual TLS) behind the nucleus' MQTT
// connection, a real notification from the emulator's OpenTunnel, a watcher
// MQTT client that sees what the component published.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Pinned npm versions (aws-crt pinned too: it carries the native event-stream).
const (
	sdkVersion = "1.28.0"
	crtVersion = "1.33.1"
)

func main() {
	dir := flag.String("dir", defaultDir(), "npm install directory (outside the source tree)")
	recipe := flag.String("recipe", "configs/greengrass/recipe.yaml", "recipe whose accessControl the nucleus enforces")
	timeout := flag.Duration("timeout", 8*time.Minute, "bound for the whole check, npm install included")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r := &report{}
	if err := run(ctx, r, *dir, *recipe); err != nil {
		r.fail("setup", err.Error())
	}
	os.Exit(r.summary())
}

func defaultDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(os.TempDir(), "tunnel-agent-greengrass-sdk")
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "tunnel-agent", "greengrass-sdk")
}

func run(ctx context.Context, r *report, dir, recipe string) error {
	if err := npmInstall(ctx, dir); err != nil {
		return err
	}
	w, err := newWorld(ctx, recipe)
	if err != nil {
		return err
	}
	defer w.close()
	if err := runOfficialClient(ctx, r, w, dir); err != nil {
		return err
	}
	return runOurClient(ctx, r, w)
}

// report collects named checks and prints the closing line.
type report struct{ passed, failed int }

func (r *report) ok(name, detail string) {
	r.passed++
	fmt.Printf("ok    %-52s %s\n", name, detail)
}

func (r *report) fail(name, detail string) {
	r.failed++
	fmt.Printf("FAIL  %-52s %s\n", name, detail)
}

func (r *report) check(name string, good bool, detail string) {
	if good {
		r.ok(name, detail)
	} else {
		r.fail(name, detail)
	}
}

func (r *report) summary() int {
	fmt.Printf("greengrass-sdk: %d passed, %d failed\n", r.passed, r.failed)
	if r.failed > 0 || r.passed == 0 {
		return 1
	}
	return 0
}
