package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
)

// logSwitch is the process's log output. A configuration reload changes its
// level and format in place, so loggers handed out earlier (with their
// attributes) follow. Under systemd (JOURNAL_STREAM names our output) each
// line starts with a <N> syslog priority and carries no timestamp of its
// own, so `journalctl -p warning` works.
type logSwitch struct {
	level   slog.LevelVar
	base    atomic.Pointer[slog.Handler]
	w       io.Writer
	journal *journalWriter // nil outside journald
}

func newLogSwitch(cfg config.Config, w io.Writer) (*logSwitch, error) {
	ls := &logSwitch{w: w}
	if f, ok := w.(*os.File); ok && isJournalStream(f) {
		ls.journal = &journalWriter{w: w}
	}
	return ls, ls.apply(cfg)
}

// apply sets the level and format of every logger of this switch.
func (ls *logSwitch) apply(cfg config.Config) error {
	level, err := config.ParseLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	ls.level.Set(level)
	opts := &slog.HandlerOptions{Level: &ls.level}
	var out io.Writer = ls.w
	if ls.journal != nil {
		out = ls.journal
		opts.ReplaceAttr = dropTime // journald stamps each line itself
	}
	var h slog.Handler = slog.NewTextHandler(out, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(out, opts)
	}
	ls.base.Store(&h)
	return nil
}

func (ls *logSwitch) logger() *slog.Logger { return slog.New(&switchHandler{ls: ls}) }

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// switchHandler replays its WithAttrs/WithGroup calls on the current base
// handler (logging is not a hot path here).
type switchHandler struct {
	ls  *logSwitch
	ops []func(slog.Handler) slog.Handler
}

func (h *switchHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.ls.level.Level() }

func (h *switchHandler) Handle(ctx context.Context, r slog.Record) error {
	base := *h.ls.base.Load()
	for _, op := range h.ops {
		base = op(base)
	}
	if j := h.ls.journal; j != nil {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.prefix = priority(r.Level)
	}
	return base.Handle(ctx, r)
}

func (h *switchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.with(func(b slog.Handler) slog.Handler { return b.WithAttrs(as) })
}

func (h *switchHandler) WithGroup(name string) slog.Handler {
	return h.with(func(b slog.Handler) slog.Handler { return b.WithGroup(name) })
}

func (h *switchHandler) with(op func(slog.Handler) slog.Handler) slog.Handler {
	ops := append(append(make([]func(slog.Handler) slog.Handler, 0, len(h.ops)+1), h.ops...), op)
	return &switchHandler{ls: h.ls, ops: ops}
}

// journalWriter prefixes each record (one Write per record) with its
// syslog priority, set by switchHandler under mu.
type journalWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (j *journalWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(j.w, j.prefix+string(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// priority maps a level to sd-daemon(3)'s prefix: <3> err, <4> warning,
// <6> info, <7> debug.
func priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}

// isJournalStream reports whether f is the stream systemd connected to
// journald: JOURNAL_STREAM holds its "device:inode".
func isJournalStream(f *os.File) bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return dev == strconv.FormatUint(uint64(st.Dev), 10) && ino == strconv.FormatUint(uint64(st.Ino), 10)
}
