package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
)

// deviceLogID is the id tunnel-agent logs for a tunnel (tunnel=... in the
// device's journal and audit events): a hash of the destination token,
// which the device learns without the tunnel id. "" without a token.
func deviceLogID(destinationToken string) string {
	if t := strings.TrimSpace(destinationToken); t != "" {
		return audit.TunnelID(t)
	}
	return ""
}

// deviceLogIDFromDir computes the id from DIR/<id>.destination.token, the
// file open and rotate write with --token-file-dir. "" when there is none.
func deviceLogIDFromDir(dir, tunnelID string) (string, error) {
	if dir == "" {
		return "", nil
	}
	b, err := os.ReadFile(filepath.Join(dir, tunnelID+".destination.token"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the destination token file: %w", err)
	}
	return deviceLogID(string(b)), nil
}

func deviceLogLine(id string) string {
	return fmt.Sprintf("Device log id:\t%s (tunnel=%s in the device's tunnel-agent log and audit events)\n", id, id)
}
