package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
)

// record is what the agent keeps on disk per tunnel so that a restart
// within the tunnel's lifetime resumes it with the same access token and
// client token (no rotation needed). Files are mode 0600 in a 0700 directory
// and contain secrets: they are never logged.
type record struct {
	Version     int       `json:"version"`
	AccessToken string    `json:"access_token"`
	ClientToken string    `json:"client_token"`
	Region      string    `json:"region"`
	Services    []string  `json:"services"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
}

const recordVersion = 1

// store keeps records in <state_dir>/tunnels/<id>.json.
type store struct{ dir string }

func newStore(stateDir string) (*store, error) {
	dir := filepath.Join(stateDir, "tunnels")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s (check state_dir is writable by the agent): %w", dir, err)
	}
	if err := restrictOwned(stateDir); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict state directory %s: %w", dir, err)
	}
	return &store{dir: dir}, nil
}

func (s *store) path(id string) string { return filepath.Join(s.dir, id+".json") }

// save writes the record atomically with mode 0600.
func (s *store) save(id string, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode tunnel state: %w", err)
	}
	f, err := os.CreateTemp(s.dir, ".tmp-*") // created 0600
	if err != nil {
		return fmt.Errorf("save tunnel state: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("save tunnel state: %w", err)
	}
	if err := os.Rename(tmp, s.path(id)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("save tunnel state: %w", err)
	}
	return nil
}

func (s *store) remove(id string) error {
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove tunnel state: %w", err)
	}
	return nil
}

// load returns the stored records by id. Unreadable files are reported in
// bad and should be removed by the caller.
func (s *store) load() (recs map[string]*record, bad []string, err error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read state directory: %w", err)
	}
	recs = make(map[string]*record)
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			_ = os.Remove(filepath.Join(s.dir, name))
			continue
		}
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		var r record
		if err != nil || json.Unmarshal(b, &r) != nil || r.Version != recordVersion ||
			r.AccessToken == "" || r.ClientToken == "" || tokenID(r.AccessToken) != id {
			bad = append(bad, id)
			continue
		}
		recs[id] = &r
	}
	return recs, bad, nil
}

// tokenID names a tunnel by a hash of its access token: stable across
// duplicate notifications and restarts, safe to log and to use as a file
// name, and it reveals nothing of the token (audit.TunnelID, which
// tunnelctl prints too).
func tokenID(token string) string { return audit.TunnelID(token) }

// restrictOwned makes state_dir 0700 when the agent owns it (it may have
// been created 0755 by a package or by hand). A directory owned by someone
// else (state_dir: /tmp, say) is left alone: tunnels/ below it is 0700.
func restrictOwned(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state directory %s: %w", dir, err)
	}
	if !ownedByMe(fi) || fi.Mode().Perm() == 0o700 {
		return nil
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restrict state directory %s to mode 0700: %w", dir, err)
	}
	return nil
}
