package greengrass

import (
	"bytes"
	"encoding/json"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
)

// The recipe schema, after the "AWS IoT Greengrass component recipe reference"
// (Greengrass v2 developer guide). Decoding with KnownFields rejects any key the
// reference does not define.
type recipe struct {
	RecipeFormatVersion    string                `yaml:"RecipeFormatVersion"`
	ComponentName          string                `yaml:"ComponentName"`
	ComponentVersion       string                `yaml:"ComponentVersion"`
	ComponentDescription   string                `yaml:"ComponentDescription"`
	ComponentPublisher     string                `yaml:"ComponentPublisher"`
	ComponentType          string                `yaml:"ComponentType"`
	ComponentSource        string                `yaml:"ComponentSource"`
	ComponentConfiguration *componentConfig      `yaml:"ComponentConfiguration"`
	ComponentDependencies  map[string]dependency `yaml:"ComponentDependencies"`
	Manifests              []manifest            `yaml:"Manifests"`
	Lifecycle              map[string]any        `yaml:"Lifecycle"`
}

type componentConfig struct {
	DefaultConfiguration map[string]any `yaml:"DefaultConfiguration"`
}

type dependency struct {
	VersionRequirement string `yaml:"VersionRequirement"`
	DependencyType     string `yaml:"DependencyType"`
}

type manifest struct {
	Name       string            `yaml:"Name"`
	Platform   map[string]string `yaml:"Platform"`
	Lifecycle  map[string]any    `yaml:"Lifecycle"`
	Selections []string          `yaml:"Selections"`
	Artifacts  []artifact        `yaml:"Artifacts"`
}

type artifact struct {
	URI        string `yaml:"URI"`
	Unarchive  string `yaml:"Unarchive"`
	Permission struct {
		Read    string `yaml:"Read"`
		Execute string `yaml:"Execute"`
	} `yaml:"Permission"`
	Digest    string `yaml:"Digest"`
	Algorithm string `yaml:"Algorithm"`
}

// accessPolicy is one entry of accessControl.<ipc service>.<policy id>.
type accessPolicy struct {
	PolicyDescription string   `yaml:"policyDescription"`
	Operations        []string `yaml:"operations"`
	Resources         []string `yaml:"resources"`
}

// The two shipped recipes: MQTT wildcards in accessControl (every nucleus),
// and {iot:thingName} (nucleus >= 2.6.0 with interpolateComponentConfiguration).
const (
	recipePath          = "../../configs/greengrass/recipe.yaml"
	recipeThingNamePath = "../../configs/greengrass/recipe-thingname.yaml"
)

var recipePaths = []string{recipePath, recipeThingNamePath}

var (
	semverRe         = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	componentNameRe  = regexp.MustCompile(`^[A-Za-z0-9]+(\.[A-Za-z0-9_-]+)+$`)
	recipeVariableRe = regexp.MustCompile(`\{([^{}]*)\}`)
	lifecycleSteps   = []string{"Setenv", "Bootstrap", "Install", "Run", "Startup", "Shutdown", "Recover"}
)

func loadRecipe(t *testing.T, path string) recipe {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var r recipe
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("%s does not match the recipe reference: %v", path, err)
	}
	return r
}

func TestRecipeTopLevel(t *testing.T) {
	for _, p := range recipePaths {
		t.Run(path.Base(p), func(t *testing.T) { testRecipeTopLevel(t, loadRecipe(t, p)) })
	}
}

func testRecipeTopLevel(t *testing.T, r recipe) {
	if r.RecipeFormatVersion != "2020-01-25" {
		t.Errorf("RecipeFormatVersion = %q, want 2020-01-25", r.RecipeFormatVersion)
	}
	if !componentNameRe.MatchString(r.ComponentName) || strings.HasPrefix(r.ComponentName, "aws.greengrass") {
		t.Errorf("ComponentName %q: want an inverse-domain name outside aws.greengrass", r.ComponentName)
	}
	if !semverRe.MatchString(r.ComponentVersion) {
		t.Errorf("ComponentVersion %q is not a semantic version", r.ComponentVersion)
	}
	if r.ComponentPublisher == "" || r.ComponentDescription == "" {
		t.Error("ComponentPublisher and ComponentDescription must be set")
	}
	if r.ComponentType != "" || r.ComponentSource != "" {
		t.Error("ComponentType/ComponentSource are set by the service; leave them out")
	}
	for name, d := range r.ComponentDependencies {
		if d.VersionRequirement == "" || !slices.Contains([]string{"", "SOFT", "HARD"}, d.DependencyType) {
			t.Errorf("dependency %s: %+v", name, d)
		}
	}
	if r.ComponentConfiguration == nil || r.ComponentConfiguration.DefaultConfiguration == nil {
		t.Fatal("ComponentConfiguration.DefaultConfiguration is missing")
	}
}

func TestRecipeManifests(t *testing.T) {
	for _, p := range recipePaths {
		t.Run(path.Base(p), func(t *testing.T) { testRecipeManifests(t, loadRecipe(t, p)) })
	}
}

