// Package localproxy reads the AWS C++ localproxy's command line and
// environment (PROTOCOL.md §9.1 item 8) into a tunnel session's
// configuration, so that `tunnelctl localproxy` (or tunnelctl invoked as
// "localproxy") is a drop-in for it: the same options, their short and long
// forms, grouped switches and unambiguous long prefixes as
// boost::program_options parses them, the -v levels, the -c CA directory.
// Options that would put a secret in argv (-t, -i) or weaken TLS (-k) are
// refused with a message that says what to do instead.
package localproxy

import "fmt"

// UsageError is a mistake in the command line; Msg says what to change and
// never holds an option's value that could be a secret.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usageError(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}
