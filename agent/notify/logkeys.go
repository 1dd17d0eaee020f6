package notify

// Log attribute keys.
const (
	attrAttempt         = "attempt"
	attrBroker          = "broker"
	attrCause           = "cause"
	attrClientID        = "client_id"
	attrErr             = "err"
	attrHint            = "hint"
	attrQoS             = "qos"
	attrRepeatsNotShown = "repeats_not_shown"
	attrRetryIn         = "retry_in"
	attrTopic           = "topic"
)
