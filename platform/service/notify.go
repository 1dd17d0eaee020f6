package service

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SdNotify sends state (e.g. "READY=1") to the service manager over
// $NOTIFY_SOCKET. It returns false, nil when not run by systemd with
// Type=notify.
func SdNotify(state string) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	if strings.HasPrefix(path, "@") { // abstract namespace
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: connect to NOTIFY_SOCKET: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify: send %q: %w", state, err)
	}
	return true, nil
}

// Ready tells systemd the service is up (Type=notify): call it once the
// configuration is loaded and the agent runs, not when the network is up
// (a device without network must not hold up boot or a package upgrade).
func Ready(status string) (bool, error) {
	return SdNotify("READY=1\nSTATUS=" + status)
}

// Stopping tells systemd a clean shutdown has begun.
func Stopping() (bool, error) { return SdNotify("STOPPING=1") }

// Status updates the status line shown by `systemctl status`.
func Status(status string) (bool, error) { return SdNotify("STATUS=" + status) }

// WatchdogInterval is how often to send WATCHDOG=1: half of the
// WatchdogSec= systemd set in $WATCHDOG_USEC for this process, or 0 when
// the watchdog is off.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// Watchdog tells systemd the service is alive (WatchdogSec=).
func Watchdog() (bool, error) { return SdNotify("WATCHDOG=1") }

// StatusLine composes the one-line STATUS= text `systemctl status` shows
// from named parts (the MQTT connection, the tunnels, ...) and sends it
// when it changes. Each part is set on its own, from any goroutine:
//
//	st.Set("mqtt", "subscribed to $aws/things/pi-1/tunnels/notify")
//	st.Set("tunnels", "2 open")
//
// renders "mqtt: subscribed to ...; tunnels: 2 open". Parts keep the order
// of their first Set; an empty value removes a part.
type StatusLine struct {
	mu    sync.Mutex
	order []string
	parts map[string]string
	last  string
	send  func(string) (bool, error)
}

// NewStatusLine returns a StatusLine sending to systemd.
func NewStatusLine() *StatusLine { return &StatusLine{parts: map[string]string{}, send: Status} }

// Set changes one part and sends the new line if it differs.
func (s *StatusLine) Set(part, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.parts[part]; !ok && value != "" {
		s.order = append(s.order, part)
	}
	if value == "" {
		delete(s.parts, part)
		s.order = slices.DeleteFunc(s.order, func(p string) bool { return p == part })
	} else {
		s.parts[part] = value
	}
	line := s.renderLocked()
	if line == s.last {
		return
	}
	s.last = line
	_, _ = s.send(line) // best effort: STATUS= is informational
}

// String is the current line.
func (s *StatusLine) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renderLocked()
}

func (s *StatusLine) renderLocked() string {
	out := make([]string, 0, len(s.order))
	for _, p := range s.order {
		out = append(out, p+": "+s.parts[p])
	}
	// STATUS= is one line of a newline-separated datagram.
	return strings.ReplaceAll(strings.Join(out, "; "), "\n", " ")
}
