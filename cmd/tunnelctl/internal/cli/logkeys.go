package cli

// Log attribute keys.
const (
	attrErr     = "err"
	attrIdle    = "idle"
	attrService = "service"
	attrSocket  = "socket"
	attrThing   = "thing"
	attrTunnel  = "tunnel"
)
