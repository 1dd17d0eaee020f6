package cmddoc

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// roff escapes text for a man page: backslashes, dashes (as \-, so they copy
// as ASCII hyphens) and a leading dot or quote.
func roff(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// WriteMan writes the man page. date is the page's date (the build's, for
// reproducible output use the commit time).
func (p Page) WriteMan(w io.Writer, date time.Time) error {
	var b strings.Builder
	up := strings.ToUpper(p.Program)
	fmt.Fprintf(&b, ".\\\" Generated from %s's own flag definitions; do not edit.\n", p.Program)
	fmt.Fprintf(&b, ".TH %s %s %q %q %q\n", up, p.Section, date.UTC().Format("2006-01-02"),
		p.Program+" "+p.Version, "tunnel-agent manual")
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", roff(p.Program), roff(p.Summary))
	b.WriteString(".SH SYNOPSIS\n")
	for _, c := range p.Commands {
		fmt.Fprintf(&b, ".B %s", roff(p.Program))
		if c.Name != "" {
			fmt.Fprintf(&b, " %s", roff(c.Name))
		}
		if c.Args != "" {
			fmt.Fprintf(&b, "\n.I %s", roff(c.Args))
		} else if len(c.Flags) > 0 {
			b.WriteString("\n.RI [ flags ]")
		}
		b.WriteString("\n.br\n")
	}
	b.WriteString(".SH DESCRIPTION\n")
	for i, para := range p.Description {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		b.WriteString(roff(para) + "\n")
	}
	if len(p.Commands) == 1 && p.Commands[0].Name == "" {
		b.WriteString(".SH OPTIONS\n")
		writeFlags(&b, p.Commands[0].Flags)
	} else {
		b.WriteString(".SH COMMANDS\n")
		for _, c := range p.Commands {
			name := c.Name
			if name == "" {
				name = p.Program
			}
			fmt.Fprintf(&b, ".SS %s\n%s\n", roff(strings.TrimSpace(name+" "+c.Args)), roff(c.Summary))
			writeFlags(&b, c.Flags)
		}
	}
	for _, s := range p.Sections {
		fmt.Fprintf(&b, ".SH %s\n", roff(strings.ToUpper(s[0])))
		for i, para := range s[1:] {
			if i > 0 {
				b.WriteString(".PP\n")
			}
			b.WriteString(roff(para) + "\n")
		}
	}
	if len(p.SeeAlso) > 0 {
		b.WriteString(".SH SEE ALSO\n")
		for i, s := range p.SeeAlso {
			name, sect, _ := strings.Cut(strings.TrimSuffix(s, ")"), "(")
			sep := ","
			if i == len(p.SeeAlso)-1 {
				sep = ""
			}
			fmt.Fprintf(&b, ".BR %s (%s)%s\n", roff(name), sect, sep)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeFlags(b *strings.Builder, flags []Flag) {
	for _, f := range flags {
		b.WriteString(".TP\n")
		if f.Short != "" {
			fmt.Fprintf(b, "\\fB\\-%s\\fR, ", roff(f.Short))
		}
		dashes := `\-\-`
		if len(f.Name) == 1 { // Go's flag package takes -v and --v alike; show it as written
			dashes = `\-`
		}
		fmt.Fprintf(b, "\\fB%s%s\\fR", dashes, roff(f.Name))
		if f.Arg != "" {
			fmt.Fprintf(b, " \\fI%s\\fR", roff(f.Arg))
		}
		b.WriteString("\n" + roff(f.Usage))
		if f.Default != "" {
			fmt.Fprintf(b, " (default: %s)", roff(f.Default))
		}
		b.WriteString("\n")
	}
}
