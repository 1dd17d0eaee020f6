package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

//go:embed check.js
var checkJS []byte

// npmInstall writes package.json and check.js into dir and installs the
// pinned packages there. --ignore-scripts: aws-crt ships its native addon
// prebuilt for linux x64/arm64 and its install script would only rebuild it.
func npmInstall(ctx context.Context, dir string) error {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not on PATH: install Node.js (.ci/run installs the nodejs package)", tool)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	pkg, _ := json.MarshalIndent(map[string]any{
		"name": "tunnel-agent-greengrass-sdk-check", "private": true,
		"dependencies": map[string]string{"aws-iot-device-sdk-v2": sdkVersion, "aws-crt": crtVersion},
	}, "", "  ")
	for name, b := range map[string][]byte{"package.json": pkg, "check.js": checkJS} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ictx, "npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm install in %s: %w: %s", dir, err, tail(out))
	}
	fmt.Printf("npm: aws-iot-device-sdk-v2@%s aws-crt@%s in %s (%.1f s)\n", sdkVersion, crtVersion, dir, time.Since(start).Seconds())
	return nil
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
