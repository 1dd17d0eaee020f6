package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// The same end-to-end path with mosquitto instead of the embedded broker.
func TestE2EMosquitto(t *testing.T) {
	p := notifytest.NewPKI(t, thingName)
	m := notifytest.StartMosquitto(t, p, notifytest.MosquittoOptions{Plain: true, Extra: "allow_anonymous true"})
	plain, tlsPort := m.PlainPort, m.TLSPort
	w := newWorld(t, func(c *emulator.Config) {
		c.MQTTURL = fmt.Sprintf("tcp://127.0.0.1:%d", plain)
		c.MQTTPlainAddr = ""
	})
	w.cfg.Cert, w.cfg.Key = p.ClientCertFile, p.ClientKeyFile
	w.mqttHost, w.mqttPort, w.rootCA = "localhost", tlsPort, p.CAFile
	ag := w.startAgent()
	tun := w.open("ECHO", "HTTP")
	src := w.source(tun.srcToken, "ECHO", "HTTP")
	retryEcho(t, src.Addr("ECHO").String())
	if body, err := httpGet(src.Addr("HTTP").String()); err != nil || body != "hello from /hello" {
		t.Fatalf("http through tunnel: %q %v", body, err)
	}

	// Offline delivery through mosquitto's persistent session.
	ag.stop(t)
	tun2 := w.open("HTTP")
	src2 := w.source(tun2.srcToken, "HTTP")
	w.startAgent()
	var err error
	if !tunneltest.Poll(20*time.Second, func() bool {
		var body string
		body, err = httpGet(src2.Addr("HTTP").String())
		return err == nil && body == "hello from /hello"
	}) {
		t.Fatalf("notification published while offline never served: %v", err)
	}
}
