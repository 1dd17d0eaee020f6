package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// The programs the bench runs, by their package path in the module.
var programs = []string{"tunnel-emulator", "tunnel-agent", "tunnelctl"}

// moduleRoot is the directory of the go.mod the bench belongs to.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (is the go tool on PATH?)", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the module: run the bench from the repository")
	}
	return filepath.Dir(mod), nil
}

// goBuild builds pkg (e.g. ./cmd/tunnel-agent) stripped into out, with env
// added to the environment (GOOS, GOARCH, ...).
func goBuild(ctx context.Context, root, pkg, out string, env ...string) error {
	return goBuildFlags(ctx, root, pkg, out, "-s -w", env...)
}

// goBuildFlags is goBuild with the given -ldflags ("" keeps the symbols
// that perf needs).
func goBuildFlags(ctx context.Context, root, pkg, out, ldflags string, env ...string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 600 {
			msg = msg[:600] + " ..."
		}
		return fmt.Errorf("go build %s %s: %w\n%s", strings.Join(env, " "), pkg, err, msg)
	}
	return nil
}

// buildPrograms builds the three programs for this machine into dir, side
// by side, and returns the paths of those that built; errs has one entry
// per failure. symbols keeps the symbol table (for perf).
func buildPrograms(ctx context.Context, root, dir string, symbols bool) (map[string]string, []error) {
	ldflags := "-s -w"
	if symbols {
		ldflags = ""
	}
	errs := make([]error, len(programs))
	var wg sync.WaitGroup
	for i, p := range programs {
		wg.Go(func() { errs[i] = goBuildFlags(ctx, root, "./cmd/"+p, filepath.Join(dir, p), ldflags, "CGO_ENABLED=0") })
	}
	wg.Wait()
	bins := map[string]string{}
	var failed []error
	for i, p := range programs {
		if errs[i] != nil {
			failed = append(failed, errs[i])
			continue
		}
		bins[p] = filepath.Join(dir, p)
	}
	return bins, failed
}

// armTarget is a cross-compilation target for the device binary size.
type armTarget struct {
	Name string
	Env  []string
}

var sizeTargets = []armTarget{
	{"linux/arm (GOARM=6)", []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm", "GOARM=6"}},
	{"linux/arm64", []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64"}},
}

// deviceSize cross-builds the stripped tunnel-agent and returns its size.
func deviceSize(ctx context.Context, root, dir string, t armTarget) (int64, error) {
	out := filepath.Join(dir, "tunnel-agent-"+strings.NewReplacer("/", "-", " ", "", "(", "", ")", "", "=", "").Replace(t.Name))
	if err := goBuild(ctx, root, "./cmd/tunnel-agent", out, t.Env...); err != nil {
		return 0, err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
