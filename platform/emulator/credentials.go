package emulator

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// LoadCredentials reads access key ids and secrets from a file in the AWS
// shared credentials format (~/.aws/credentials): profiles in [brackets]
// with aws_access_key_id and aws_secret_access_key. Other keys are ignored.
// Errors name the line and never quote a secret.
func LoadCredentials(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read credentials file: %w", err)
	}
	out := map[string]string{}
	var id, secret, profile string
	flush := func() error {
		switch {
		case id == "" && secret == "":
		case id == "" || secret == "":
			return fmt.Errorf("credentials file %s: profile [%s] needs both aws_access_key_id and aws_secret_access_key: %w",
				path, profile, ErrInvalidArgument)
		default:
			out[id] = secret
		}
		id, secret = "", ""
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			if err := flush(); err != nil {
				return nil, err
			}
			profile = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("credentials file %s line %d: expected key = value: %w", path, n, ErrInvalidArgument)
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("credentials file %s has no aws_access_key_id/aws_secret_access_key pair: %w", path, ErrInvalidArgument)
	}
	return out, nil
}

// SignRequest signs an API request whose body is body with SigV4, using the
// AWS SDK for Go v2's signer exactly as the SDK's clients do (signing name
// SigningName). It is for tests and tools that call the API with plain
// net/http.
func SignRequest(req *http.Request, body []byte, accessKey, secret, region string, at time.Time) error {
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), SigningName, region, at); err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	return nil
}

// Test keys CallAPI signs with. The emulator's default mode checks the form,
// scope and date of a signature, not the key (see doc.go).
const (
	callAPIAccessKey = "AKIDEMULATORTEST"
	callAPISecretKey = "emulator-test-secret"
)

// CallAPI calls operation op of the control plane at apiURL with the JSON of
// in, signed for region by SignRequest with test keys, and decodes the answer
// into out (when not nil). A status other than 200 is an error with the
// answer's body. It is for tests and tools that drive an emulator.
func CallAPI(ctx context.Context, client *http.Client, apiURL, region, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", jsonContentType)
	req.Header.Set("X-Amz-Target", targetPrefix+op)
	if err := SignRequest(req, body, callAPIAccessKey, callAPISecretKey, region, time.Now()); err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: read response: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", op, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: decode response: %w", op, err)
	}
	return nil
}
