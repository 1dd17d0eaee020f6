package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tunnel-agent/tunnel-agent/platform/greengrass"
)

// event is one line check.js writes.
type event struct {
	Event        string          `json:"event"`
	What         string          `json:"what"`
	Topic        string          `json:"topic"`
	SHA256       string          `json:"sha256"`
	Bytes        int             `json:"bytes"`
	Name         string          `json:"name"`
	Type         string          `json:"type"`
	Description  string          `json:"description"`
	ServiceError json.RawMessage `json:"serviceError"`
	Message      string          `json:"message"`
}

// binaryPayload has every byte value: the base64 path must carry them all.
func binaryPayload() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// largePayload is AWS IoT Core's largest message (128 KiB): about 175 KB of
// base64 inside the IoTCoreMessage JSON.
func largePayload() []byte {
	b := make([]byte, 128<<10)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// expectMessages is how many notify-topic messages the official client waits for.
const expectMessages = 3

func hash(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// runOfficialClient runs check.js as the recipe's component and checks
// every event it reports against what the broker and the watcher saw.
func runOfficialClient(ctx context.Context, r *report, w *world, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "check.js"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		greengrass.EnvSocketPath+"="+w.nucleus.SocketPath(),
		greengrass.EnvAuthToken+"="+w.svcuid,
		greengrass.EnvThingName+"="+thing,
		"GGSDK_DENIED_TOPIC="+deniedTopic(),
		"GGSDK_AUDIT_TOPIC="+auditTopic(),
		"GGSDK_EXPECT_MESSAGES="+fmt.Sprint(expectMessages))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	fmt.Printf("official client: node check.js (aws-iot-device-sdk-v2@%s greengrasscoreipc)\n", sdkVersion)
	o := &official{r: r, w: w, ctx: ctx, stdin: stdin}
	o.read(stdout)
	_ = stdin.Close()
	err = cmd.Wait()
	r.check("official client exits 0", err == nil, fmt.Sprint(err))
	r.check("official client reached the end", o.done, "events: "+strings.Join(o.seen, " "))
	return nil
}

type official struct {
	r        *report
	w        *world
	ctx      context.Context
	stdin    io.Writer
	seen     []string
	messages []event
	done     bool
}

func (o *official) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			o.r.fail("official client output", fmt.Sprintf("not JSON: %.200q", sc.Text()))
			continue
		}
		o.seen = append(o.seen, ev.Event)
		o.handle(ev)
	}
}

func (o *official) handle(ev event) {
	switch ev.Event {
	case "connected":
		o.r.ok("official client: Connect with the SVCUID", "ConnectAck accepted")
	case "subscribed":
		o.r.ok("official client: SubscribeToIoTCore QoS 1 (notify topic)", ev.Topic)
		o.publishAll()
	case "message":
		o.messages = append(o.messages, ev)
		if len(o.messages) == expectMessages {
			o.checkMessages()
		}
	case "denied":
		o.checkDenied(ev)
	case "published":
		p, err := o.w.seen.wait(auditTopic(), 0)
		o.r.check("official client: PublishToIoTCore reaches the broker", err == nil && hash(p) == ev.SHA256,
			fmt.Sprintf("%s, %d bytes %v", ev.Topic, ev.Bytes, err))
		_, _ = io.WriteString(o.stdin, "go\n")
	case "done":
		o.done = true
	default: // fatal, streamError, allowed, ended
		o.r.fail("official client: unexpected "+ev.Event, fmt.Sprintf("%s %s %s %s %s", ev.What, ev.Type, ev.Description, ev.ServiceError, ev.Message))
	}
}

// publishAll makes the broker deliver the notify-topic messages: a real
// notification from OpenTunnel, a binary payload, a 128 KiB payload.
func (o *official) publishAll() {
	if err := o.w.openTunnel(o.ctx); err != nil {
		o.r.fail("OpenTunnel", err.Error())
	}
	if _, err := o.w.seen.wait(notifyTopic(), 0); err != nil {
		o.r.fail("notification on the broker", err.Error())
	}
	for _, p := range [][]byte{binaryPayload(), largePayload()} {
		if err := o.w.watcher.Publish(notifyTopic(), 1, p); err != nil {
			o.r.fail("publish on the notify topic", err.Error())
		}
	}
}

func (o *official) checkMessages() {
	want := map[string]bool{}
	for i := range expectMessages {
		p, err := o.w.seen.wait(notifyTopic(), i)
		if err != nil {
			o.r.fail("notify messages on the broker", err.Error())
			return
		}
		want[hash(p)] = true
	}
	for i, m := range o.messages {
		o.r.check(fmt.Sprintf("official client: IoTCoreMessage %d is what the broker carried", i+1),
			m.Topic == notifyTopic() && want[m.SHA256], fmt.Sprintf("%s, %d bytes", m.Topic, m.Bytes))
	}
}

// checkDenied: a refused Connect is a HandshakeError; a refused operation is
// a modelled service error whose message is the nucleus' text.
func (o *official) checkDenied(ev event) {
	if strings.HasPrefix(ev.What, "connect") {
		// The nucleus sends ConnectAck without ConnectionAccepted and closes
		// the socket at once: the official client reports whichever it sees
		// first, the ConnectAck (HandshakeError) or the close (NetworkError).
		o.r.check("official client: wrong SVCUID refused", ev.Type == "HandshakeError" ||
			(ev.Type == "NetworkError" && strings.Contains(ev.Description, "connection closed")),
			ev.Type+": "+ev.Description)
		return
	}
	var se struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(ev.ServiceError, &se)
	o.r.check("official client: "+ev.What+" refused", ev.Type == "ServiceError" && se.Message == "Not Authorized",
		fmt.Sprintf("RpcError %s, serviceError %s", ev.Type, ev.ServiceError))
}
