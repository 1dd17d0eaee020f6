package agent

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
)

// ErrStopped: the agent is not running (Reload before Run or after it ended).
var ErrStopped = errors.New("agent is not running")

// ErrNeedsRestart: a reload changed a setting only a restart applies.
var ErrNeedsRestart = errors.New("setting cannot change while the agent runs")

type reloadRequest struct {
	cfg   config.Config
	reply chan reloadResult
}

type reloadResult struct {
	changed []string
	err     error
}

// Reload applies a new configuration to the running agent without touching
// live tunnels, and returns the keys that changed. It is refused, and the
// running configuration stays, if cfg does not validate or changes
// state_dir, max_total_connections or queue_budget. Services take effect at once, on live tunnels too: a stream
// to a service no longer listed is reset and its connections end with a
// stream.end audit event. max_tunnels applies to the next notification;
// lifetimes, buffers, stall timeout, max_connections and data-plane
// settings to the next tunnel. MQTT, logging and anything else outside the tunnel settings are
// the caller's (the keys are reported all the same).
func (a *Agent) Reload(cfg config.Config) ([]string, error) {
	if err := cfg.ValidateTunnel(); err != nil {
		return nil, err
	}
	r := reloadRequest{cfg: cfg, reply: make(chan reloadResult, 1)}
	select {
	case a.reloads <- r:
	case <-a.quit:
		return nil, ErrStopped
	}
	res := <-r.reply
	return res.changed, res.err
}

// applyReload runs on the event loop.
func (a *Agent) applyReload(cfg config.Config) reloadResult {
	if cfg.StateDir != a.cfg.StateDir {
		return reloadResult{err: fmt.Errorf("%w: state_dir (%s to %s): restart the agent to move it", ErrNeedsRestart, a.cfg.StateDir, cfg.StateDir)}
	}
	if cfg.MaxTotalConnections != a.cfg.MaxTotalConnections || cfg.QueueBudget != a.cfg.QueueBudget {
		return reloadResult{err: fmt.Errorf("%w: max_total_connections and queue_budget bound all tunnels together: restart the agent to change them", ErrNeedsRestart)}
	}
	changed := ChangedKeys(a.cfg, cfg)
	servicesChanged := !maps.Equal(a.cfg.Services, cfg.Services)
	a.cfg = cfg
	a.reg.cap = cfg.MaxTunnels
	a.obs.setMax(cfg.MaxTunnels)
	if servicesChanged {
		for t := range a.reg.live() {
			s, ok := t.sess.(interface{ SetServices(map[string]string) error })
			if !ok {
				continue
			}
			if err := s.SetServices(cfg.Services); err != nil {
				a.log.Error("cannot apply the new services to a live tunnel", attrTunnel, t.id, attrErr, err)
			}
		}
	}
	return reloadResult{changed: changed}
}

// ChangedKeys lists the YAML keys whose values differ between a and b.
func ChangedKeys(a, b config.Config) []string {
	var keys []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			key, _, _ := strings.Cut(va.Type().Field(i).Tag.Get("yaml"), ",")
			keys = append(keys, key)
		}
	}
	return keys
}
