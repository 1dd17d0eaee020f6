package control

// Log attribute keys.
const (
	attrAddr          = "addr"
	attrErr           = "err"
	attrMetricsListen = "metrics_listen"
)
