package emulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestDecodeStrict checks what the request decoder refuses or accepts where
// encoding/json alone would differ: member case, UTF-8, surrogates, depth,
// trailing data, list length.
func TestDecodeStrict(t *testing.T) {
	env := startEmulator(t, nil)
	deep := strings.Repeat(`{"x":`, maxJSONDepth) + `1` + strings.Repeat(`}`, maxJSONDepth)
	long := `{"destinationConfig":{"services":[` + strings.Repeat(`"S",`, maxListLen) + `"S"]}}`
	for _, tc := range []struct {
		name, op, body string
		want           string // error type, "" for success
		msg            string // substring of the message
	}{
		{"exact case", "DescribeTunnel", `{"TUNNELID":"abc"}`, codeValidation, "Value at 'tunnelId' failed to satisfy constraint: Member must not be null"},
		{"unknown member ignored", "ListTunnels", `{"somethingNew":{"a":[1,2,{"b":null}]},"maxResults":5}`, "", ""},
		{"differently cased nested member", "OpenTunnel", `{"destinationConfig":{"Services":["SSH"]}}`, codeValidation, "destinationConfig.services' failed to satisfy constraint: Member must not be null"},
		{"genuine U+FFFD raw", "OpenTunnel", "{\"description\":\"a \xef\xbf\xbd b\"}", "", ""},
		{"genuine U+FFFD escaped", "OpenTunnel", `{"description":"a \ufffd b"}`, "", ""},
		{"surrogate pair", "OpenTunnel", `{"description":"smile \ud83d\ude00"}`, "", ""},
		{"invalid UTF-8", "OpenTunnel", "{\"description\":\"a \xff b\"}", codeSerialization, "not valid UTF-8"},
		{"invalid UTF-8 in a key", "OpenTunnel", "{\"desc\xc3\":\"a\"}", codeSerialization, "not valid UTF-8"},
		{"lone high surrogate", "OpenTunnel", `{"description":"a \ud83d b"}`, codeSerialization, "lone UTF-16 surrogate"},
		{"lone low surrogate", "OpenTunnel", `{"description":"a \ude00 b"}`, codeSerialization, "lone UTF-16 surrogate"},
		{"high then non-low", "OpenTunnel", `{"description":"\ud83d\u0041"}`, codeSerialization, "lone UTF-16 surrogate"},
		{"escaped backslash before u", "OpenTunnel", `{"description":"a\\ud83d"}`, "", ""},
		{"control character", "OpenTunnel", `{"description":"a\u0007"}`, codeValidation, `[^\p{C}]{1,2048}`},
		{"deep", "ListTunnels", `{"x":` + deep + `}`, codeSerialization, "deeper than 32"},
		{"deep list", "ListTunnels", `{"x":` + strings.Repeat("[", 100000) + `}`, codeSerialization, "deeper than 32"},
		{"trailing data", "ListTunnels", `{} {}`, codeSerialization, "data after"},
		{"not an object", "ListTunnels", `[1]`, codeSerialization, "must be a JSON object"},
		{"wrong type", "ListTunnels", `{"maxResults":"5"}`, codeSerialization, "member 'maxResults' has the wrong type: expected an integer"},
		{"fraction", "ListTunnels", `{"maxResults":5.5}`, codeSerialization, "expected an integer"},
		{"null member", "ListTunnels", `{"maxResults":null}`, "", ""},
		{"truncated", "ListTunnels", `{"maxResults":`, codeSerialization, "not valid JSON"},
		{"list too long", "OpenTunnel", long, codeValidation, "less than or equal to 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := env.call(t, tc.op, tc.body)
			if tc.want == "" {
				if res.status != http.StatusOK {
					t.Fatalf("got %d %v, want success", res.status, res.body)
				}
				return
			}
			if res.errType() != tc.want || !strings.Contains(res.str("message"), tc.msg) {
				t.Fatalf("got %s %q, want %s containing %q", res.errType(), res.str("message"), tc.want, tc.msg)
			}
		})
	}
}

// TestDecodeDescriptionFFFD checks that a genuine U+FFFD reaches the tunnel
// unchanged.
func TestDecodeDescriptionFFFD(t *testing.T) {
	env := startEmulator(t, nil)
	o := env.open(t, `{"description":"bad byte \ufffd here"}`)
	d := env.mustCall(t, "DescribeTunnel", `{"tunnelId":"`+o.id+`"}`)
	tun := d.body["tunnel"].(map[string]any)
	if tun["description"] != "bad byte \ufffd here" {
		t.Fatalf("description %q", tun["description"])
	}
}

// TestValidationReportBounded sends the amplification request of issue 15:
// one list of identical invalid services. The answer counts every violation
// and spells out the first maxShownViolations.
func TestValidationReportBounded(t *testing.T) {
	env := startEmulator(t, nil)
	body := `{"destinationConfig":{"services":[` + strings.Repeat(`"a b",`, maxListLen-1) + `"a b"]}}`
	res := env.call(t, "OpenTunnel", body)
	msg := res.str("message")
	// 1000 pattern violations and 999 duplicates.
	if res.errType() != codeValidation || !strings.HasPrefix(msg, "1999 validation errors detected: ") ||
		!strings.HasSuffix(msg, "; and 1989 more") || strings.Count(msg, "failed to satisfy constraint") != maxShownViolations {
		t.Fatalf("got %s %q", res.errType(), msg)
	}
	raw, _ := json.Marshal(res.body)
	if len(raw) > 4<<10 {
		t.Fatalf("answer is %d bytes", len(raw))
	}
}
