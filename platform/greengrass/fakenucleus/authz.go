package fakenucleus

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// AccessControl is a component's accessControl configuration: IPC service
// (e.g. aws.greengrass.ipc.mqttproxy) -> policy id -> policy.
type AccessControl map[string]map[string]Policy

// Policy is one accessControl entry.
type Policy struct {
	PolicyDescription string   `yaml:"policyDescription" json:"policyDescription,omitempty"`
	Operations        []string `yaml:"operations" json:"operations"`
	Resources         []string `yaml:"resources" json:"resources"`
}

// Component is what the nucleus knows of a component process: its name (the
// principal) and its accessControl.
type Component struct {
	Name          string
	AccessControl AccessControl
}

// thingNameVariable is the recipe variable the nucleus interpolates in
// configuration when interpolateComponentConfiguration is set.
const thingNameVariable = "{iot:thingName}"

// ComponentFromRecipe reads a recipe's ComponentName and the accessControl of
// its DefaultConfiguration (unknown keys in a policy are an error).
func ComponentFromRecipe(path string) (Component, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Component{}, fmt.Errorf("read recipe: %w", err)
	}
	var r struct {
		ComponentName          string `yaml:"ComponentName"`
		ComponentConfiguration struct {
			DefaultConfiguration struct {
				AccessControl yaml.Node `yaml:"accessControl"`
			} `yaml:"DefaultConfiguration"`
		} `yaml:"ComponentConfiguration"`
	}
	if err := yaml.Unmarshal(b, &r); err != nil {
		return Component{}, fmt.Errorf("parse recipe %s: %w", path, err)
	}
	raw, err := yaml.Marshal(&r.ComponentConfiguration.DefaultConfiguration.AccessControl)
	if err != nil {
		return Component{}, fmt.Errorf("recipe %s: accessControl: %w", path, err)
	}
	var ac AccessControl
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&ac); err != nil {
		return Component{}, fmt.Errorf("recipe %s: accessControl: %w", path, err)
	}
	if r.ComponentName == "" || len(ac) == 0 {
		return Component{}, fmt.Errorf("recipe %s: no ComponentName or no accessControl", path)
	}
	return Component{Name: r.ComponentName, AccessControl: ac}, nil
}

// authorized reports whether c may run operation on resource (an MQTT topic
// or filter) of service, the way the nucleus' MQTT-style lookup does.
func (n *Nucleus) authorized(c Component, service, operation, resource string) bool {
	for _, p := range c.AccessControl[service] {
		if !slices.Contains(p.Operations, operation) && !slices.Contains(p.Operations, "*") {
			continue
		}
		for _, res := range p.Resources {
			if n.cfg.InterpolateComponentConfiguration {
				res = strings.ReplaceAll(res, thingNameVariable, n.cfg.ThingName)
			}
			if res == "*" || res == resource || filterCovers(res, resource) {
				return true
			}
		}
	}
	return false
}

// filterCovers reports whether every topic matched by filter sub is matched by
// filter super (MQTT wildcards + and #).
func filterCovers(super, sub string) bool {
	sp, bp := strings.Split(super, "/"), strings.Split(sub, "/")
	for i, s := range sp {
		switch {
		case s == "#":
			return true
		case i >= len(bp):
			return false
		case s == "+":
			if bp[i] == "#" {
				return false
			}
		case s != bp[i]:
			return false
		}
	}
	return len(sp) == len(bp)
}
