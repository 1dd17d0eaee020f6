package localproxy

import (
	"fmt"
	"strings"
)

// option is one option of the C++ localproxy command line.
type option struct {
	long   string
	short  byte // 0: long form only
	hasArg bool
	help   string
}

// options are the C++ localproxy's options (PROTOCOL.md §9.1 item 8), including
// those tunnelctl refuses: the refusal names them instead of "unknown option".
var options = []option{
	{"help", 'h', false, "show this help and exit"},
	{"version", 'V', false, "print the version and exit"},
	{"access-token", 't', true, "refused: set AWSIOT_TUNNEL_ACCESS_TOKEN (argv is visible in ps)"},
	{"client-token", 'i', true, "refused: set AWSIOT_TUNNEL_CLIENT_TOKEN (argv is visible in ps)"},
	{"proxy-endpoint", 'e', true, "data-plane endpoint host[:port] (env AWSIOT_TUNNEL_ENDPOINT); one of -e and -r"},
	{"region", 'r', true, "region of the tunnel, e.g. us-east-1 (env AWSIOT_TUNNEL_REGION); one of -e and -r"},
	{"source-listen-port", 's', true, "source mode: PORT or SVC1=PORT1,SVC2=PORT2 (port 0: any free port)"},
	{"destination-app", 'd', true, "destination mode: HOST:PORT, PORT or /unix.sock, or SVC1=HOST:PORT,SVC2=PORT,SVC3=/path.sock"},
	{"local-bind-address", 'b', true, "source mode: address to listen on (default localhost)"},
	{"capath", 'c', true, "directory of PEM CA certificates trusted in addition to the system roots"},
	{"no-ssl-host-verify", 'k', false, "refused: pass the endpoint's CA with -c instead"},
	{"verbose", 'v', true, "log level on stderr: 0 off, 1 fatal, 2 error, 3 warn, 4 info (default), 5 debug, 6+ trace"},
	{"mode", 'm', true, "src|source|dst|destination; must agree with -s/-d"},
	{"destination-client-type", 'y', true, "source mode: V1 or V2 for old destinations; any other value means V3"},
	{"config", 0, true, "refused: pass the settings as flags"},
	{"config-dir", 0, true, "refused: pass the settings as flags"},
	{"settings-json", 0, true, "refused: pass the settings as flags"},
	{"export-default-settings", 0, true, "refused: pass the settings as flags"},
}

// given are the options given, by long name. Values are never part of an
// error message: a misplaced token must not be echoed.
type given map[string]string

// scan parses args the way boost::program_options does for the
// C++ localproxy: -x VALUE, -xVALUE, --long VALUE, --long=VALUE, grouped
// short switches (-hV) and unambiguous prefixes of long names (--reg).
func scan(args []string) (given, error) {
	got := given{}
	for i := 0; i < len(args); i++ {
		if args[i] == "--" {
			if i+1 < len(args) {
				return nil, errPositional(i + 2)
			}
			break
		}
		opt, val, hasVal, grouped, err := splitOption(args[i], i+1)
		if err != nil {
			return nil, err
		}
		if opt.hasArg && !hasVal {
			if i+1 >= len(args) {
				return nil, usageError("option %s needs a value", optName(opt))
			}
			i++
			val = args[i]
		}
		for _, o := range append([]*option{opt}, grouped...) {
			if _, dup := got[o.long]; dup {
				return nil, usageError("option %s given more than once", optName(o))
			}
			got[o.long] = val
			val = ""
		}
	}
	return got, nil
}

