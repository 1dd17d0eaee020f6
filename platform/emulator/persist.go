package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// stateFileName holds the tunnels in the state directory, next to the CA.
const (
	stateFileName    = "tunnels.json"
	stateFileVersion = 1
)

// The state file: every tunnel (open, and closed ones within the
// retention), its tags, its tokens' states (current access tokens, bound
// client tokens, whether each was used) and the sequence behind ListTunnels'
// order. Connection states are not kept: after a restart no client is
// connected. The open-tunnel count follows from the tunnels.
type stateFile struct {
	Version      int               `json:"version"`
	Seq          uint64            `json:"seq"`
	Tunnels      []tunnelRecord    `json:"tunnels"`
	ClientTokens []clientTokenBind `json:"clientTokens"`
}

type tunnelRecord struct {
	Seq         uint64        `json:"seq"`
	ID          string        `json:"id"`
	Arn         string        `json:"arn"`
	Description string        `json:"description,omitempty"`
	Thing       string        `json:"thing,omitempty"`
	Services    []string      `json:"services,omitempty"`
	HasDest     bool          `json:"hasDestinationConfig,omitempty"`
	Lifetime    int64         `json:"lifetimeMinutes"`
	Tags        []Tag         `json:"tags,omitempty"`
	Status      string        `json:"status"`
	CreatedAt   time.Time     `json:"createdAt"`
	UpdatedAt   time.Time     `json:"updatedAt"`
	ExpiresAt   time.Time     `json:"expiresAt"`
	ClosedAt    time.Time     `json:"closedAt,omitzero"`
	Modes       [2]modeRecord `json:"modes"`
}

type modeRecord struct {
	Token       string    `json:"token"`
	ClientToken string    `json:"clientToken,omitempty"`
	Used        bool      `json:"used,omitempty"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// clientTokenBind records that a client token was bound to an access token
// of a tunnel's mode (it stays bound after a rotation).
type clientTokenBind struct {
	ClientToken string `json:"clientToken"`
	Tunnel      string `json:"tunnel"`
	Mode        int    `json:"mode"`
}

// snapshotLocked encodes the store; s.mu is held.
func (s *store) snapshotLocked() ([]byte, error) {
	f := stateFile{Version: stateFileVersion, Seq: s.seq, Tunnels: make([]tunnelRecord, 0, len(s.tunnels))}
	for _, t := range s.tunnels {
		r := tunnelRecord{Seq: t.seq, ID: t.id, Arn: t.arn, Description: t.description, Thing: t.thing,
			Services: t.services, HasDest: t.hasDest, Lifetime: t.lifetime, Tags: t.tags, Status: t.status,
			CreatedAt: t.createdAt, UpdatedAt: t.updatedAt, ExpiresAt: t.expiresAt, ClosedAt: t.closedAt}
		for m, ms := range t.modes {
			r.Modes[m] = modeRecord{Token: ms.token, ClientToken: ms.clientToken, Used: ms.used, UpdatedAt: ms.updatedAt}
		}
		f.Tunnels = append(f.Tunnels, r)
	}
	slices.SortFunc(f.Tunnels, func(a, b tunnelRecord) int { return int(a.Seq) - int(b.Seq) })
	for ct, ref := range s.clientTokens {
		f.ClientTokens = append(f.ClientTokens, clientTokenBind{ClientToken: ct, Tunnel: ref.t.id, Mode: ref.mode})
	}
	slices.SortFunc(f.ClientTokens, func(a, b clientTokenBind) int { return compareStrings(a.ClientToken, b.ClientToken) })
	return json.MarshalIndent(f, "", " ")
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// load restores the store from the state file, if there is one.
func (s *store) load(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read tunnel state %s: %w", path, err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != stateFileVersion {
		return fmt.Errorf("tunnel state %s is unreadable (version %d, %v): move it away to start with no tunnels: %w",
			path, f.Version, err, ErrBadState)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq = f.Seq
	for _, r := range f.Tunnels {
		t := &tunnel{seq: r.Seq, id: r.ID, arn: r.Arn, description: r.Description, thing: r.Thing,
			services: r.Services, hasDest: r.HasDest, lifetime: r.Lifetime, tags: r.Tags, status: r.Status,
			createdAt: r.CreatedAt, updatedAt: r.UpdatedAt, expiresAt: r.ExpiresAt, closedAt: r.ClosedAt,
			relay: newRelay(s.bandwidth)}
		if t.status != statusOpen {
			t.relay.closed = true
		}
		for m, mr := range r.Modes {
			t.modes[m] = modeState{token: mr.Token, clientToken: mr.ClientToken, used: mr.Used, updatedAt: mr.UpdatedAt}
			s.tokens[mr.Token] = tokenRef{t: t, mode: m}
		}
		s.tunnels[t.id] = t
	}
	for _, c := range f.ClientTokens {
		if t, ok := s.tunnels[c.Tunnel]; ok && (c.Mode == modeSource || c.Mode == modeDest) {
			s.clientTokens[c.ClientToken] = tokenRef{t: t, mode: c.Mode}
		}
	}
	return nil
}

// saver writes the store's state file after changes. Writers that arrive
// while a write is under way share the next one (group commit), and a
// caller returns only once a write that began after its change has ended,
// so an acknowledged API call survives a kill -9.
type saver struct {
	path  string
	snap  func() ([]byte, error)
	log   *slog.Logger
	mu    sync.Mutex
	cond  *sync.Cond
	want  uint64 // changes requested
	done  uint64 // changes covered by a finished write
	busy  bool
	limit time.Time // rate limit of the failure log
}

func newSaver(path string, snap func() ([]byte, error), log *slog.Logger) *saver {
	sv := &saver{path: path, snap: snap, log: log}
	sv.cond = sync.NewCond(&sv.mu)
	return sv
}

// save records a change and waits until it is on disk.
func (sv *saver) save() {
	if sv == nil {
		return
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.want++
	mine := sv.want
	for sv.done < mine {
		if sv.busy {
			sv.cond.Wait()
			continue
		}
		sv.busy = true
		covers := sv.want
		sv.mu.Unlock()
		err := sv.write()
		sv.mu.Lock()
		sv.busy = false
		sv.done = covers
		sv.cond.Broadcast()
		if err != nil && time.Now().After(sv.limit) {
			sv.limit = time.Now().Add(time.Minute)
			sv.log.Warn("cannot save the tunnel state; tunnels will not survive an emulator restart: check the state directory",
				"path", sv.path, "error", err)
		}
	}
}

func (sv *saver) write() error {
	b, err := sv.snap()
	if err != nil {
		return fmt.Errorf("encode tunnel state: %w", err)
	}
	return writeFileAtomic(sv.path, b)
}

// writeFileAtomic replaces path with data (mode 0600): a temporary file in
// the same directory renamed over path, so a reader sees the old or the new
// file, never a part. There is no fsync: the page cache survives the
// emulator's process (kill -9 included), and an emulator does not need to
// survive a power loss; an fsync per API call cost 10 ms on the test VM.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tunnels-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
