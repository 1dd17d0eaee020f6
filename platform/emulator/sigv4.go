package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SigV4 constants of the API (protocol.md §7.1).
const (
	// SigningName is the SigV4 service name of the API, from the service
	// model; every AWS SDK signs with it.
	SigningName   = "IoTSecuredTunneling"
	sigAlgorithm  = "AWS4-HMAC-SHA256"
	sigTerminator = "aws4_request"
	amzDateLayout = "20060102T150405Z"
	maxClockSkew  = 5 * time.Minute
	unsignedBody  = "UNSIGNED-PAYLOAD"
)

// SigV4 error codes: the __type values AWS answers with (HTTP 403).
const (
	codeMissingAuth        = "MissingAuthenticationTokenException"
	codeIncompleteSig      = "IncompleteSignatureException"
	codeInvalidSig         = "InvalidSignatureException"
	codeUnrecognizedClient = "UnrecognizedClientException"
)

func authError(typ, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusForbidden, Type: typ, Message: fmt.Sprintf(format, args...)}
}

// sigV4 is a parsed Authorization header.
type sigV4 struct {
	accessKey, date, region, service, terminator string
	signedHeaders                                []string
	signature                                    string
}

// authenticate checks the request's SigV4 Authorization header: its form,
// its credential scope (SigningName, the emulator's region), its date
// (within 5 minutes of the emulator's clock) and, when Config.Credentials
// is set, the signature itself over the method, path, query, signed
// headers and body. It returns nil with Config.NoAuth.
func (e *Emulator) authenticate(r *http.Request, body []byte) *apiError {
	if e.cfg.NoAuth {
		return nil
	}
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		if r.URL.Query().Has("X-Amz-Algorithm") {
			return authError(codeIncompleteSig, "query-string (presigned) authentication is not supported by the emulator: "+
				"sign with the Authorization header")
		}
		return authError(codeMissingAuth, "Missing Authentication Token")
	}
	if len(h) > 1 {
		return authError(codeIncompleteSig, "the request has %d Authorization headers: send one", len(h))
	}
	sig, aerr := parseAuthorization(h[0])
	if aerr != nil {
		return aerr
	}
	amzDate, aerr := requestDate(r)
	if aerr != nil {
		return aerr
	}
	if aerr := e.checkScope(sig, amzDate); aerr != nil {
		return aerr
	}
	payload, aerr := payloadHash(r, body)
	if aerr != nil {
		return aerr
	}
	if e.cfg.Credentials == nil {
		return nil
	}
	secret, ok := e.cfg.Credentials[sig.accessKey]
	if !ok {
		return authError(codeUnrecognizedClient, "The security token included in the request is invalid.")
	}
	canon := canonicalRequest(r, sig.signedHeaders, payload)
	sts := stringToSign(amzDate, sig, canon)
	want := signature(secret, sig, sts)
	if !hmac.Equal([]byte(want), []byte(sig.signature)) {
		return authError(codeInvalidSig, "The request signature we calculated does not match the signature you provided. "+
			"Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n"+
			"The Canonical String for this request should have been\n'%s'\n\nThe String-to-Sign should have been\n'%s'\n", canon, sts)
	}
	return nil
}

