package notifytest

import "strings"

// GoodToken is a syntactically valid access token for tests.
const GoodToken = "AQGAAXh0b2tlbi1mb3ItdGVzdHM"

// BadPayloads is the corpus of notifications that must be dropped, by
// name. The agent's end-to-end test publishes the same corpus.
func BadPayloads() map[string]string {
	tok := `"clientAccessToken":"` + GoodToken + `"`
	return map[string]string{
		"empty":              ``,
		"not json":           `hello`,
		"json array":         `[1,2,3]`,
		"json string":        `"destination"`,
		"json null":          `null`,
		"truncated":          `{"clientAccessToken":"abc","clientMode":"dest`,
		"source mode":        `{` + tok + `,"clientMode":"source","region":"us-east-1","services":["SSH"]}`,
		"mode upper case":    `{` + tok + `,"clientMode":"DESTINATION","region":"us-east-1","services":["SSH"]}`,
		"mode missing":       `{` + tok + `,"region":"us-east-1","services":["SSH"]}`,
		"token missing":      `{"clientMode":"destination","region":"us-east-1","services":["SSH"]}`,
		"token empty":        `{"clientAccessToken":"","clientMode":"destination","region":"us-east-1","services":["SSH"]}`,
		"token number":       `{"clientAccessToken":12345,"clientMode":"destination","region":"us-east-1","services":["SSH"]}`,
		"token with space":   `{"clientAccessToken":"abc def","clientMode":"destination","region":"us-east-1","services":["SSH"]}`,
		"token control char": `{"clientAccessToken":"abc\u0001def","clientMode":"destination","region":"us-east-1","services":["SSH"]}`,
		"token too long":     `{"clientAccessToken":"` + strings.Repeat("A", 4097) + `","clientMode":"destination","region":"us-east-1"}`,
		"region empty":       `{` + tok + `,"clientMode":"destination","region":"","services":["SSH"]}`,
		"region upper":       `{` + tok + `,"clientMode":"destination","region":"US-EAST-1","services":["SSH"]}`,
		"region injection":   `{` + tok + `,"clientMode":"destination","region":"evil.com/x","services":["SSH"]}`,
		"region missing":     `{` + tok + `,"clientMode":"destination","services":["SSH"]}`,
		"four services":      `{` + tok + `,"clientMode":"destination","region":"us-east-1","services":["A","B","C","D"]}`,
		"service with space": `{` + tok + `,"clientMode":"destination","region":"us-east-1","services":["S SH"]}`,
		"service empty":      `{` + tok + `,"clientMode":"destination","region":"us-east-1","services":[""]}`,
		"service too long":   `{` + tok + `,"clientMode":"destination","region":"us-east-1","services":["` + strings.Repeat("s", 129) + `"]}`,
		"service duplicate":  `{` + tok + `,"clientMode":"destination","region":"us-east-1","services":["SSH","SSH"]}`,
		"services not array": `{` + tok + `,"clientMode":"destination","region":"us-east-1","services":"SSH"}`,
		"service number":     `{` + tok + `,"clientMode":"destination","region":"us-east-1","services":[22]}`,
		"trailing garbage":   `{` + tok + `,"clientMode":"destination","region":"us-east-1","services":["SSH"]} {}`,
		"key case":           `{"ClientAccessToken":"` + GoodToken + `","clientMode":"destination","region":"us-east-1","services":["SSH"]}`,
		"region key case":    `{` + tok + `,"clientMode":"destination","Region":"us-east-1","services":["SSH"]}`,
		"duplicate key":      `{` + tok + `,"clientMode":"destination","region":"us-east-1","region":"eu-west-1","services":["SSH"]}`,
		"duplicate token":    `{` + tok + `,` + tok + `,"clientMode":"destination","region":"us-east-1","services":["SSH"]}`,
		"services empty":     `{` + tok + `,"clientMode":"destination","region":"us-east-1","services":[]}`,
		"services absent":    `{` + tok + `,"clientMode":"destination","region":"us-east-1"}`,
		"services null":      `{` + tok + `,"clientMode":"destination","region":"us-east-1","services":null}`,
		"region attacker":    `{` + tok + `,"clientMode":"destination","region":"attacker","services":["SSH"]}`,
		"region s3":          `{` + tok + `,"clientMode":"destination","region":"s3","services":["SSH"]}`,
		"region dash":        `{` + tok + `,"clientMode":"destination","region":"-","services":["SSH"]}`,
		"region 64 chars":    `{` + tok + `,"clientMode":"destination","region":"` + strings.Repeat("a", 64) + `","services":["SSH"]}`,
		"region 65 chars":    `{` + tok + `,"clientMode":"destination","region":"` + strings.Repeat("a", 65) + `","services":["SSH"]}`,
		"oversized":          `{` + tok + `,"clientMode":"destination","region":"us-east-1","services":["SSH"],"pad":"` + strings.Repeat("x", 8<<10) + `"}`,
	}
}
