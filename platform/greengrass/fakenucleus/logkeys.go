package fakenucleus

// Log attribute keys.
const (
	logKeyComponent = "component"
	logKeyErr       = "err"
	logKeyVersion   = "version"
	logKeyWhy       = "why"
)
