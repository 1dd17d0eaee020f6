// Package cmddoc renders man pages (roff) and shell completions (bash, zsh,
// fish) from a program's own flag definitions: a *flag.FlagSet per command,
// or the text its -h prints (flag.PrintDefaults), so the documentation cannot
// drift from the flags the program accepts.
package cmddoc

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Flag is one documented flag.
type Flag struct {
	Name    string // without dashes
	Short   string // one-letter alias, if any (getopt style "-t, --name")
	Arg     string // value placeholder ("string", "duration"); empty for a boolean
	Usage   string
	Default string // empty when none is shown
}

// Command is one subcommand (Name empty for a program without subcommands).
type Command struct {
	Name, Args, Summary string
	Flags               []Flag
}

// Page describes a program for its man page and completions.
type Page struct {
	Program     string
	Section     string // "1" user command, "8" system daemon
	Summary     string // one line, for NAME
	Description []string
	Commands    []Command
	// Sections are extra man sections in order (title, then paragraphs).
	Sections [][]string
	SeeAlso  []string
	Version  string
}

// FlagsOf lists the flags of fs in lexical order.
func FlagsOf(fs *flag.FlagSet) []Flag {
	var out []Flag
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if isBool(f) {
			arg = ""
		}
		def := f.DefValue
		if def == "false" || def == "0" || def == "[]" || def == "0s" {
			def = ""
		}
		out = append(out, Flag{Name: f.Name, Arg: arg, Usage: usage, Default: def})
	})
	return out
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// ParseDefaults parses the output of flag.PrintDefaults (also when other text
// surrounds it) into flags.
func ParseDefaults(text string) []Flag {
	var out []Flag
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if m := getoptLine.FindStringSubmatch(line); m != nil { // "  -t, --name ARG   usage"
			out = append(out, Flag{Short: m[1], Name: m[2], Arg: m[3], Usage: m[4]})
			continue
		}
		switch {
		case strings.HasPrefix(line, "  -") && !strings.HasPrefix(line, "  --"):
			spec := line[3:]
			usage := ""
			if i := strings.IndexByte(spec, '\t'); i >= 0 { // "-v\tusage" (short boolean)
				spec, usage = spec[:i], strings.TrimSpace(spec[i+1:])
			}
			name, arg, _ := strings.Cut(spec, " ")
			out = append(out, Flag{Name: name, Arg: arg, Usage: usage})
		case strings.HasPrefix(line, "    \t") && len(out) > 0:
			f := &out[len(out)-1]
			f.Usage = strings.TrimSpace(f.Usage + " " + strings.TrimSpace(line))
		}
	}
	for i := range out {
		out[i].Usage, out[i].Default = splitDefault(out[i].Usage)
	}
	return out
}

var getoptLine = regexp.MustCompile(`^  -(\w), --([\w-]+)(?: (\S+))?\s{2,}(\S.*)$`)

// splitDefault separates PrintDefaults' trailing "(default X)".
func splitDefault(usage string) (string, string) {
	if !strings.HasSuffix(usage, ")") {
		return usage, ""
	}
	i := strings.LastIndex(usage, " (default ")
	if i < 0 {
		return usage, ""
	}
	return usage[:i], strings.Trim(usage[i+len(" (default "):len(usage)-1], `"`)
}

func (p Page) commandNames() []string {
	var names []string
	for _, c := range p.Commands {
		if c.Name != "" {
			names = append(names, c.Name)
		}
	}
	return names
}

func flagWords(fs []Flag) string {
	var w []string
	for _, f := range fs {
		w = append(w, "--"+f.Name)
	}
	return strings.Join(w, " ")
}

// WriteBash writes a bash completion script (complete -F).
func (p Page) WriteBash(w io.Writer) error {
	fn := "_" + strings.ReplaceAll(p.Program, "-", "_")
	var b strings.Builder
	fmt.Fprintf(&b, "# bash completion for %s (generated from its flags: %s completion bash)\n", p.Program, p.Program)
	fmt.Fprintf(&b, "%s() {\n\tlocal cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]}\n", fn)
	fmt.Fprintf(&b, "\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n\t\treturn\n\tfi\n",
		strings.Join(p.commandNames(), " "))
	b.WriteString("\tcase \"$cmd\" in\n")
	for _, c := range p.Commands {
		if c.Name == "" {
			continue
		}
		fmt.Fprintf(&b, "\t%s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", c.Name, flagWords(c.Flags)+" "+valueWords(c))
	}
	b.WriteString("\tesac\n\t[[ \"$cur\" == -* ]] || compopt -o default 2>/dev/null\n}\n")
	fmt.Fprintf(&b, "complete -F %s %s\n", fn, p.Program)
	_, err := io.WriteString(w, b.String())
	return err
}

// valueWords are fixed positional words, e.g. "bash zsh fish" from Args "bash|zsh|fish".
func valueWords(c Command) string {
	if strings.ContainsAny(c.Args, "-[ ") || !strings.Contains(c.Args, "|") {
		return ""
	}
	return strings.ReplaceAll(c.Args, "|", " ")
}

// WriteZsh writes a zsh completion function (#compdef).
func (p Page) WriteZsh(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "#compdef %s\n# zsh completion for %s (generated from its flags: %s completion zsh)\n", p.Program, p.Program, p.Program)
	b.WriteString("local -a commands\ncommands=(\n")
	for _, c := range p.Commands {
		if c.Name != "" {
			fmt.Fprintf(&b, "\t%s\n", zshQuote(c.Name+":"+c.Summary))
		}
	}
	b.WriteString(")\nif (( CURRENT == 2 )); then\n\t_describe command commands\n\treturn\nfi\ncase $words[2] in\n")
	for _, c := range p.Commands {
		if c.Name == "" {
			continue
		}
		fmt.Fprintf(&b, "%s)\n\t_arguments", c.Name)
		for _, f := range c.Flags {
			spec := "--" + f.Name + "[" + zshEscape(f.Usage) + "]"
			if f.Arg != "" {
				spec += ":" + f.Arg + ":_files"
			}
			fmt.Fprintf(&b, " \\\n\t\t%s", zshQuote(spec))
		}
		if v := valueWords(c); v != "" {
			fmt.Fprintf(&b, " \\\n\t\t%s", zshQuote("1:"+c.Args+":("+v+")"))
		}
		b.WriteString(" '*:file:_files'\n\t;;\n")
	}
	b.WriteString("esac\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func zshEscape(s string) string {
	return strings.NewReplacer("[", `\[`, "]", `\]`, ":", `\:`).Replace(s)
}

func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// WriteFish writes fish completions.
func (p Page) WriteFish(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# fish completion for %s (generated from its flags: %s completion fish)\n", p.Program, p.Program)
	cmds := strings.Join(p.commandNames(), " ")
	for _, c := range p.Commands {
		if c.Name == "" {
			continue
		}
		fmt.Fprintf(&b, "complete -c %s -f -n 'not __fish_seen_subcommand_from %s' -a %s -d %s\n",
			p.Program, cmds, c.Name, zshQuote(c.Summary))
		for _, f := range c.Flags {
			req := ""
			if f.Arg != "" {
				req = " -r"
			}
			fmt.Fprintf(&b, "complete -c %s -n '__fish_seen_subcommand_from %s' -l %s%s -d %s\n",
				p.Program, c.Name, f.Name, req, zshQuote(f.Usage))
		}
		if v := valueWords(c); v != "" {
			fmt.Fprintf(&b, "complete -c %s -f -n '__fish_seen_subcommand_from %s' -a %s\n", p.Program, c.Name, zshQuote(v))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
