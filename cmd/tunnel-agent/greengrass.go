package main

import (
	"fmt"
	"io"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/platform/greengrass"
)

// greengrassSetup configures the agent as a Greengrass v2 component: the
// thing name and IPC socket come from the nucleus environment, the settings
// from --config-json (the recipe's configuration) or --config.
func greengrassSetup(s *settings, logOut io.Writer) (config.Config, notify.Source, error) {
	cfg, err := s.load(greengrass.NormalizeConfigJSON)
	if err != nil {
		return cfg, nil, err
	}
	gg, err := greengrass.ConfigFromEnv()
	if err != nil {
		return cfg, nil, err
	}
	if cfg.ThingName != "" && cfg.ThingName != gg.ThingName {
		return cfg, nil, fmt.Errorf("thing_name %q differs from the core device's %q (AWS_IOT_THING_NAME): remove thing_name from the component configuration", cfg.ThingName, gg.ThingName)
	}
	cfg.ThingName = gg.ThingName
	if err := cfg.ValidateTunnel(); err != nil {
		return cfg, nil, err
	}
	gg.Logger, _ = newLogger(cfg, logOut)
	return cfg, greengrass.NewSource(gg), nil
}
