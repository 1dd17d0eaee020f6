package emulator

import (
	"fmt"
	"testing"
	"time"
)

func TestListTunnelsPaging(t *testing.T) {
	env := startEmulator(t, nil)
	var ids []string
	for i := range 7 {
		thing := "pi-a"
		if i%2 == 1 {
			thing = "pi-b"
		}
		ids = append(ids, env.open(t, fmt.Sprintf(`{"destinationConfig":{"thingName":%q,"services":["SSH"]}}`, thing)).id)
		env.clock.Advance(time.Second)
	}
	tests := []struct {
		name      string
		req       string
		wantPages [][]int // indexes into ids
	}{
		{"default page", `{}`, [][]int{{6, 5, 4, 3, 2, 1, 0}}},
		{"pages of 3", `{"maxResults":3}`, [][]int{{6, 5, 4}, {3, 2, 1}, {0}}},
		{"exact pages", `{"maxResults":7}`, [][]int{{6, 5, 4, 3, 2, 1, 0}}},
		{"thing filter", `{"thingName":"pi-b","maxResults":2}`, [][]int{{5, 3}, {1}}},
		{"unknown thing", `{"thingName":"nobody"}`, [][]int{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var token string
			for i, want := range tt.wantPages {
				req := tt.req
				if token != "" {
					req = req[:len(req)-1]
					if len(req) > 1 {
						req += ","
					}
					req += fmt.Sprintf(`"nextToken":%q}`, token)
				}
				res := env.mustCall(t, "ListTunnels", req)
				sums := res.body["tunnelSummaries"].([]any)
				if len(sums) != len(want) {
					t.Fatalf("page %d: %d summaries, want %d", i, len(sums), len(want))
				}
				for j, w := range want {
					s := sums[j].(map[string]any)
					if s["tunnelId"] != ids[w] || s["status"] != "OPEN" || s["tunnelArn"] == "" || s["createdAt"] == nil {
						t.Fatalf("page %d item %d = %v, want tunnel %d", i, j, s, w)
					}
				}
				token = res.str("nextToken")
				if (token == "") != (i == len(tt.wantPages)-1) {
					t.Fatalf("page %d: nextToken %q", i, token)
				}
				if token != "" && !nextTokenRe.MatchString(token) {
					t.Fatalf("nextToken %q does not match the model pattern", token)
				}
			}
		})
	}
}

func TestRotateTunnelAccessToken(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{"destinationConfig":{"thingName":"pi-1","services":["SSH"]}}`)
	tests := []struct {
		mode             string
		wantSrc, wantDst bool
	}{
		{"SOURCE", true, false},
		{"DESTINATION", false, true},
		{"ALL", true, true},
	}
	prevSrc, prevDst := tun.src, tun.dst
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			res := env.mustCall(t, "RotateTunnelAccessToken", js(map[string]string{"tunnelId": tun.id, "clientMode": tt.mode}))
			src, dst := res.str("sourceAccessToken"), res.str("destinationAccessToken")
			if res.str("tunnelArn") != tun.arn || (src != "") != tt.wantSrc || (dst != "") != tt.wantDst {
				t.Fatalf("response %v", res.body)
			}
			if _, _, herr := env.e.store.admit(prevSrc, "", modeSource); tt.wantSrc && (herr == nil || refusalOf(herr).msg != msgTokenUnknown) {
				t.Fatalf("old source token still valid after rotation: %v", herr)
			}
			if tt.wantSrc {
				prevSrc = src
			}
			if tt.wantDst {
				prevDst = dst
			}
		})
	}
	if _, _, herr := env.e.store.admit(prevDst, "", modeDest); herr != nil {
		t.Fatalf("rotated destination token refused: %v", herr)
	}
}

func TestTags(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{"tags":[{"key":"a","value":"1"}]}`)
	arn := js(tun.arn)
	env.mustCall(t, "TagResource", `{"resourceArn":`+arn+`,"tags":[{"key":"b","value":"2"},{"key":"a","value":"3"}]}`)
	got := env.mustCall(t, "ListTagsForResource", `{"resourceArn":`+arn+`}`).body["tags"]
	if js(got) != `[{"key":"a","value":"3"},{"key":"b","value":"2"}]` {
		t.Fatalf("tags after TagResource: %s", js(got))
	}
	env.mustCall(t, "UntagResource", `{"resourceArn":`+arn+`,"tagKeys":["a","zzz"]}`)
	got = env.mustCall(t, "ListTagsForResource", `{"resourceArn":`+arn+`}`).body["tags"]
	if js(got) != `[{"key":"b","value":"2"}]` {
		t.Fatalf("tags after UntagResource: %s", js(got))
	}
	env.mustCall(t, "UntagResource", `{"resourceArn":`+arn+`,"tagKeys":["b"]}`)
	if got := env.mustCall(t, "ListTagsForResource", `{"resourceArn":`+arn+`}`).body["tags"]; js(got) != `[]` {
		t.Fatalf("tags after removing all: %s", js(got))
	}
}

