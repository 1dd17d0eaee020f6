package audit

// Log attribute keys.
const (
	attrAfterFailures = "after_failures"
	attrDropped       = "dropped"
	attrQueueSize     = "queue_size"
	attrTopic         = "topic"
)
