package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func tags(n int) []map[string]string {
	out := make([]map[string]string, n)
	for i := range out {
		out[i] = map[string]string{"key": fmt.Sprintf("k%d", i), "value": "v"}
	}
	return out
}

func svcs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("S%d", i)
	}
	return out
}

// TestOpenTunnelValidation covers every pattern and bound of the OpenTunnel
// model (seed-OpenTunnel-API.txt, protocol.md §7.2): each bound, one past it.
func TestOpenTunnelValidation(t *testing.T) {
	env := startEmulator(t, nil)
	s := strings.Repeat
	dc := func(thing any, services any) string {
		m := map[string]any{}
		if thing != nil {
			m["thingName"] = thing
		}
		if services != nil {
			m["services"] = services
		}
		return js(map[string]any{"destinationConfig": m})
	}
	tag := func(k, v any) string {
		m := map[string]any{}
		if k != nil {
			m["key"] = k
		}
		if v != nil {
			m["value"] = v
		}
		return js(map[string]any{"tags": []any{m}})
	}
	tests := []struct {
		name, body, wantType, wantField string
	}{
		{"empty request", `{}`, "", ""},
		{"empty body", ``, "", ""},
		{"description 1", js(map[string]any{"description": "x"}), "", ""},
		{"description 2048", js(map[string]any{"description": s("é", 2048)}), "", ""},
		{"description 2049", js(map[string]any{"description": s("a", 2049)}), codeValidation, "description"},
		{"description empty", `{"description":""}`, codeValidation, "description"},
		{"description control char", `{"description":"a\u0001b"}`, codeValidation, "description"},
		{"description newline", `{"description":"a\nb"}`, codeValidation, "description"},
		{"description format char", `{"description":"a\u200bb"}`, codeValidation, "description"},
		{"description unicode and spaces", `{"description":"Wörter & 数字 1-2 / ok"}`, "", ""},
		{"description wrong type", `{"description":5}`, codeSerialization, "description"},
		{"tags 1", js(map[string]any{"tags": tags(1)}), "", ""},
		{"tags 200", js(map[string]any{"tags": tags(200)}), "", ""},
		{"tags 201", js(map[string]any{"tags": tags(201)}), codeValidation, "tags"},
		{"tags 0", `{"tags":[]}`, codeValidation, "tags"},
		{"tag key 128", tag(s("k", 128), "v"), "", ""},
		{"tag key 129", tag(s("k", 129), "v"), codeValidation, "tags.1.member.key"},
		{"tag key empty", tag("", "v"), codeValidation, "tags.1.member.key"},
		{"tag key missing", tag(nil, "v"), codeValidation, "tags.1.member.key"},
		{"tag key pattern chars", tag("a b_.:/=+-@ÄÖ9", "v"), "", ""},
		{"tag key bad char", tag("a#b", "v"), codeValidation, "tags.1.member.key"},
		{"tag value empty", tag("k", ""), "", ""},
		{"tag value 256", tag("k", s("v", 256)), "", ""},
		{"tag value 257", tag("k", s("v", 257)), codeValidation, "tags.1.member.value"},
		{"tag value missing", tag("k", nil), codeValidation, "tags.1.member.value"},
		{"tag value bad char", tag("k", "a!"), codeValidation, "tags.1.member.value"},
		{"services 1", dc(nil, svcs(1)), "", ""},
		{"services 3", dc("pi-1", svcs(3)), "", ""},
		{"services 4 (quota)", dc("pi-1", svcs(4)), codeLimitExceeded, "destinationConfig.services"},
		{"services empty", dc("pi-1", []string{}), codeValidation, "destinationConfig.services"},
		{"services missing", dc("pi-1", nil), codeValidation, "destinationConfig.services"},
		{"service 128", dc(nil, []string{s("s", 128)}), "", ""},
		{"service 129", dc(nil, []string{s("s", 129)}), codeValidation, "destinationConfig.services.1.member"},
		{"service empty", dc(nil, []string{""}), codeValidation, "destinationConfig.services.1.member"},
		{"service pattern chars", dc(nil, []string{"a:B_c-9"}), "", ""},
		{"service bad char", dc(nil, []string{"SSH", "s s"}), codeValidation, "destinationConfig.services.2.member"},
		{"service duplicate", dc(nil, []string{"SSH", "SSH"}), codeValidation, "destinationConfig.services.2.member"},
		{"thing 128", dc(s("t", 128), svcs(1)), "", ""},
		{"thing 129", dc(s("t", 129), svcs(1)), codeValidation, "destinationConfig.thingName"},
		{"thing empty", dc("", svcs(1)), codeValidation, "destinationConfig.thingName"},
		{"thing bad char", dc("pi/1", svcs(1)), codeValidation, "destinationConfig.thingName"},
		{"lifetime 1", `{"timeoutConfig":{"maxLifetimeTimeoutMinutes":1}}`, "", ""},
		{"lifetime 720", `{"timeoutConfig":{"maxLifetimeTimeoutMinutes":720}}`, "", ""},
		{"lifetime 0", `{"timeoutConfig":{"maxLifetimeTimeoutMinutes":0}}`, codeValidation, "timeoutConfig.maxLifetimeTimeoutMinutes"},
		{"lifetime 721", `{"timeoutConfig":{"maxLifetimeTimeoutMinutes":721}}`, codeValidation, "timeoutConfig.maxLifetimeTimeoutMinutes"},
		{"lifetime fraction", `{"timeoutConfig":{"maxLifetimeTimeoutMinutes":1.5}}`, codeSerialization, "maxLifetimeTimeoutMinutes"},
		{"timeoutConfig empty", `{"timeoutConfig":{}}`, "", ""},
		{"not json", `{"description":`, codeSerialization, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := env.call(t, "OpenTunnel", tt.body)
			checkResult(t, res, tt.wantType, tt.wantField)
		})
	}
}

