package emulator

// The control-plane operations on the store, one per API call that changes
// or reads tunnels: open, close, rotate, list, describe and the tag calls.

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"time"
)

func (s *store) open(r *openTunnelRequest) (_ openTunnelResponse, err error) {
	defer func() {
		if err == nil {
			s.sv.save()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.openCount(now) >= s.maxOpen {
		return openTunnelResponse{}, errLimit("the account already has %d open tunnels (limit %d): close a tunnel or raise --max-open-tunnels", s.maxOpen, s.maxOpen)
	}
	s.seq++
	id := newUUID()
	t := &tunnel{
		seq: s.seq, id: id, status: statusOpen, lifetime: maxLifetimeMinutes,
		arn:       fmt.Sprintf("arn:aws:tunnel:%s:%s:tunnel/%s", s.region, s.account, id),
		createdAt: now, updatedAt: now, relay: newRelay(s.bandwidth),
	}
	if r.Description != nil {
		t.description = *r.Description
	}
	if r.DestinationConfig != nil {
		t.setDestination(r.DestinationConfig)
	}
	if r.Tags != nil {
		t.tags = mergeTags(nil, *r.Tags)
	}
	if r.TimeoutConfig != nil && r.TimeoutConfig.MaxLifetimeTimeoutMinutes != nil {
		t.lifetime = *r.TimeoutConfig.MaxLifetimeTimeoutMinutes
	}
	t.expiresAt = now.Add(time.Duration(t.lifetime) * time.Minute)
	for m := range t.modes {
		t.modes[m] = modeState{token: newAccessToken(), updatedAt: now}
		s.tokens[t.modes[m].token] = tokenRef{t: t, mode: mode(m)}
	}
	s.tunnels[id] = t
	return openTunnelResponse{TunnelID: t.id, TunnelArn: t.arn,
		SourceAccessToken: t.modes[modeSource].token, DestinationAccessToken: t.modes[modeDest].token}, nil
}

func (t *tunnel) setDestination(dc *destinationConfigJSON) {
	t.hasDest = true
	t.thing = ""
	if dc.ThingName != nil {
		t.thing = *dc.ThingName
	}
	t.services = slices.Clone(*dc.Services)
}

func mergeTags(have []Tag, add []tagJSON) []Tag {
	for _, n := range add {
		i := slices.IndexFunc(have, func(t Tag) bool { return t.Key == *n.Key })
		if i >= 0 {
			have[i].Value = *n.Value
		} else {
			have = append(have, Tag{Key: *n.Key, Value: *n.Value})
		}
	}
	return have
}

// close closes (and with del, forgets) a tunnel. It returns the tunnel so
// the caller can drop its connections.
func (s *store) close(id string, del bool) (_ *tunnel, err error) {
	defer func() {
		if err == nil {
			s.sv.save()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.get(id)
	if !ok {
		return nil, errNotFound("tunnel %s not found: check the tunnelId (closed tunnels are kept for the retention period only)", id)
	}
	if t.status == statusOpen {
		s.closeLocked(t, s.now())
	}
	if del {
		s.deleteLocked(t)
	}
	return t, nil
}

// rotate issues new tokens for the modes selected by clientMode and revokes
// the old ones. Connections made with the old tokens stay up.
func (s *store) rotate(r *rotateRequest) (_ *tunnel, _ rotateResponse, err error) {
	defer func() {
		if err == nil {
			s.sv.save()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.get(*r.TunnelID)
	if !ok {
		return nil, rotateResponse{}, errNotFound("tunnel %s not found: check the tunnelId", *r.TunnelID)
	}
	if t.status != statusOpen {
		return nil, rotateResponse{}, errNotFound("tunnel %s is CLOSED; tokens of a closed tunnel cannot be rotated: open a new tunnel", t.id)
	}
	if r.DestinationConfig != nil {
		t.setDestination(r.DestinationConfig)
	}
	resp := rotateResponse{TunnelArn: t.arn}
	mode := *r.ClientMode
	if mode == "SOURCE" || mode == "ALL" {
		resp.SourceAccessToken = s.newTokenLocked(t, modeSource)
	}
	if mode == "DESTINATION" || mode == "ALL" {
		resp.DestinationAccessToken = s.newTokenLocked(t, modeDest)
	}
	t.updatedAt = s.now()
	return t, resp, nil
}

func (s *store) newTokenLocked(t *tunnel, m mode) string {
	ms := &t.modes[m]
	delete(s.tokens, ms.token)
	ms.token, ms.clientToken, ms.used = newAccessToken(), "", false
	s.tokens[ms.token] = tokenRef{t: t, mode: m}
	return ms.token
}

// list returns one page of tunnels, newest first.
func (s *store) list(r *listRequest) (listResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := uint64(100)
	if r.MaxResults != nil {
		limit = uint64(*r.MaxResults)
	}
	below := uint64(1<<63 - 1)
	if r.NextToken != nil {
		b, err := base64.URLEncoding.DecodeString(*r.NextToken)
		v, perr := strconv.ParseUint(string(b), 10, 64)
		if err != nil || perr != nil {
			return listResponse{}, errValidation("nextToken is not a token returned by ListTunnels: start again without nextToken")
		}
		below = v
	}
	now := s.now()
	var all []*tunnel
	for _, t := range s.tunnels {
		s.refresh(t, now)
		if t.seq < below && (r.ThingName == nil || t.thing == *r.ThingName) {
			all = append(all, t)
		}
	}
	slices.SortFunc(all, func(a, b *tunnel) int { return int(b.seq) - int(a.seq) })
	resp := listResponse{TunnelSummaries: []tunnelSummaryOut{}}
	for i, t := range all {
		if uint64(i) == limit {
			resp.NextToken = base64.URLEncoding.EncodeToString([]byte(strconv.FormatUint(all[i-1].seq, 10)))
			break
		}
		resp.TunnelSummaries = append(resp.TunnelSummaries, tunnelSummaryOut{
			TunnelID: t.id, TunnelArn: t.arn, Status: t.status, Description: t.description,
			CreatedAt: epochSeconds(t.createdAt), LastUpdatedAt: epochSeconds(t.updatedAt),
		})
	}
	return resp, nil
}

func (s *store) describe(id string) (tunnelOut, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.get(id)
	if !ok {
		return tunnelOut{}, errNotFound("tunnel %s not found: check the tunnelId", id)
	}
	out := tunnelOut{
		TunnelID: t.id, TunnelArn: t.arn, Status: t.status, Description: t.description,
		SourceConnectionState:      connState(&t.modes[modeSource]),
		DestinationConnectionState: connState(&t.modes[modeDest]),
		Tags:                       slices.Clone(t.tags),
		CreatedAt:                  epochSeconds(t.createdAt), LastUpdatedAt: epochSeconds(t.updatedAt),
	}
	out.TimeoutConfig.MaxLifetimeTimeoutMinutes = t.lifetime
	if t.hasDest {
		out.DestinationConfig = &destinationConfigOut{ThingName: t.thing, Services: slices.Clone(t.services)}
	}
	return out, nil
}

func connState(m *modeState) connectionStateOut {
	st := connDown
	if m.connected {
		st = connUp
	}
	return connectionStateOut{Status: st, LastUpdatedAt: epochSeconds(m.updatedAt)}
}

// tagOp runs fn on the tunnel named by arn; with mutate, the change is saved.
func (s *store) tagOp(arn string, mutate bool, fn func(t *tunnel)) (err error) {
	defer func() {
		if err == nil && mutate {
			s.sv.save()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.byArn(arn)
	if !ok {
		return errNotFound("resource %s not found: pass a tunnelArn returned by OpenTunnel", arn)
	}
	fn(t)
	return nil
}
