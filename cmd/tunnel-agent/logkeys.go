package main

// Log attribute keys.
const (
	attrChanged             = "changed"
	attrConfig              = "config"
	attrErr                 = "err"
	attrLogLevel            = "log_level"
	attrMaxTunnels          = "max_tunnels"
	attrMode                = "mode"
	attrServices            = "services"
	attrThing               = "thing"
	attrVersion             = "version"
	attrMaxConnections      = "max_connections"
	attrMaxTotalConnections = "max_total_connections"
	attrQueueBudget         = "queue_budget"
	attrMemoryLimit         = "memory_limit"
)