func checkResult(t *testing.T, res apiResult, wantType, wantField string) {
	t.Helper()
	if wantType == "" {
		if res.status != http.StatusOK {
			t.Fatalf("status %d %v, want 200", res.status, res.body)
		}
		return
	}
	if res.status != http.StatusBadRequest || res.errType() != wantType {
		t.Fatalf("got %d %v, want 400 %s", res.status, res.body, wantType)
	}
	if !strings.Contains(res.str("message"), wantField) {
		t.Errorf("message %q does not name %q", res.str("message"), wantField)
	}
}

// TestOperationValidation covers the bounds of the other seven operations.
func TestOperationValidation(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{"destinationConfig":{"thingName":"pi-1","services":["SSH"]}}`)
	s := strings.Repeat
	id128 := s("a", 128)
	tests := []struct {
		op, body, wantType, wantField string
	}{
		{"DescribeTunnel", `{}`, codeValidation, "tunnelId"},
		{"DescribeTunnel", `{"tunnelId":""}`, codeValidation, "tunnelId"},
		{"DescribeTunnel", js(map[string]string{"tunnelId": id128}), codeNotFound, id128},
		{"DescribeTunnel", js(map[string]string{"tunnelId": id128 + "a"}), codeValidation, "tunnelId"},
		{"DescribeTunnel", `{"tunnelId":"a_b-c+d=e:f"}`, codeNotFound, "a_b-c+d=e:f"},
		{"DescribeTunnel", `{"tunnelId":"a/b"}`, codeValidation, "tunnelId"},
		{"DescribeTunnel", js(map[string]string{"tunnelId": tun.id}), "", ""},
		{"CloseTunnel", `{}`, codeValidation, "tunnelId"},
		{"CloseTunnel", `{"tunnelId":"nope"}`, codeNotFound, "nope"},
		{"CloseTunnel", `{"tunnelId":"x","delete":"yes"}`, codeSerialization, "delete"},
		{"ListTunnels", `{"maxResults":0}`, codeValidation, "maxResults"},
		{"ListTunnels", `{"maxResults":1}`, "", ""},
		{"ListTunnels", `{"maxResults":100}`, "", ""},
		{"ListTunnels", `{"maxResults":101}`, codeValidation, "maxResults"},
		{"ListTunnels", `{"thingName":""}`, codeValidation, "thingName"},
		{"ListTunnels", js(map[string]string{"thingName": s("t", 129)}), codeValidation, "thingName"},
		{"ListTunnels", `{"thingName":"pi 1"}`, codeValidation, "thingName"},
		{"ListTunnels", `{"nextToken":""}`, codeValidation, "nextToken"},
		{"ListTunnels", `{"nextToken":"a!"}`, codeValidation, "nextToken"},
		{"ListTunnels", js(map[string]string{"nextToken": s("a", 4097)}), codeValidation, "nextToken"},
		{"ListTunnels", js(map[string]string{"nextToken": s("a", 4096)}), codeValidation, "nextToken"},
		{"RotateTunnelAccessToken", js(map[string]string{"tunnelId": tun.id}), codeValidation, "clientMode"},
		{"RotateTunnelAccessToken", js(map[string]string{"tunnelId": tun.id, "clientMode": "BOTH"}), codeValidation, "clientMode"},
		{"RotateTunnelAccessToken", `{"clientMode":"ALL"}`, codeValidation, "tunnelId"},
		{"RotateTunnelAccessToken", `{"tunnelId":"nope","clientMode":"ALL"}`, codeNotFound, "nope"},
		{"RotateTunnelAccessToken", js(map[string]any{"tunnelId": tun.id, "clientMode": "SOURCE",
			"destinationConfig": map[string]any{"services": []string{"SSH"}}}), codeValidation, "destinationConfig"},
		{"RotateTunnelAccessToken", js(map[string]any{"tunnelId": tun.id, "clientMode": "DESTINATION",
			"destinationConfig": map[string]any{"thingName": "pi-1"}}), codeValidation, "destinationConfig.services"},
		{"RotateTunnelAccessToken", js(map[string]any{"tunnelId": tun.id, "clientMode": "ALL",
			"destinationConfig": map[string]any{"services": svcs(4)}}), codeLimitExceeded, "destinationConfig.services"},
		{"TagResource", `{"tags":[{"key":"a","value":"b"}]}`, codeValidation, "resourceArn"},
		{"TagResource", `{"resourceArn":"","tags":[{"key":"a","value":"b"}]}`, codeValidation, "resourceArn"},
		{"TagResource", js(map[string]any{"resourceArn": s("a", 1011), "tags": tags(1)}), codeNotFound, "aaaa"},
		{"TagResource", js(map[string]any{"resourceArn": s("a", 1012), "tags": tags(1)}), codeValidation, "resourceArn"},
		{"TagResource", js(map[string]any{"resourceArn": tun.arn}), codeValidation, "tags"},
		{"TagResource", js(map[string]any{"resourceArn": tun.arn, "tags": tags(201)}), codeValidation, "tags"},
		{"TagResource", js(map[string]any{"resourceArn": tun.arn, "tags": tags(200)}), "", ""},
		{"UntagResource", js(map[string]any{"resourceArn": tun.arn}), codeValidation, "tagKeys"},
		{"UntagResource", js(map[string]any{"resourceArn": tun.arn, "tagKeys": []string{}}), "", ""},
		{"UntagResource", js(map[string]any{"resourceArn": tun.arn, "tagKeys": make([]string, 201)}), codeValidation, "tagKeys"},
		{"UntagResource", js(map[string]any{"resourceArn": tun.arn, "tagKeys": []string{""}}), codeValidation, "tagKeys.1.member"},
		{"UntagResource", js(map[string]any{"resourceArn": tun.arn, "tagKeys": []string{s("k", 129)}}), codeValidation, "tagKeys.1.member"},
		{"ListTagsForResource", `{}`, codeValidation, "resourceArn"},
		{"ListTagsForResource", `{"resourceArn":"arn:aws:tunnel:us-east-1:123456789012:tunnel/x"}`, codeNotFound, "tunnel/x"},
		{"ListTagsForResource", js(map[string]any{"resourceArn": tun.arn}), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.op+" "+truncate(tt.body, 60), func(t *testing.T) {
			checkResult(t, env.call(t, tt.op, tt.body), tt.wantType, tt.wantField)
		})
	}
}

// TestEnvelopeErrors checks the answers to requests that are not awsJson1.1.
func TestEnvelopeErrors(t *testing.T) {
	env := startEmulator(t, nil)
	tests := []struct {
		name, method, path, target, ctype string
		wantStatus                        int
		wantType                          string
	}{
		{"GET", http.MethodGet, "/", "IoTSecuredTunneling.ListTunnels", jsonContentType, 404, codeUnknownOp},
		{"other path", http.MethodPost, "/tunnels", "IoTSecuredTunneling.ListTunnels", jsonContentType, 404, codeUnknownOp},
		{"no target", http.MethodPost, "/", "", jsonContentType, 400, codeUnknownOp},
		{"other service", http.MethodPost, "/", "DynamoDB_20120810.ListTables", jsonContentType, 400, codeUnknownOp},
		{"unknown op", http.MethodPost, "/", "IoTSecuredTunneling.DeleteTunnel", jsonContentType, 400, codeUnknownOp},
		{"json 1.0", http.MethodPost, "/", "IoTSecuredTunneling.ListTunnels", "application/x-amz-json-1.0", 400, codeUnknownOp},
		{"no content type", http.MethodPost, "/", "IoTSecuredTunneling.ListTunnels", "", 400, codeUnknownOp},
		{"charset param ok", http.MethodPost, "/", "IoTSecuredTunneling.ListTunnels", jsonContentType + "; charset=utf-8", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader("{}"))
			req.Header.Set("X-Amz-Target", tt.target)
			req.Header.Set("Content-Type", tt.ctype)
			res := env.do(t, req)
			if res.status != tt.wantStatus || res.errType() != tt.wantType {
				t.Fatalf("got %d %v, want %d %s", res.status, res.body, tt.wantStatus, tt.wantType)
			}
		})
	}
}

var (
	uuidRe  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tokenRe = regexp.MustCompile(`^AQGAA[A-Za-z0-9_-]{128}$`)
)

func TestOpenDescribeClose(t *testing.T) {
	env := startEmulator(t, nil)
	created := env.clock.Now()
	tun := env.open(t, `{"description":"demo","destinationConfig":{"thingName":"pi-1","services":["SSH","VNC"]},"tags":[{"key":"team","value":"a"}]}`)
	if !uuidRe.MatchString(tun.id) || tun.arn != "arn:aws:tunnel:us-east-1:123456789012:tunnel/"+tun.id {
		t.Fatalf("id %q arn %q", tun.id, tun.arn)
	}
	if !tokenRe.MatchString(tun.src) || !tokenRe.MatchString(tun.dst) || tun.src == tun.dst {
		t.Fatalf("tokens not shaped like AWS tokens")
	}
	env.clock.Advance(90 * time.Second)
	d := env.mustCall(t, "DescribeTunnel", js(map[string]string{"tunnelId": tun.id})).body["tunnel"].(map[string]any)
	want := map[string]any{
		"tunnelId": tun.id, "tunnelArn": tun.arn, "status": "OPEN", "description": "demo",
		"destinationConfig":          map[string]any{"thingName": "pi-1", "services": []any{"SSH", "VNC"}},
		"timeoutConfig":              map[string]any{"maxLifetimeTimeoutMinutes": float64(720)},
		"tags":                       []any{map[string]any{"key": "team", "value": "a"}},
		"createdAt":                  float64(created.Unix()),
		"lastUpdatedAt":              float64(created.Unix()),
		"sourceConnectionState":      map[string]any{"status": "DISCONNECTED", "lastUpdatedAt": float64(created.Unix())},
		"destinationConnectionState": map[string]any{"status": "DISCONNECTED", "lastUpdatedAt": float64(created.Unix())},
	}
	if js(d) != js(want) {
		t.Fatalf("DescribeTunnel\n got %s\nwant %s", js(d), js(want))
	}
	env.mustCall(t, "CloseTunnel", js(map[string]string{"tunnelId": tun.id}))
	d = env.mustCall(t, "DescribeTunnel", js(map[string]string{"tunnelId": tun.id})).body["tunnel"].(map[string]any)
	if d["status"] != "CLOSED" || d["lastUpdatedAt"] != float64(created.Add(90*time.Second).Unix()) {
		t.Fatalf("after close: %v", d)
	}
	env.mustCall(t, "CloseTunnel", js(map[string]string{"tunnelId": tun.id})) // idempotent
	if res := env.call(t, "RotateTunnelAccessToken", js(map[string]string{"tunnelId": tun.id, "clientMode": "ALL"})); res.errType() != codeNotFound {
		t.Fatalf("rotate closed tunnel: %v", res.body)
	}
	env.mustCall(t, "CloseTunnel", js(map[string]any{"tunnelId": tun.id, "delete": true}))
	if res := env.call(t, "DescribeTunnel", js(map[string]string{"tunnelId": tun.id})); res.errType() != codeNotFound {
		t.Fatalf("describe deleted tunnel: %v", res.body)
	}
}
