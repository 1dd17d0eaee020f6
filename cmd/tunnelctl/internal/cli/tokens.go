package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
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

// ownerOnly reports whether a secret file's mode keeps other users out. On
// Windows the mode bits say nothing about access (the ACL does; a file in the
// user's profile is private by inheritance), so the check is Unix only.
func ownerOnly(mode os.FileMode) bool {
	return runtime.GOOS == "windows" || mode.Perm()&0o077 == 0
}

// readToken loads the source token from a file (first line) or the environment.
func (a *App) readToken(file string) (string, error) {
	if file != "" {
		st, err := os.Stat(file)
		if err != nil {
			return "", fmt.Errorf("reading token file: %w", err)
		}
		if !ownerOnly(st.Mode()) {
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

// loadClientToken returns the client token saved in file for this access
// token, or AWSIOT_TUNNEL_CLIENT_TOKEN when no file is given; "" lets the
// session generate one. The file also holds a SHA-256 of the access token it
// was first used with: the service binds a client token to one access token,
// so after a rotation the saved one would be refused and a new one is made.
func (a *App) loadClientToken(file, accessToken string) (string, error) {
	if file == "" {
		return strings.TrimSpace(a.Getenv("AWSIOT_TUNNEL_CLIENT_TOKEN")), nil
	}
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("reading client token file: %w", err)
	}
	tok, err := a.readToken(file)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading client token file: %w", err)
	}
	if !strings.Contains(string(b), "\n"+accessTokenTag(accessToken)) {
		return "", nil // saved for another (rotated) access token
	}
	return tok, nil
}

// clientTokenFileContent is what --client-token-file holds: the client token,
// then the tag of the access token it is bound to.
func clientTokenFileContent(clientToken, accessToken string) string {
	return clientToken + "\n" + accessTokenTag(accessToken) + "\n"
}

func accessTokenTag(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return "access-token-sha256:" + hex.EncodeToString(sum[:])
}
