package cmddoc

import (
	"bytes"
	"flag"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseDefaultsMatchesFlagsOf(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("bind", "127.0.0.1", "local `address` to listen on")
	fs.Bool("v", false, "debug logging")
	fs.Bool("json", false, "print JSON\nover two lines")
	fs.Int("conn-buffer", 16, "MiB per connection")
	fs.Duration("timeout", 0, "how long")
	var b bytes.Buffer
	fs.SetOutput(&b)
	fs.PrintDefaults()
	got := ParseDefaults("Usage: x\n\nFlags:\n" + b.String())
	want := []Flag{
		{Name: "bind", Arg: "address", Usage: "local address to listen on", Default: "127.0.0.1"},
		{Name: "conn-buffer", Arg: "int", Usage: "MiB per connection", Default: "16"},
		{Name: "json", Usage: "print JSON over two lines"},
		{Name: "timeout", Arg: "duration", Usage: "how long"},
		{Name: "v", Usage: "debug logging"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseDefaults:\n got %+v\nwant %+v", got, want)
	}
	from := FlagsOf(fs)
	for i := range from {
		from[i].Usage = strings.ReplaceAll(from[i].Usage, "\n", " ")
	}
	if !reflect.DeepEqual(from, want) {
		t.Errorf("FlagsOf:\n got %+v\nwant %+v", from, want)
	}
}

func TestParseDefaultsGetoptStyle(t *testing.T) {
	got := ParseDefaults("Options:\n  -h, --help                 show this help\n  -t, --access-token ARG     refused: use the environment\n")
	want := []Flag{{Short: "h", Name: "help", Usage: "show this help"}, {Short: "t", Name: "access-token", Arg: "ARG", Usage: "refused: use the environment"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestManEscapesAndListsFlags(t *testing.T) {
	p := Page{Program: "prog", Section: "1", Summary: "does things", Description: []string{".starts with a dot", `back\slash`},
		Commands: []Command{{Name: "run", Flags: []Flag{{Name: "log-level", Arg: "string", Usage: "debug-ish", Default: "info"}, {Name: "v", Usage: "verbose"}}}},
		SeeAlso:  []string{"ssh(1)"}}
	var b bytes.Buffer
	if err := p.WriteMan(&b, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{`.TH PROG 1 "1970-01-01"`, "\n\\&.starts with a dot\n", `back\eslash`,
		`\fB\-\-log\-level\fR \fIstring\fR`, `debug\-ish (default: info)`, `\fB\-v\fR`, ".BR ssh (1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("man page lacks %q:\n%s", want, out)
		}
	}
}
