package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestConnectTarget(t *testing.T) {
	tests := []struct {
		in             []string
		thing, service string
		err            bool
	}{
		{[]string{"pi-1"}, "pi-1", "SSH", false},
		{[]string{"pi-1.tunnel"}, "pi-1", "SSH", false},
		{[]string{"pi-1.tunnel.example"}, "pi-1", "SSH", false},
		{[]string{"pi-1", "HTTP"}, "pi-1", "HTTP", false},
		{[]string{".tunnel"}, "", "", true},
		{nil, "", "", true},
		{[]string{"a", "b", "c"}, "", "", true},
	}
	for _, tc := range tests {
		thing, svc, err := connectTarget(tc.in)
		if thing != tc.thing || svc != tc.service || (err != nil) != tc.err {
			t.Errorf("connectTarget(%q) = %q, %q, %v", tc.in, thing, svc, err)
		}
	}
	if tunnelKey("e", "r", "p", "pi-1", "SSH") == tunnelKey("e", "r", "p", "pi-2", "SSH") {
		t.Error("two things share a key")
	}
}

// TestCacheState: the state file is 0600 in a 0700 directory, a readable one is
// refused, an expired one is dropped.
func TestCacheState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	c, err := openCache(func(k string) string { return map[string]string{EnvCacheDir: dir}[k] })
	if err != nil {
		t.Fatal(err)
	}
	st := &tunnelState{TunnelID: "t1", SourceToken: "secret-token", ClientToken: "ct", Expires: time.Now().Add(time.Hour)}
	if err := c.saveState("k", st); err != nil {
		t.Fatal(err)
	}
	got, err := c.loadState("k", time.Now())
	if err != nil || got == nil || got.SourceToken != "secret-token" {
		t.Fatalf("loadState = %+v, %v", got, err)
	}
	if runtime.GOOS != "windows" {
		for path, want := range map[string]os.FileMode{dir: 0o700, c.stateFile("k"): 0o600} {
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v (%v)", path, fi.Mode().Perm(), want, err)
			}
		}
		if err := os.Chmod(c.stateFile("k"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := c.loadState("k", time.Now()); err == nil {
			t.Error("a state file readable by others was used")
		}
		_ = os.Chmod(c.stateFile("k"), 0o600)
	}
	if got, _ := c.loadState("k", time.Now().Add(2*time.Hour)); got != nil {
		t.Error("an expired state was used")
	}
	if _, err := os.Stat(c.stateFile("k")); !os.IsNotExist(err) {
		t.Error("the expired state file was not removed")
	}
}

// TestFileLock: the key's lock excludes a second holder until released.
func TestFileLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.lock")
	l1, err := lockFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if l2, err := tryLockFile(path); err != nil || l2 != nil {
		t.Fatalf("second lock taken while held: %v %v", l2, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, path); err == nil {
		t.Fatal("lockFile did not wait")
	}
	l1.release()
	l3, err := tryLockFile(path)
	if err != nil || l3 == nil {
		t.Fatalf("lock not free after release: %v", err)
	}
	l3.release()
}

// TestSSHConfigBlock: the printed block parses with the real ssh (ssh -G) and
// sends pi-1.tunnel through tunnelctl connect.
func TestSSHConfigBlock(t *testing.T) {
	a := &App{Self: "/opt/tunnel ctl/tunnelctl"}
	var out strings.Builder
	a.Stdout, a.Stderr = &out, &out
	if code := a.Run(context.Background(), []string{"--profile", "emu", "ssh-config", "--user", "pi"}); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	block := out.String()
	if !strings.Contains(block, `ProxyCommand "/opt/tunnel ctl/tunnelctl" --profile emu connect %n`) || !strings.Contains(block, "Host *.tunnel") {
		t.Fatalf("block:\n%s", block)
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client")
	}
	cfg := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfg, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := exec.Command("ssh", "-G", "-F", cfg, "pi-1.tunnel").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(g), `proxycommand "/opt/tunnel ctl/tunnelctl" --profile emu connect %n`) ||
		!strings.Contains(string(g), "\nuser pi\n") {
		t.Errorf("ssh -G:\n%s", g)
	}
	for in, want := range map[string]string{"tunnelctl": "tunnelctl", `C:\Program Files\tunnelctl.exe`: `"C:\Program Files\tunnelctl.exe"`,
		"it's": `"it's"`, `a"b`: `'a"b'`} {
		if got := quoteArg(in); got != want {
			t.Errorf("quoteArg(%q) = %q, want %q", in, got, want)
		}
	}
}
