package emulator

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Patterns and bounds of the IoTSecuredTunneling model (protocol.md §7.2).
var (
	serviceRe    = regexp.MustCompile(`^[a-zA-Z0-9:_-]+$`) // Service and ThingName, 1-128
	tunnelIDRe   = regexp.MustCompile(`^[a-zA-Z0-9_\-+=:]+$`)
	tagRe        = regexp.MustCompile(`^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`)
	nextTokenRe  = regexp.MustCompile(`^[a-zA-Z0-9_=-]+$`)
	clientModeOK = map[string]bool{"SOURCE": true, "DESTINATION": true, "ALL": true}
)

const (
	maxServicesPerTunnel = 3 // service quota (protocol.md §8)
	maxLifetimeMinutes   = 720
	maxTagsPerRequest    = 200
)

// maxShownViolations is how many violations a ValidationException spells
// out; the count covers all of them, as AWS's "N validation errors
// detected: ..." does. This bounds the answer and the work per request.
const maxShownViolations = 10

// validator collects constraint violations in the awsJson style
// ("Value at 'field' failed to satisfy constraint: ...").
type validator struct {
	n     int      // violations found
	shown []string // the first maxShownViolations of them
}

func (v *validator) add(field, constraint string) {
	v.n++
	if len(v.shown) < maxShownViolations {
		v.shown = append(v.shown, fmt.Sprintf("Value at '%s' failed to satisfy constraint: %s", field, constraint))
	}
}

func (v *validator) required(field string, present bool) bool {
	if !present {
		v.add(field, "Member must not be null")
	}
	return present
}

// length checks the length in characters, as the AWS model counts it.
func (v *validator) length(field, s string, lo, hi int) bool {
	n := utf8.RuneCountInString(s)
	if n < lo || n > hi {
		v.add(field, fmt.Sprintf("Member must have length between %d and %d", lo, hi))
		return false
	}
	return true
}

func (v *validator) pattern(field, s string, re *regexp.Regexp, shown string) {
	if !re.MatchString(s) {
		v.add(field, "Member must satisfy regular expression pattern: "+shown)
	}
}

func (v *validator) count(field string, n, lo, hi int) bool {
	if n < lo || n > hi {
		v.add(field, fmt.Sprintf("Member must have length between %d and %d", lo, hi))
		return false
	}
	return true
}

func (v *validator) err() error {
	switch v.n {
	case 0:
		return nil
	case 1:
		return errValidation("1 validation error detected: %s", v.shown[0])
	}
	more := ""
	if v.n > len(v.shown) {
		more = fmt.Sprintf("; and %d more", v.n-len(v.shown))
	}
	return errValidation("%d validation errors detected: %s%s", v.n, strings.Join(v.shown, "; "), more)
}

// description checks [^\p{C}]{1,2048}. Go's regexp caps repetition counts at
// 1000, so the pattern is checked by hand.
func (v *validator) description(field, s string) {
	if !v.length(field, s, 1, 2048) {
		return
	}
	for _, r := range s {
		// Invalid UTF-8 never gets here (decodeRequest refuses it), so a
		// U+FFFD is a genuine one, a symbol that the pattern allows.
		if unicode.In(r, unicode.C) {
			v.add(field, `Member must satisfy regular expression pattern: [^\p{C}]{1,2048}`)
			return
		}
	}
}

func (v *validator) service(field, s string) {
	if v.length(field, s, 1, 128) {
		v.pattern(field, s, serviceRe, "[a-zA-Z0-9:_-]+")
	}
}

func (v *validator) tunnelID(field string, s *string) {
	if v.required(field, s != nil) && v.length(field, *s, 1, 128) {
		v.pattern(field, *s, tunnelIDRe, `[a-zA-Z0-9_\-+=:]{1,128}`)
	}
}

func (v *validator) resourceArn(field string, s *string) {
	if v.required(field, s != nil) {
		v.length(field, *s, 1, 1011)
	}
}

func (v *validator) tags(field string, tags []tagJSON) {
	if !v.count(field, len(tags), 1, maxTagsPerRequest) {
		return
	}
	for i, t := range tags {
		f := fmt.Sprintf("%s.%d.member", field, i+1)
		if v.required(f+".key", t.Key != nil) && v.length(f+".key", *t.Key, 1, 128) {
			v.pattern(f+".key", *t.Key, tagRe, `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`)
		}
		if v.required(f+".value", t.Value != nil) && v.length(f+".value", *t.Value, 0, 256) {
			v.pattern(f+".value", *t.Value, tagRe, `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`)
		}
	}
}

