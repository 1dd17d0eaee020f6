package emulator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzParseRequest feeds arbitrary awsJson1.1 envelopes and bodies to the API
// decoder and validator: they must never panic, and every failure must be an
// awsJson error with a type and a message.
func FuzzParseRequest(f *testing.F) {
	f.Add("IoTSecuredTunneling.OpenTunnel", jsonContentType, []byte(`{"description":"d","destinationConfig":{"thingName":"pi-1","services":["SSH"]},"tags":[{"key":"k","value":"v"}],"timeoutConfig":{"maxLifetimeTimeoutMinutes":30}}`))
	f.Add("IoTSecuredTunneling.ListTunnels", jsonContentType, []byte(`{"thingName":"pi-1","maxResults":2,"nextToken":"MTI="}`))
	f.Add("IoTSecuredTunneling.RotateTunnelAccessToken", jsonContentType, []byte(`{"tunnelId":"x","clientMode":"ALL","destinationConfig":{"services":[]}}`))
	f.Add("IoTSecuredTunneling.UntagResource", jsonContentType, []byte(`{"resourceArn":"a","tagKeys":[""]}`))
	f.Add("IoTSecuredTunneling.CloseTunnel", "text/plain", []byte(`{"tunnelId":1}`))
	f.Add("Other.Op", "", []byte(`[`))
	f.Fuzz(func(t *testing.T, target, ctype string, body []byte) {
		req, err := parseRequest(target, ctype, body)
		if err == nil {
			if req == nil {
				t.Fatal("nil request without error")
			}
			return
		}
		ae, ok := err.(*apiError)
		if !ok || ae.Type == "" || ae.Message == "" || ae.Status < 400 {
			t.Fatalf("error %#v is not a complete awsJson error", err)
		}
	})
}

// FuzzParseHandshake feeds arbitrary HTTP requests to the data-plane
// handshake parser: no panics, and refusals are 4xx with a message.
func FuzzParseHandshake(f *testing.F) {
	f.Add([]byte("GET /tunnel?local-proxy-mode=source HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: aws.iot.securetunneling-3.0\r\naccess-token: AQGAAtoken\r\nclient-token: 0123456789abcdef0123456789abcdef\r\n\r\n"))
	f.Add([]byte("GET /tunnel?local-proxy-mode=destination HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: aws.iot.securetunneling-1.0, aws.iot.securetunneling-2.0\r\nCookie: awsiot-tunnel-token=abc; awsiot-tunnel-token=def\r\n\r\n"))
	f.Add([]byte("GET /other HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		hs, herr := parseHandshake(r)
		if herr != nil {
			if herr.status < 400 || herr.status > 499 || herr.msg == "" {
				t.Fatalf("refusal %d %q", herr.status, herr.msg)
			}
			return
		}
		if hs.token == "" || hs.subprotocol == "" || (hs.clientToken != "" && !clientTokenRe.MatchString(hs.clientToken)) {
			t.Fatalf("accepted an incomplete handshake: mode %d sub %q", hs.mode, hs.subprotocol)
		}
	})
}

// fuzzAPI fuzzes one operation's body through the whole HTTP handler
// (signature verified, body read, decoded, validated, executed): the answer
// is always an awsJson response, never a 5xx, never over 64 KiB.
func fuzzAPI(f *testing.F, op string, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	env := startEmulator(f, func(c *Config) {
		c.Credentials = map[string]string{testAccessKey: testSecretKey}
		c.MaxOpenTunnels = 20
	})
	env.e.store.sv = nil // memory only: no state file write per input
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("X-Amz-Target", targetPrefix+op)
		req.Header.Set("Content-Type", jsonContentType)
		env.sign(t, req)
		rec := httptest.NewRecorder()
		env.e.serveAPI(rec, req)
		if rec.Code >= 500 || rec.Body.Len() > 64<<10 {
			t.Fatalf("%s: status %d, %d bytes: %.300s", op, rec.Code, rec.Body.Len(), rec.Body.String())
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s: answer is not JSON: %.300q", op, rec.Body.String())
		}
		if rec.Code != http.StatusOK {
			typ, _ := out["__type"].(string)
			msg, _ := out["message"].(string)
			if typ == "" || msg == "" || rec.Header().Get("X-Amzn-ErrorType") != typ || (rec.Code != 400 && rec.Code != 413) {
				t.Fatalf("%s: incomplete error %d %v", op, rec.Code, out)
			}
		}
	})
}

func FuzzAPIOpenTunnel(f *testing.F) {
	fuzzAPI(f, "OpenTunnel", `{}`, `{"description":"d \ufffd","destinationConfig":{"thingName":"pi-1","services":["SSH","HTTP"]},"tags":[{"key":"k","value":"v"}],"timeoutConfig":{"maxLifetimeTimeoutMinutes":30}}`,
		`{"destinationConfig":{"services":["a b","a b"]}}`, `{"DESCRIPTION":"x","tags":[]}`)
}

func FuzzAPICloseTunnel(f *testing.F) {
	fuzzAPI(f, "CloseTunnel", `{"tunnelId":"00000000-0000-4000-8000-000000000000","delete":true}`, `{"tunnelId":""}`)
}

func FuzzAPIDescribeTunnel(f *testing.F) {
	fuzzAPI(f, "DescribeTunnel", `{"tunnelId":"abc"}`, `{"tunnelId":"\ud800"}`)
}

func FuzzAPIListTunnels(f *testing.F) {
	fuzzAPI(f, "ListTunnels", `{"thingName":"pi-1","maxResults":2,"nextToken":"MTI="}`, `{"maxResults":0}`, `{"nextToken":"!!"}`)
}

func FuzzAPIRotateTunnelAccessToken(f *testing.F) {
	fuzzAPI(f, "RotateTunnelAccessToken", `{"tunnelId":"x","clientMode":"ALL","destinationConfig":{"thingName":"t","services":["SSH"]}}`,
		`{"tunnelId":"x","clientMode":"SOURCE","destinationConfig":{"services":[]}}`)
}

func FuzzAPITagResource(f *testing.F) {
	fuzzAPI(f, "TagResource", `{"resourceArn":"arn:aws:tunnel:us-east-1:123456789012:tunnel/x","tags":[{"key":"k","value":"v"}]}`, `{"tags":[{}]}`)
}

func FuzzAPIUntagResource(f *testing.F) {
	fuzzAPI(f, "UntagResource", `{"resourceArn":"a","tagKeys":["k",""]}`)
}

func FuzzAPIListTagsForResource(f *testing.F) {
	fuzzAPI(f, "ListTagsForResource", `{"resourceArn":"arn:aws:tunnel:us-east-1:123456789012:tunnel/x"}`)
}
