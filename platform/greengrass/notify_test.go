package greengrass

import (
	"testing"

	"github.com/tunnel-agent/tunnel-agent/agent/notify"
)

// Source plugs into the agent where the MQTT source would.
var _ notify.Source = (*Source)(nil)

func TestTopicMatchesNotify(t *testing.T) {
	if Topic(testThing) != notify.Topic(testThing) {
		t.Fatalf("Topic = %q, notify.Topic = %q", Topic(testThing), notify.Topic(testThing))
	}
}
