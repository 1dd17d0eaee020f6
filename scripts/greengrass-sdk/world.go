package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
	"github.com/tunnel-agent/tunnel-agent/platform/greengrass/fakenucleus"
)

const thing = "gg-core-1"

// world is the emulator (broker + API), the nucleus on its own MQTT
// connection, and a watcher MQTT client.
type world struct {
	emu      *emulator.Emulator
	nucleus  *fakenucleus.Nucleus
	svcuid   string // the component of the recipe
	noAccess string // a component without accessControl
	comp     fakenucleus.Component
	watcher  *fakenucleus.PahoMQTT
	seen     *inbox
	stop     func()
}

// inbox records what the watcher received, by topic.
type inbox struct {
	mu   sync.Mutex
	msgs map[string][][]byte
	ch   chan struct{}
}

func (in *inbox) add(topic string, p []byte) {
	in.mu.Lock()
	in.msgs[topic] = append(in.msgs[topic], bytes.Clone(p))
	in.mu.Unlock()
	select {
	case in.ch <- struct{}{}:
	default:
	}
}

// snapshot returns the messages seen on topic so far.
func (in *inbox) snapshot(topic string) [][]byte {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([][]byte(nil), in.msgs[topic]...)
}

// wait returns the n-th (from 0) message on topic, waiting up to 10 s.
func (in *inbox) wait(topic string, n int) ([]byte, error) {
	deadline := time.After(10 * time.Second)
	for {
		in.mu.Lock()
		if len(in.msgs[topic]) > n {
			p := in.msgs[topic][n]
			in.mu.Unlock()
			return p, nil
		}
		in.mu.Unlock()
		select {
		case <-in.ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return nil, fmt.Errorf("the watcher saw no message %d on %s within 10 s", n+1, topic)
		}
	}
}

func secret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newWorld(ctx context.Context, recipe string) (_ *world, err error) {
	tmp, err := os.MkdirTemp("", "ggsdk") // short: Unix socket paths are limited
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	w := &world{svcuid: secret(), noAccess: secret(), seen: &inbox{msgs: map[string][][]byte{}, ch: make(chan struct{}, 1)}}
	w.stop = func() { cancel(); wg.Wait(); _ = os.RemoveAll(tmp) }
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	if w.comp, err = fakenucleus.ComponentFromRecipe(recipe); err != nil {
		return w, err
	}
	// BrokerAllowAll: a Greengrass core's policy allows more than the
	// emulator's default per-thing policy, and the watcher subscribes to
	// the components' topics.
	if w.emu, err = emulator.New(emulator.Config{StateDir: filepath.Join(tmp, "emu"), BrokerAllowAll: true}); err != nil {
		return w, err
	}
	wg.Go(func() { _ = w.emu.Run(ctx) })
	nucleusMQTT, err := w.dialMQTT(tmp, thing)
	if err != nil {
		return w, err
	}
	if w.watcher, err = w.dialMQTT(tmp, "gg-watcher"); err != nil {
		return w, err
	}
	w.nucleus, err = fakenucleus.New(fakenucleus.Config{
		SocketPath: filepath.Join(tmp, "ipc.socket"), ThingName: thing, MQTT: nucleusMQTT,
		Components: map[string]fakenucleus.Component{w.svcuid: w.comp,
			w.noAccess: {Name: "com.example.NoAccessControl"}},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return w, err
	}
	wg.Go(func() { _ = w.nucleus.Run(ctx); nucleusMQTT.Close() })
	for _, t := range []string{notifyTopic(), auditTopic()} {
		if err := w.watcher.Subscribe(t, 1, w.seen.add); err != nil {
			return w, err
		}
	}
	return w, nil
}

// dialMQTT connects a client for thing to the emulator's broker, retrying
// while the broker starts.
func (w *world) dialMQTT(tmp, name string) (*fakenucleus.PahoMQTT, error) {
	cert, key, err := w.emu.IssueDeviceCert(name, filepath.Join(tmp, name))
	if err != nil {
		return nil, err
	}
	var m *fakenucleus.PahoMQTT
	for range 50 {
		m, err = fakenucleus.DialMQTT(fakenucleus.MQTTDial{Addr: w.emu.MQTTAddr(), CertFile: cert,
			KeyFile: key, CAFile: w.emu.CAFile(), ClientID: name})
		if err == nil {
			return m, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

func (w *world) close() {
	if w.watcher != nil {
		w.watcher.Close()
	}
	w.stop()
}

func notifyTopic() string { return "$aws/things/" + thing + "/tunnels/notify" }
func auditTopic() string  { return "tunnel-agent/" + thing + "/events" }
func deniedTopic() string { return "$aws/things/" + thing + "/jobs/notify" }

// openTunnel calls the emulator's OpenTunnel for thing: the emulator
// publishes the destination token on the notify topic, as AWS does.
func (w *world) openTunnel(ctx context.Context) error {
	in := map[string]any{"destinationConfig": map[string]any{"thingName": thing, "services": []string{"SSH"}}}
	return emulator.CallAPI(ctx, http.DefaultClient, w.emu.APIURL(), emulator.DefaultRegion, "OpenTunnel", in, nil)
}
