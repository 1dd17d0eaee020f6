// Package memlimit gives the Go runtime a soft memory limit suited to small
// devices unless the operator chose one with GOMEMLIMIT.
//
// With only GOGC=100 the heap grows to twice what is live before a
// collection, and the runtime returns freed pages to the kernel slowly, so a
// process that once moved a burst of data keeps the high-water mark resident.
// A soft limit (debug.SetMemoryLimit) makes the collector run earlier and
// return memory sooner as the process nears it. It is soft: a process whose
// live data exceeds it keeps working (the collector then uses at most about
// half the CPU), so the limit must sit above what is live under full load.
package memlimit

import "runtime/debug"

// EnvVar is the runtime's own setting; when set, the runtime has applied it
// and the default is not used (GOMEMLIMIT=off turns the limit off).
const EnvVar = "GOMEMLIMIT"

// Apply sets limit (bytes) as the soft memory limit unless getenv(EnvVar)
// is set, and returns the limit in effect (math.MaxInt64: none) and where
// it came from (EnvVar or "default"). Call it first thing in main.
func Apply(limit int64, getenv func(string) string) (int64, string) {
	if getenv(EnvVar) != "" {
		return debug.SetMemoryLimit(-1), EnvVar
	}
	debug.SetMemoryLimit(limit)
	return limit, "default"
}
