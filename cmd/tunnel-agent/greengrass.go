package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/platform/greengrass"
)

// mqttKeys are the settings of the agent's own MQTT connection. In
// Greengrass mode the nucleus holds that connection, so they are refused
// rather than silently ignored (flag names: "_" -> "-").
var mqttKeys = []string{"endpoint", "port", "cert", "key", "root_ca", "client_id"}

const nucleusProvides = "in greengrass mode the Greengrass nucleus provides the MQTT connection to AWS IoT Core " +
	"and the thing name (AWS_IOT_THING_NAME)"

// nucleusProvidedFlag reports whether a flag sets what the nucleus provides;
// `greengrass` does not define it.
func nucleusProvidedFlag(name string) bool {
	return name == "thing-name" || slices.Contains(mqttKeys, strings.ReplaceAll(name, "-", "_"))
}

// greengrassUsage prints what applies in Greengrass mode.
func greengrassUsage(fs *flag.FlagSet) func() {
	return func() {
		fmt.Fprint(fs.Output(), `usage: tunnel-agent greengrass [flags]

Runs as an AWS IoT Greengrass v2 component (configs/greengrass/recipe.yaml):
notifications through Greengrass IPC, the thing name and IPC socket from the
nucleus environment. The nucleus provides the MQTT connection, so the MQTT
settings (endpoint, port, cert, key, root_ca, client_id, thing_name) are refused.

flags:
`)
		fs.PrintDefaults()
	}
}

// refuseMQTTFlags names an MQTT flag on the command line (the flag package
// would only say it is not defined).
func refuseMQTTFlags(args []string) error {
	for _, a := range args {
		if a == "--" {
			return nil
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if nucleusProvidedFlag(name) {
			return fmt.Errorf("--%s: %s; remove --%s from the component's Run line", name, nucleusProvides, name)
		}
	}
	return nil
}

// refuseMQTTKeys names an MQTT key of the component configuration (JSON) or
// of the config file (YAML); what parses as neither is left to the config
// parser's own error.
func refuseMQTTKeys(b []byte, where string) error {
	var m map[string]any
	if yaml.NewDecoder(bytes.NewReader(b)).Decode(&m) != nil {
		return nil
	}
	for _, k := range mqttKeys {
		if _, ok := m[k]; ok {
			return fmt.Errorf("%s sets %s: %s; remove %s (and any of %s) from it",
				where, k, nucleusProvides, k, strings.Join(mqttKeys, ", "))
		}
	}
	return nil
}

// greengrassConfigBytes returns the configuration the settings will load,
// and where it comes from, for refuseMQTTKeys.
func greengrassConfigBytes(s *settings) ([]byte, string, error) {
	switch {
	case s.configJSON != "":
		return []byte(s.configJSON), "the component configuration (--config-json)", nil
	case s.configPath != "":
		b, err := os.ReadFile(s.configPath)
		return b, s.configPath, err
	}
	b, err := os.ReadFile(config.DefaultConfigPath)
	if os.IsNotExist(err) {
		return nil, "", nil
	}
	return b, config.DefaultConfigPath, err
}

// greengrassSetup configures the agent as a Greengrass v2 component: the
// thing name and IPC socket come from the nucleus environment, the settings
// from --config-json (the recipe's configuration) or --config.
func greengrassSetup(s *settings, logOut io.Writer) (config.Config, notify.Source, error) {
	b, where, err := greengrassConfigBytes(s)
	if err != nil {
		return config.Config{}, nil, err
	}
	if err := refuseMQTTKeys(b, where); err != nil {
		return config.Config{}, nil, err
	}
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