func testRecipeManifests(t *testing.T, r recipe) {
	var archs []string
	for i, m := range r.Manifests {
		if m.Platform["os"] != "linux" {
			t.Errorf("manifest %d: Platform.os = %q, want linux", i, m.Platform["os"])
		}
		archs = append(archs, m.Platform["architecture"])
		checkArtifacts(t, i, m.Artifacts)
		run := checkLifecycle(t, i, m.Lifecycle)
		if !strings.HasPrefix(run, "exec ") {
			t.Errorf("manifest %d: Run %q must exec the agent: its exit code is what makes the nucleus restart it", i, run)
		}
		if !strings.Contains(run, "{artifacts:path}/tunnel-agent greengrass") {
			t.Errorf("manifest %d: Run %q does not start the artifact in greengrass mode", i, run)
		}
		checkRecipeVariables(t, i, run, r.ComponentConfiguration.DefaultConfiguration)
	}
	slices.Sort(archs)
	if want := []string{"aarch64", "amd64", "arm"}; !slices.Equal(archs, want) {
		t.Errorf("manifest architectures = %v, want %v", archs, want)
	}
}

func checkArtifacts(t *testing.T, i int, arts []artifact) {
	t.Helper()
	if len(arts) == 0 {
		t.Errorf("manifest %d: no Artifacts", i)
	}
	names := map[string]bool{}
	for _, a := range arts {
		name := path.Base(a.URI)
		if !strings.HasPrefix(a.URI, "s3://") || names[name] {
			t.Errorf("manifest %d: artifact URI %q: want s3://, unique file name", i, a.URI)
		}
		names[name] = true
		if !slices.Contains([]string{"", "NONE", "ZIP"}, a.Unarchive) ||
			!slices.Contains([]string{"", "NONE", "OWNER", "ALL"}, a.Permission.Read) ||
			!slices.Contains([]string{"OWNER", "ALL"}, a.Permission.Execute) {
			t.Errorf("manifest %d: artifact %s: bad Unarchive/Permission (the binary must be executable)", i, name)
		}
	}
	if !names["tunnel-agent"] {
		t.Errorf("manifest %d: no tunnel-agent artifact", i)
	}
}

// checkLifecycle checks the step names and returns the Run script.
func checkLifecycle(t *testing.T, i int, lc map[string]any) string {
	t.Helper()
	for step := range lc {
		if !slices.Contains(lifecycleSteps, step) {
			t.Errorf("manifest %d: unknown lifecycle step %q", i, step)
		}
	}
	if _, ok := lc["Startup"]; ok {
		t.Errorf("manifest %d: define Run, not Startup: the agent is a long-running process", i)
	}
	switch run := lc["Run"].(type) {
	case string:
		return run
	case map[string]any:
		if s, ok := run["Script"].(string); ok && s != "" {
			return s
		}
	}
	t.Fatalf("manifest %d: Lifecycle.Run has no script", i)
	return ""
}

// checkRecipeVariables checks each {...} of the script is a variable the
// reference defines, and that configuration pointers resolve to an object.
func checkRecipeVariables(t *testing.T, i int, script string, defaults map[string]any) {
	t.Helper()
	for _, m := range recipeVariableRe.FindAllStringSubmatch(script, -1) {
		v := m[1]
		switch {
		case slices.Contains([]string{"artifacts:path", "artifacts:decompressedPath", "work:path",
			"kernel:rootPath", "iot:thingName"}, v):
		case strings.HasPrefix(v, "configuration:/"):
			var node any = defaults
			for _, key := range strings.Split(strings.TrimPrefix(v, "configuration:/"), "/") {
				obj, ok := node.(map[string]any)
				if !ok {
					t.Fatalf("manifest %d: %s: not an object on the way", i, v)
				}
				node = obj[key]
			}
			if _, ok := node.(map[string]any); !ok {
				t.Errorf("manifest %d: %s does not name an object in DefaultConfiguration", i, v)
			}
		default:
			t.Errorf("manifest %d: unknown recipe variable {%s}", i, v)
		}
	}
}

func TestRecipeAccessControl(t *testing.T) {
	for _, p := range recipePaths {
		t.Run(path.Base(p), func(t *testing.T) { testRecipeAccessControl(t, loadRecipe(t, p)) })
	}
}

func testRecipeAccessControl(t *testing.T, r recipe) {
	raw, err := yaml.Marshal(r.ComponentConfiguration.DefaultConfiguration["accessControl"])
	if err != nil {
		t.Fatal(err)
	}
	var ac map[string]map[string]accessPolicy
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&ac); err != nil {
		t.Fatalf("accessControl shape: %v", err)
	}
	for _, want := range []struct{ op, topic string }{
		{opSubscribeToIoTCore, Topic("pi-1")},
		{opPublishToIoTCore, "tunnel-agent/pi-1/events"}, // the audit topic
	} {
		if !recipeAllows(ac, want.op, want.topic, "pi-1") {
			t.Errorf("accessControl does not allow %s on %s", want.op, want.topic)
		}
	}
	if recipeAllows(ac, opPublishToIoTCore, Topic("pi-1"), "pi-1") {
		t.Errorf("accessControl allows publishing on the notify topic")
	}
	for service, policies := range ac {
		for id, p := range policies {
			if len(p.Operations) == 0 || len(p.Resources) == 0 {
				t.Errorf("accessControl %s/%s: operations and resources must be non-empty", service, id)
			}
		}
	}
}

