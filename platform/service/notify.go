package service

import (
	"fmt"
	"net"
	"os"
	"strings"
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
// agent is subscribed to its notify topic.
func Ready(status string) (bool, error) {
	return SdNotify("READY=1\nSTATUS=" + status)
}

// Stopping tells systemd a clean shutdown has begun.
func Stopping() (bool, error) { return SdNotify("STOPPING=1") }
