package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// tokenFiles names the files open/rotate wrote the tokens to.
type tokenFiles struct {
	Source      string `json:"sourceAccessTokenFile,omitempty"`
	Destination string `json:"destinationAccessTokenFile,omitempty"`
}

// writeTokens writes the non-empty tokens to DIR/<id>.source.token and
// DIR/<id>.destination.token with mode 0600. dir == "" writes nothing.
func writeTokens(dir, id, source, destination string) (tokenFiles, error) {
	var f tokenFiles
	if dir == "" {
		return f, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, fmt.Errorf("creating token directory: %w", err)
	}
	var err error
	if source != "" {
		f.Source = filepath.Join(dir, id+".source.token")
		err = writeSecret(f.Source, source)
	}
	if destination != "" && err == nil {
		f.Destination = filepath.Join(dir, id+".destination.token")
		err = writeSecret(f.Destination, destination)
	}
	return f, err
}

// writeSecret writes a secret file readable only by its owner, replacing any old one.
func writeSecret(path, secret string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".token-*")
	if err != nil {
		return fmt.Errorf("writing token file in %s: %w", filepath.Dir(path), err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("writing token file %s: %w", path, err)
	}
	if _, err := tmp.WriteString(secret + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("writing token file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing token file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing token file %s: %w", path, err)
	}
	return nil
}

// Sentinel errors of token loading.
var (
	errNoToken = errors.New("no access token: pass --token-file FILE or set AWSIOT_TUNNEL_ACCESS_TOKEN " +
		"(tokens are never taken as command-line values, which other users can see in ps)")
	errTokenFileMode = errors.New("token file is readable by other users: chmod 600 it")
)

// readToken loads the source token from a file (first line) or the environment.
func (a *App) readToken(file string) (string, error) {
	if file != "" {
		st, err := os.Stat(file)
		if err != nil {
			return "", fmt.Errorf("reading token file: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("%s: %w", file, errTokenFileMode)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading token file: %w", err)
		}
		tok, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		if tok = strings.TrimSpace(tok); tok == "" {
			return "", fmt.Errorf("token file %s is empty: %w", file, errNoToken)
		}
		return tok, nil
	}
	if tok := strings.TrimSpace(a.Getenv("AWSIOT_TUNNEL_ACCESS_TOKEN")); tok != "" {
		return tok, nil
	}
	return "", errNoToken
}

// loadClientToken returns the client token from file (when it exists) or from
// AWSIOT_TUNNEL_CLIENT_TOKEN; "" lets the session generate one.
func (a *App) loadClientToken(file string) (string, error) {
	if file != "" {
		if _, err := os.Stat(file); err == nil {
			return a.readToken(file)
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("reading client token file: %w", err)
		}
		return "", nil
	}
	return strings.TrimSpace(a.Getenv("AWSIOT_TUNNEL_CLIENT_TOKEN")), nil
}