// recipeAllows reports whether accessControl lets op use topic, with
// {iot:thingName} interpolated as a nucleus >= 2.6.0 set up for it does.
func recipeAllows(ac map[string]map[string]accessPolicy, op, topic, thing string) bool {
	for _, p := range ac[ipcServiceMQTTProxy] {
		if !slices.Contains(p.Operations, op) && !slices.Contains(p.Operations, "*") {
			continue
		}
		for _, res := range p.Resources {
			if resourceCovers(strings.ReplaceAll(res, "{iot:thingName}", thing), topic) {
				return true
			}
		}
	}
	return false
}

// resourceCovers reports whether an mqttproxy resource (exact topic, "*", or
// an MQTT filter with + and #) allows subscribing to topic.
func resourceCovers(res, topic string) bool {
	if res == "*" || res == topic {
		return true
	}
	rs, ts := strings.Split(res, "/"), strings.Split(topic, "/")
	for i, r := range rs {
		switch {
		case r == "#":
			return true
		case i >= len(ts):
			return false
		case r != "+" && r != ts[i]:
			return false
		}
	}
	return len(rs) == len(ts)
}

// TestRecipeAgentConfig runs the default agent configuration through the path
// it takes on a device: JSON from the nucleus, NormalizeConfigJSON, the agent's
// config parser (unknown keys rejected) and its tunnel validation.
func TestRecipeAgentConfig(t *testing.T) {
	for _, p := range recipePaths {
		t.Run(path.Base(p), func(t *testing.T) { testRecipeAgentConfig(t, loadRecipe(t, p)) })
	}
}

func testRecipeAgentConfig(t *testing.T, r recipe) {
	js, err := json.Marshal(r.ComponentConfiguration.DefaultConfiguration["agent"])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsRune(js, '\'') {
		t.Fatalf("agent configuration %s contains a single quote: it would break the Run line's quoting", js)
	}
	norm, err := NormalizeConfigJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(bytes.NewReader(norm))
	if err != nil {
		t.Fatalf("agent config parser refuses the recipe's configuration: %v", err)
	}
	cfg.StateDir = t.TempDir() // --state-dir '{work:path}' on the device
	if err := cfg.ValidateTunnel(); err != nil {
		t.Fatalf("recipe's agent configuration is invalid: %v", err)
	}
	if cfg.Services["SSH"] != "127.0.0.1:22" || cfg.MaxTunnels != 10 {
		t.Errorf("parsed config: %+v", cfg)
	}
}

func TestResourceCovers(t *testing.T) {
	topic := Topic("pi-1")
	for res, want := range map[string]bool{
		"*": true, topic: true, "$aws/things/+/tunnels/notify": true, "$aws/things/#": true,
		"$aws/things/+/tunnels": false, "$aws/things/pi-2/tunnels/notify": false,
		"$aws/things/+/tunnels/notify/x": false, "$aws/things/{iot:thingName}/tunnels/notify": false,
	} {
		if got := resourceCovers(res, topic); got != want {
			t.Errorf("resourceCovers(%q) = %v, want %v", res, got, want)
		}
	}
}

// TestRecipeVariants: the {iot:thingName} recipe differs from the wildcard one
// only in the nucleus version and the accessControl resources.
func TestRecipeVariants(t *testing.T) {
	load := func(p string) map[string]any {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	wild, named := load(recipePath), load(recipeThingNamePath)
	nucleus := func(m map[string]any) map[string]any {
		return m["ComponentDependencies"].(map[string]any)["aws.greengrass.Nucleus"].(map[string]any)
	}
	if v := nucleus(named)["VersionRequirement"]; v != ">=2.6.0 <3.0.0" {
		t.Errorf("thingname recipe: nucleus %v, want >=2.6.0 <3.0.0", v)
	}
	nucleus(named)["VersionRequirement"] = nucleus(wild)["VersionRequirement"]
	ac := func(m map[string]any) map[string]any {
		return m["ComponentConfiguration"].(map[string]any)["DefaultConfiguration"].(map[string]any)["accessControl"].(map[string]any)[ipcServiceMQTTProxy].(map[string]any)
	}
	for id, p := range ac(named) {
		res := p.(map[string]any)["resources"].([]any)
		for i, r := range res {
			if !strings.Contains(r.(string), "{iot:thingName}") {
				t.Errorf("thingname recipe: %s resource %v without {iot:thingName}", id, r)
			}
			res[i] = strings.ReplaceAll(r.(string), "{iot:thingName}", "+")
		}
	}
	a, _ := json.Marshal(wild)
	b, _ := json.Marshal(named)
	if !bytes.Equal(a, b) {
		t.Errorf("the recipes differ beyond the nucleus version and the resources:\n%s\n%s", a, b)
	}
}