// splitOption reads the option in arg (at position pos): its value when
// attached (-xV, --long=V) and the switches grouped after a short one (-hV).
// A refused option is an error before its value is looked at.
func splitOption(arg string, pos int) (opt *option, val string, hasVal bool, grouped []*option, err error) {
	switch {
	case strings.HasPrefix(arg, "--"):
		name, v, eq := strings.Cut(arg[2:], "=")
		if opt, err = lookupLong(name); err != nil {
			return nil, "", false, nil, err
		}
		if err = refused(opt); err == nil && eq && !opt.hasArg {
			err = usageError("option --%s takes no value", opt.long)
		}
		return opt, v, eq, nil, err
	case strings.HasPrefix(arg, "-") && len(arg) > 1:
		if opt = lookupShort(arg[1]); opt == nil {
			return nil, "", false, nil, usageError("unknown option -%c (see -h)", arg[1])
		}
		if err = refused(opt); err != nil {
			return nil, "", false, nil, err
		}
		if rest := arg[2:]; rest != "" && opt.hasArg {
			return opt, rest, true, nil, nil
		}
		for _, c := range []byte(arg[2:]) {
			o := lookupShort(c)
			if o == nil || o.hasArg {
				return nil, "", false, nil, usageError("unknown option -%c in %s (only switches can be grouped)", c, optName(opt))
			}
			if err = refused(o); err != nil {
				return nil, "", false, nil, err
			}
			grouped = append(grouped, o)
		}
		return opt, "", false, grouped, nil
	}
	return nil, "", false, nil, errPositional(pos)
}

func errPositional(pos int) error {
	return usageError("unexpected argument at position %d: localproxy takes options only", pos)
}

func lookupShort(c byte) *option {
	for i := range options {
		if options[i].short == c {
			return &options[i]
		}
	}
	return nil
}

// lookupLong finds an option by its long name or an unambiguous prefix of it.
func lookupLong(name string) (*option, error) {
	var match *option
	n := 0
	for i := range options {
		o := &options[i]
		if o.long == name {
			return o, nil
		}
		if name != "" && strings.HasPrefix(o.long, name) {
			match, n = o, n+1
		}
	}
	switch {
	case n == 1:
		return match, nil
	case n > 1:
		return nil, usageError("option --%s is ambiguous (see -h)", name)
	}
	return nil, usageError("unknown option --%s (see -h)", name)
}

func optName(o *option) string {
	if o.short != 0 {
		return fmt.Sprintf("-%c/--%s", o.short, o.long)
	}
	return "--" + o.long
}

// refused explains why tunnelctl does not take an option of the C++ localproxy.
func refused(o *option) error {
	switch o.long {
	case "access-token":
		return usageError("-t/--access-token is refused: tokens are never taken from the command line " +
			"(other users see it in ps); set the AWSIOT_TUNNEL_ACCESS_TOKEN environment variable instead")
	case "client-token":
		return usageError("-i/--client-token is refused: tokens are never taken from the command line " +
			"(other users see it in ps); set the AWSIOT_TUNNEL_CLIENT_TOKEN environment variable instead")
	case "no-ssl-host-verify":
		return usageError("-k/--no-ssl-host-verify is not supported: pass the directory holding the " +
			"endpoint's CA certificate with -c DIR instead")
	case "config", "config-dir", "settings-json", "export-default-settings":
		return usageError("--%s is not supported by tunnelctl localproxy: pass the settings as flags", o.long)
	}
	return nil
}

// Usage is the -h text.
func Usage() string {
	var b strings.Builder
	b.WriteString("Usage: tunnelctl localproxy [options]   (or: localproxy [options], via a symlink)\n" +
		"  the AWS IoT Secure Tunneling local proxy with the C++ localproxy's command line\n" +
		"  token: environment AWSIOT_TUNNEL_ACCESS_TOKEN (and optional AWSIOT_TUNNEL_CLIENT_TOKEN)\n" +
		"  web proxy: environment https_proxy / HTTPS_PROXY (NO_PROXY honoured)\n\nOptions:\n")
	for _, o := range options {
		name := "    --" + o.long
		if o.short != 0 {
			name = fmt.Sprintf("-%c, --%s", o.short, o.long)
		}
		if o.hasArg {
			name += " ARG"
		}
		fmt.Fprintf(&b, "  %-34s %s\n", name, o.help)
	}
	return b.String()
}
