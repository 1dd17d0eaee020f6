package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tunnel-agent/tunnel-agent/platform/greengrass"
)

// runOurClient puts platform/greengrass through what the official client
// just did, on the same nucleus, so that the two can be compared line by line.
func runOurClient(ctx context.Context, r *report, w *world) error {
	fmt.Println("our client: platform/greengrass Source (tunnel-agent greengrass)")
	ours(ctx, r, w)
	err := runSource(ctx, w, w.noAccess)
	r.check("our client: SubscribeToIoTCore refused", errors.Is(err, greengrass.ErrUnauthorized) &&
		strings.Contains(err.Error(), "aws.greengrass#UnauthorizedError") && strings.Contains(err.Error(), "Not Authorized"),
		short(err))
	err = runSource(ctx, w, "not-a-svcuid")
	r.check("our client: wrong SVCUID refused", errors.Is(err, greengrass.ErrConnectRejected), short(err))
	return nil
}

// ours subscribes, receives a binary payload, publishes, and is refused a
// publish outside the accessControl.
func ours(ctx context.Context, r *report, w *world) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	src := greengrass.NewSource(greengrass.Config{SocketPath: w.nucleus.SocketPath(), AuthToken: w.svcuid, ThingName: thing})
	got, ready := make(chan []byte, 4), make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(p []byte) bool { got <- p; return true }, func() { ready <- struct{}{} })
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-ready:
		r.ok("our client: SubscribeToIoTCore QoS 1 (notify topic)", notifyTopic())
	case err := <-done:
		r.fail("our client: SubscribeToIoTCore QoS 1 (notify topic)", short(err))
		return
	}
	for _, want := range [][]byte{binaryPayload(), largePayload()} {
		if err := w.watcher.Publish(notifyTopic(), 1, want); err != nil {
			r.fail("publish on the notify topic", err.Error())
		}
		select {
		case p := <-got:
			r.check("our client: IoTCoreMessage is what the broker carried", bytes.Equal(p, want), fmt.Sprintf("%d bytes", len(p)))
		case <-ctx.Done():
			r.fail("our client: IoTCoreMessage is what the broker carried", "nothing delivered")
		}
	}
	n := len(w.seen.snapshot(auditTopic()))
	body := []byte(`{"event":"our-check"}`)
	err := src.Publish(ctx, auditTopic(), body)
	p, werr := w.seen.wait(auditTopic(), n)
	r.check("our client: PublishToIoTCore reaches the broker", err == nil && werr == nil && bytes.Equal(p, body),
		fmt.Sprintf("%s %v %v", auditTopic(), err, werr))
	err = src.Publish(ctx, notifyTopic(), body)
	r.check("our client: PublishToIoTCore "+notifyTopic()+" refused", errors.Is(err, greengrass.ErrUnauthorized) &&
		strings.Contains(err.Error(), "Not Authorized"), short(err))
}

// runSource runs a Source with token until it returns (at most 15 s).
func runSource(ctx context.Context, w *world, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return greengrass.NewSource(greengrass.Config{SocketPath: w.nucleus.SocketPath(), AuthToken: token, ThingName: thing}).
		Run(ctx, func([]byte) bool { return true }, func() {})
}

func short(err error) string {
	s := fmt.Sprint(err)
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}
