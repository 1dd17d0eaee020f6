package emulator

import (
	"bufio"
	"bytes"
	"net/http"
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