func TestOpenTunnelLimit(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.MaxOpenTunnels = 2 })
	a := env.open(t, `{}`)
	env.open(t, `{}`)
	res := env.call(t, "OpenTunnel", `{}`)
	if res.status != 400 || res.errType() != codeLimitExceeded {
		t.Fatalf("third tunnel: %d %v", res.status, res.body)
	}
	env.mustCall(t, "CloseTunnel", js(map[string]string{"tunnelId": a.id}))
	env.open(t, `{}`) // a closed tunnel frees its slot
}

func TestExpiryAndRetention(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.Retention = time.Hour })
	short := env.open(t, `{"timeoutConfig":{"maxLifetimeTimeoutMinutes":1}}`)
	long := env.open(t, `{}`)
	start := env.clock.Now()
	env.clock.Advance(59 * time.Second)
	if st := describeStatus(t, env, short.id); st != "OPEN" {
		t.Fatalf("status before expiry %s", st)
	}
	env.clock.Advance(time.Second)
	if st := describeStatus(t, env, short.id); st != "CLOSED" {
		t.Fatalf("status at expiry %s", st)
	}
	d := env.mustCall(t, "DescribeTunnel", js(map[string]string{"tunnelId": short.id})).body["tunnel"].(map[string]any)
	if d["lastUpdatedAt"] != float64(start.Add(time.Minute).Unix()) {
		t.Fatalf("lastUpdatedAt %v, want the expiry time", d["lastUpdatedAt"])
	}
	if _, _, herr := env.e.store.admit(short.src, "", modeSource); herr == nil || refusalOf(herr).msg != msgTunnelClosed {
		t.Fatalf("token of expired tunnel: %v", herr)
	}
	env.clock.Advance(time.Hour - time.Second)
	env.e.sweep()
	if st := describeStatus(t, env, short.id); st != "CLOSED" {
		t.Fatalf("closed tunnel dropped before the retention ran out: %s", st)
	}
	env.clock.Advance(time.Second)
	env.e.sweep()
	if res := env.call(t, "DescribeTunnel", js(map[string]string{"tunnelId": short.id})); res.errType() != codeNotFound {
		t.Fatalf("closed tunnel still there after retention: %v", res.body)
	}
	if _, _, herr := env.e.store.admit(short.src, "", modeSource); herr == nil || refusalOf(herr).msg != msgTokenUnknown {
		t.Fatalf("token of forgotten tunnel: %v", herr)
	}
	if st := describeStatus(t, env, long.id); st != "OPEN" {
		t.Fatalf("720-minute tunnel: %s", st)
	}
}

func describeStatus(t *testing.T, env *testEnv, id string) string {
	t.Helper()
	res := env.mustCall(t, "DescribeTunnel", js(map[string]string{"tunnelId": id}))
	return res.body["tunnel"].(map[string]any)["status"].(string)
}