// destinationConfig validates the shape; the 3-service quota is checked
// separately because it is a LimitExceededException, not a validation error.
func (v *validator) destinationConfig(field string, dc *destinationConfigJSON) {
	if dc.ThingName != nil && v.length(field+".thingName", *dc.ThingName, 1, 128) {
		v.pattern(field+".thingName", *dc.ThingName, serviceRe, "[a-zA-Z0-9:_-]+")
	}
	if !v.required(field+".services", dc.Services != nil) || !v.count(field+".services", len(*dc.Services), 1, 1<<30) {
		return
	}
	seen := make(map[string]bool, len(*dc.Services))
	for i, s := range *dc.Services {
		f := fmt.Sprintf("%s.services.%d.member", field, i+1)
		v.service(f, s)
		if seen[s] {
			v.add(f, "Member must be unique within the list (duplicate service "+quoteShort(s)+")")
		}
		seen[s] = true
	}
}

func checkServiceQuota(field string, dc *destinationConfigJSON) error {
	if dc != nil && dc.Services != nil && len(*dc.Services) > maxServicesPerTunnel {
		return errLimit("%s.services has %d services; a tunnel supports at most %d services (service quota)",
			field, len(*dc.Services), maxServicesPerTunnel)
	}
	return nil
}

func (r *openTunnelRequest) validate() error {
	var v validator
	if r.Description != nil {
		v.description("description", *r.Description)
	}
	if r.DestinationConfig != nil {
		v.destinationConfig("destinationConfig", r.DestinationConfig)
	}
	if r.Tags != nil {
		v.tags("tags", *r.Tags)
	}
	if r.TimeoutConfig != nil && r.TimeoutConfig.MaxLifetimeTimeoutMinutes != nil {
		if m := *r.TimeoutConfig.MaxLifetimeTimeoutMinutes; m < 1 || m > maxLifetimeMinutes {
			v.add("timeoutConfig.maxLifetimeTimeoutMinutes", "Member must have value between 1 and 720")
		}
	}
	if err := v.err(); err != nil {
		return err
	}
	return checkServiceQuota("destinationConfig", r.DestinationConfig)
}

func (r *rotateRequest) validate() error {
	var v validator
	v.tunnelID("tunnelId", r.TunnelID)
	if v.required("clientMode", r.ClientMode != nil) && !clientModeOK[*r.ClientMode] {
		v.add("clientMode", "Member must satisfy enum value set: [SOURCE, DESTINATION, ALL]")
	}
	if r.DestinationConfig != nil {
		v.destinationConfig("destinationConfig", r.DestinationConfig)
		if r.ClientMode != nil && *r.ClientMode == "SOURCE" {
			v.add("destinationConfig", "Member must be absent when clientMode is SOURCE")
		}
	}
	if err := v.err(); err != nil {
		return err
	}
	return checkServiceQuota("destinationConfig", r.DestinationConfig)
}

func (r *listRequest) validate() error {
	var v validator
	if r.ThingName != nil && v.length("thingName", *r.ThingName, 1, 128) {
		v.pattern("thingName", *r.ThingName, serviceRe, "[a-zA-Z0-9:_-]+")
	}
	if r.MaxResults != nil && (*r.MaxResults < 1 || *r.MaxResults > 100) {
		v.add("maxResults", "Member must have value between 1 and 100")
	}
	if r.NextToken != nil && v.length("nextToken", *r.NextToken, 1, 4096) {
		v.pattern("nextToken", *r.NextToken, nextTokenRe, "[a-zA-Z0-9_=-]{1,4096}")
	}
	return v.err()
}

func (r *tagRequest) validate() error {
	var v validator
	v.resourceArn("resourceArn", r.ResourceArn)
	if v.required("tags", r.Tags != nil) {
		v.tags("tags", *r.Tags)
	}
	return v.err()
}

func (r *untagRequest) validate() error {
	var v validator
	v.resourceArn("resourceArn", r.ResourceArn)
	if v.required("tagKeys", r.TagKeys != nil) && v.count("tagKeys", len(*r.TagKeys), 0, maxTagsPerRequest) {
		for i, k := range *r.TagKeys {
			f := fmt.Sprintf("tagKeys.%d.member", i+1)
			if v.length(f, k, 1, 128) {
				v.pattern(f, k, tagRe, `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`)
			}
		}
	}
	return v.err()
}

func (r *closeRequest) validate() error {
	var v validator
	v.tunnelID("tunnelId", r.TunnelID)
	return v.err()
}

func (r *describeRequest) validate() error {
	var v validator
	v.tunnelID("tunnelId", r.TunnelID)
	return v.err()
}

func (r *arnRequest) validate() error {
	var v validator
	v.resourceArn("resourceArn", r.ResourceArn)
	return v.err()
}
