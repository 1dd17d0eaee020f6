package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/greengrass"
	"github.com/tunnel-agent/tunnel-agent/platform/greengrass/fakenucleus"
)

func TestGreengrassHelpListsOnlyWhatApplies(t *testing.T) {
	usage := func(src notifySource) string {
		s := newSettings("x", src)
		var b strings.Builder
		s.fs.SetOutput(&b)
		s.fs.Usage()
		return b.String()
	}
	help := usage(fromGreengrass)
	for _, f := range []string{"-endpoint", "-port", "-cert", "-key ", "-root-ca", "-client-id", "-thing-name"} {
		if strings.Contains(help, "\n  "+f) {
			t.Errorf("greengrass -h lists %s:\n%s", f, help)
		}
	}
	for _, f := range []string{"-config-json", "-service", "-max-tunnels", "-state-dir", "-data-endpoint", "-https-proxy"} {
		if !strings.Contains(help, "\n  "+f) {
			t.Errorf("greengrass -h does not list %s:\n%s", f, help)
		}
	}
	if !strings.Contains(help, "nucleus provides the MQTT connection") {
		t.Errorf("greengrass -h does not say why:\n%s", help)
	}
	if !strings.Contains(usage(fromMQTT), "\n  -endpoint") {
		t.Error("run -h lost -endpoint")
	}
}

func TestGreengrassRefusesMQTTSettings(t *testing.T) {
	t.Setenv(greengrass.EnvSocketPath, "/nonexistent/ipc.socket")
	t.Setenv(greengrass.EnvAuthToken, "svcuid")
	t.Setenv(greengrass.EnvThingName, "pi-1")
	file := writeConfig(t, "services: {SSH: 127.0.0.1:22}\nroot_ca: /etc/ca.pem\n")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--endpoint", "x.iot.eu-west-1.amazonaws.com"}, "--endpoint: in greengrass mode the Greengrass nucleus provides the MQTT connection"},
		{[]string{"-port=443"}, "--port:"},
		{[]string{"--client-id", "c"}, "--client-id:"},
		{[]string{"--thing-name", "pi-1"}, "remove --thing-name"},
		{[]string{"--config-json", `{"services":{"SSH":"127.0.0.1:22"},"cert":"/c.pem"}`}, "(--config-json) sets cert: in greengrass mode"},
		{[]string{"--config-json", `{"key":"/k.pem"}`}, "sets key:"},
		{[]string{"--config-json", `{"port":8883}`}, "sets port:"},
		{[]string{"--config", file}, file + " sets root_ca:"},
	} {
		_, errOut, rc := run(append([]string{"greengrass"}, tt.args...)...)
		if rc != 1 || !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "remove") {
			t.Errorf("greengrass %v: rc %d, %q; want rc 1 naming %q", tt.args, rc, errOut, tt.want)
		}
	}
}

// TestGreengrassProcessExit runs the binary as the nucleus would, against
// the test nucleus: a lost IPC socket exits 1 (the nucleus restarts the
// component), SIGTERM (the nucleus stopping it) exits 0.
func TestGreengrassProcessExit(t *testing.T) {
	pki := notifytest.NewPKI(t, "pi-1")
	b := notifytest.StartBroker(t, pki, notifytest.BrokerOptions{})
	mq, err := fakenucleus.DialMQTT(fakenucleus.MQTTDial{Addr: b.Addr, CertFile: pki.ClientCertFile,
		KeyFile: pki.ClientKeyFile, CAFile: pki.CAFile, ClientID: "pi-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer mq.Close()
	comp, err := fakenucleus.ComponentFromRecipe("../../configs/greengrass/recipe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "gg")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	n, err := fakenucleus.New(fakenucleus.Config{SocketPath: filepath.Join(dir, "ipc.socket"), ThingName: "pi-1",
		MQTT: mq, Components: map[string]fakenucleus.Component{"svcuid-7": comp}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nDone := make(chan error, 1)
	go func() { nDone <- n.Run(ctx) }()
	defer func() { cancel(); <-nDone }()

	cfgJSON, _ := json.Marshal(map[string]any{"services": map[string]string{"SSH": "127.0.0.1:22"}, "max_tunnels": 2.0})
	for _, tt := range []struct {
		name   string
		end    func(*exec.Cmd)
		wantRC int
	}{
		{"IPC socket lost", func(*exec.Cmd) { n.DropConnections() }, 1},
		{"SIGTERM", func(c *exec.Cmd) { _ = c.Process.Signal(syscall.SIGTERM) }, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "greengrass", "--config-json", string(cfgJSON), "--state-dir", t.TempDir())
			cmd.Env = append(os.Environ(), "TUNNEL_AGENT_TEST_MAIN=1", greengrass.EnvSocketPath+"="+n.SocketPath(),
				greengrass.EnvAuthToken+"=svcuid-7", greengrass.EnvThingName+"=pi-1")
			out := &tunneltest.SyncBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if !tunneltest.Poll(20*time.Second, func() bool {
				return strings.Contains(out.String(), "subscribed to the notify topic through greengrass ipc")
			}) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("never subscribed:\n%s", out)
			}
			kill := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() }) // bounds the wait for its exit
			defer kill.Stop()
			tt.end(cmd)
			err := cmd.Wait()
			rc := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				rc = ee.ExitCode()
			}
			if rc != tt.wantRC {
				t.Fatalf("exit code %d (%v), want %d:\n%s", rc, err, tt.wantRC, out)
			}
			if strings.Contains(out.String(), "svcuid-7") {
				t.Error("the SVCUID appears in the output")
			}
		})
	}
}
