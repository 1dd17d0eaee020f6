package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// EnvCacheDir overrides where connect keeps its shared-tunnel state.
const EnvCacheDir = "TUNNELCTL_CACHE_DIR"

// connectCache is the user's private directory of shared tunnels: per tunnel key
// a lock file, the holder's socket, its log and its state (with the source
// access token, hence 0600 in a 0700 directory; on Windows the directory under
// %LocalAppData% is private to the user by its inherited ACL).
type connectCache struct{ dir string }

// openCache creates (or tightens) the cache directory.
func openCache(getenv func(string) string) (*connectCache, error) {
	dir := getenv(EnvCacheDir)
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("finding the cache directory (set %s): %w", EnvCacheDir, err)
		}
		dir = filepath.Join(base, "tunnelctl", "connect")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the connect cache %s: %w", dir, err)
	}
	if runtime.GOOS != "windows" {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("making the connect cache %s private: %w", dir, err)
		}
	}
	return &connectCache{dir: dir}, nil
}

// tunnelKey names the shared tunnel of one thing and service at one API
// endpoint, region and profile (a short hash: socket paths are limited to ~100 bytes).
func tunnelKey(endpoint, region, profile, thing, service string) string {
	sum := sha256.Sum256([]byte(endpoint + "\x00" + region + "\x00" + profile + "\x00" + thing + "\x00" + service))
	return hex.EncodeToString(sum[:6])
}

func (c *connectCache) path(key, ext string) string { return filepath.Join(c.dir, key+ext) }

// Files of one key.
func (c *connectCache) lockFile(key string) string  { return c.path(key, ".lock") }
func (c *connectCache) holdFile(key string) string  { return c.path(key, ".hold") }
func (c *connectCache) socket(key string) string    { return c.path(key, ".sock") }
func (c *connectCache) inner(key string) string     { return c.path(key, ".in.sock") }
func (c *connectCache) logFile(key string) string   { return c.path(key, ".log") }
func (c *connectCache) stateFile(key string) string { return c.path(key, ".json") }

// tunnelState is what a holder keeps so that the next holder resumes the same
// tunnel (same access token and client token) instead of opening another.
type tunnelState struct {
	TunnelID    string    `json:"tunnelId"`
	Thing       string    `json:"thing"`
	Service     string    `json:"service"`
	SourceToken string    `json:"sourceAccessToken"`
	ClientToken string    `json:"clientToken"`
	Expires     time.Time `json:"expires"`
	PID         int       `json:"pid"` // the holder's process
}

func (c *connectCache) saveState(key string, st *tunnelState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeSecret(c.stateFile(key), string(b))
}

// loadState returns the saved state, nil when there is none or it has expired.
func (c *connectCache) loadState(key string, now time.Time) (*tunnelState, error) {
	file := c.stateFile(key)
	st, err := os.Stat(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading tunnel state: %w", err)
	}
	if !ownerOnly(st.Mode()) {
		return nil, fmt.Errorf("%s: %w", file, errTokenFileMode)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading tunnel state: %w", err)
	}
	var s tunnelState
	if json.Unmarshal(b, &s) != nil || s.TunnelID == "" || s.SourceToken == "" || !now.Before(s.Expires) {
		_ = os.Remove(file)
		return nil, nil
	}
	return &s, nil
}

func (c *connectCache) dropState(key string) { _ = os.Remove(c.stateFile(key)) }