// parseAuthorization parses "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...".
func parseAuthorization(h string) (sigV4, *apiError) {
	var sig sigV4
	alg, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if alg != sigAlgorithm {
		return sig, authError(codeIncompleteSig, "Authorization header must use %s (Signature Version 4), not %s. Authorization=%s",
			sigAlgorithm, quoteShort(alg), quoteShort(h))
	}
	params := map[string]string{}
	for kv := range strings.SplitSeq(rest, ",") {
		kv = strings.TrimSpace(kv)
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return sig, authError(codeIncompleteSig, "%s not a valid key=value pair (missing equal-sign) in Authorization header: %s",
				quoteShort(kv), quoteShort(h))
		}
		params[k] = v
	}
	var missing []string
	for _, k := range []string{"Credential", "Signature", "SignedHeaders"} {
		if params[k] == "" {
			missing = append(missing, "Authorization header requires '"+k+"' parameter.")
		}
	}
	if len(missing) > 0 {
		return sig, authError(codeIncompleteSig, "%s Authorization=%s", strings.Join(missing, " "), quoteShort(h))
	}
	scope := strings.Split(params["Credential"], "/")
	if len(scope) != 5 {
		return sig, authError(codeIncompleteSig, "Credential must have exactly 5 slash-delimited elements, "+
			"e.g. keyid/date/region/service/term, got %s", quoteShort(params["Credential"]))
	}
	sig.accessKey, sig.date, sig.region, sig.service, sig.terminator = scope[0], scope[1], scope[2], scope[3], scope[4]
	sig.signedHeaders = strings.Split(params["SignedHeaders"], ";")
	sig.signature = params["Signature"]
	if len(sig.signature) != 64 || strings.Trim(sig.signature, "0123456789abcdef") != "" {
		return sig, authError(codeIncompleteSig, "Signature must be 64 lowercase hexadecimal digits, got %s", quoteShort(sig.signature))
	}
	if !slices.Contains(sig.signedHeaders, "host") {
		return sig, authError(codeIncompleteSig, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	return sig, nil
}

// requestDate returns the signing time from X-Amz-Date (or Date).
func requestDate(r *http.Request) (time.Time, *apiError) {
	if v := r.Header.Get("X-Amz-Date"); v != "" {
		t, err := time.Parse(amzDateLayout, v)
		if err != nil {
			return t, authError(codeIncompleteSig, "X-Amz-Date %s is not in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'", quoteShort(v))
		}
		return t, nil
	}
	if v := r.Header.Get("Date"); v != "" {
		t, err := http.ParseTime(v)
		if err != nil {
			return t, authError(codeIncompleteSig, "Date header %s is not an HTTP date", quoteShort(v))
		}
		return t.UTC(), nil
	}
	return time.Time{}, authError(codeIncompleteSig, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
}

// checkScope checks the credential scope and the request time.
func (e *Emulator) checkScope(sig sigV4, at time.Time) *apiError {
	switch {
	case sig.terminator != sigTerminator:
		return authError(codeInvalidSig, "Credential should be scoped with a valid terminator: '%s', not %s.", sigTerminator, quoteShort(sig.terminator))
	case sig.service != SigningName:
		return authError(codeInvalidSig, "Credential should be scoped to correct service: '%s'.", SigningName)
	case sig.region != e.cfg.Region:
		return authError(codeInvalidSig, "Credential should be scoped to a valid region, not %s: this endpoint serves %s.",
			quoteShort(sig.region), e.cfg.Region)
	case sig.date != at.Format("20060102"):
		return authError(codeInvalidSig, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: %s != '%s', from '%s'.",
			quoteShort(sig.date), at.Format("20060102"), at.Format(amzDateLayout))
	}
	now := e.cfg.Now().UTC()
	switch {
	case at.Before(now.Add(-maxClockSkew)):
		return authError(codeInvalidSig, "Signature expired: %s is now earlier than %s (%s - 5 min.)",
			at.Format(amzDateLayout), now.Add(-maxClockSkew).Format(amzDateLayout), now.Format(amzDateLayout))
	case at.After(now.Add(maxClockSkew)):
		return authError(codeInvalidSig, "Signature not yet current: %s is still later than %s (%s + 5 min.)",
			at.Format(amzDateLayout), now.Add(maxClockSkew).Format(amzDateLayout), now.Format(amzDateLayout))
	}
	return nil
}

// payloadHash is the hex SHA-256 of the body, or the X-Amz-Content-Sha256
// value the client signed, which must then match the body.
func payloadHash(r *http.Request, body []byte) (string, *apiError) {
	sum := sha256.Sum256(body)
	actual := hex.EncodeToString(sum[:])
	v := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case v == "":
		return actual, nil
	case v == unsignedBody:
		return v, nil
	case v != actual:
		return "", authError(codeInvalidSig, "The provided 'x-amz-content-sha256' header does not match what was computed: "+
			"the body changed after signing.")
	}
	return v, nil
}

// canonicalRequest builds the SigV4 canonical request.
func canonicalRequest(r *http.Request, signed []string, payload string) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n")
	b.WriteString(awsEscape(r.URL.EscapedPath(), false) + "\n")
	b.WriteString(canonicalQuery(r.URL.RawQuery) + "\n")
	for _, name := range signed {
		b.WriteString(name + ":" + headerValue(r, name) + "\n")
	}
	b.WriteString("\n" + strings.Join(signed, ";") + "\n" + payload)
	return b.String()
}

func headerValue(r *http.Request, name string) string {
	var vals []string
	switch name {
	case "host":
		vals = []string{r.Host}
	case "content-length":
		vals = slices.Clone(r.Header.Values(name))
		if len(vals) == 0 && r.ContentLength >= 0 {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	default:
		vals = slices.Clone(r.Header.Values(name))
	}
	for i, v := range vals {
		vals[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(vals, ",")
}

func canonicalQuery(raw string) string {
	q, _ := url.ParseQuery(raw)
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, awsEscape(k, true)+"="+awsEscape(v, true))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, "&")
}

// awsEscape percent-encodes every byte but the unreserved characters (and
// '/' unless slash is set), as SigV4 requires.
func awsEscape(s string, slash bool) string {
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !slash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexd[c>>4])
		b.WriteByte(hexd[c&15])
	}
	return b.String()
}

func stringToSign(at time.Time, sig sigV4, canon string) string {
	sum := sha256.Sum256([]byte(canon))
	return sigAlgorithm + "\n" + at.Format(amzDateLayout) + "\n" +
		strings.Join([]string{sig.date, sig.region, sig.service, sig.terminator}, "/") + "\n" + hex.EncodeToString(sum[:])
}

func signature(secret string, sig sigV4, sts string) string {
	mac := func(key []byte, data string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(data))
		return h.Sum(nil)
	}
	k := mac([]byte("AWS4"+secret), sig.date)
	k = mac(k, sig.region)
	k = mac(k, sig.service)
	k = mac(k, sig.terminator)
	return hex.EncodeToString(mac(k, sts))
}
