package cli

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// completionShells are the shells `tunnelctl completion` writes scripts for.
var completionShells = []string{"bash", "zsh", "fish", "powershell"}

// Value completions of flags, by flag name.
var (
	flagValues = map[string][]string{
		"mode":                    {"source", "destination", "all"},
		"destination-client-type": {"V1", "V2"},
	}
	fileFlags = map[string]bool{"ca-file": true, "token-file": true, "client-token-file": true, "capath": true}
	dirFlags  = map[string]bool{"token-file-dir": true}
)

// flagInfo is one flag of a command as its help shows it.
type flagInfo struct {
	name, usage string
	value       bool // takes an argument
}

// cmdInfo is one command with its flags.
type cmdInfo struct {
	name, summary string
	flags         []flagInfo
}

func (a *App) cmdCompletion(_ context.Context, g *globals, args []string) error {
	fs := g.flags("completion", a.Stderr, 0)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if g.json {
		return usageError("completion prints a shell script and has no JSON output: drop --json")
	}
	if len(pos) != 1 {
		return usageError("name the shell: %s", strings.Join(completionShells, ", "))
	}
	global, cmds := a.completionModel()
	switch pos[0] {
	case "bash":
		io.WriteString(a.Stdout, "# bash completion for tunnelctl. Load it with: source <(tunnelctl completion bash)\n"+bashScript(global, cmds))
	case "zsh":
		io.WriteString(a.Stdout, "# zsh completion for tunnelctl (through bashcompinit).\n"+
			"# Load it after compinit with: source <(tunnelctl completion zsh)\n"+
			"autoload -U +X bashcompinit && bashcompinit\n"+bashScript(global, cmds))
	case "fish":
		io.WriteString(a.Stdout, fishScript(global, cmds))
	case "powershell":
		io.WriteString(a.Stdout, powershellScript(global, cmds))
	default:
		return usageError("shell %q: use one of %s", pos[0], strings.Join(completionShells, ", "))
	}
	return nil
}

// completionModel reads the global flags and every command's flags from their
// own help output, so the scripts cannot drift from the flag definitions.
func (a *App) completionModel() ([]flagInfo, []cmdInfo) {
	var help tunneltest.SyncBuffer
	(&globals{}).flags("tunnelctl", &help, withJSON|withData).PrintDefaults()
	global := parseFlagHelp(help.String())
	var cmds []cmdInfo
	for _, c := range commands {
		if c.summary == "" {
			continue
		}
		var buf tunneltest.SyncBuffer
		sub := &App{Stdout: &buf, Stderr: &buf, Getenv: func(string) string { return "" }}
		_ = c.run(sub, context.Background(), &globals{}, []string{"-h"})
		flags := parseFlagHelp(buf.String())
		if c.name == "localproxy" {
			flags = parseLongOptions(buf.String())
		}
		cmds = append(cmds, cmdInfo{name: c.name, summary: c.summary, flags: flags})
	}
	return global, cmds
}

var (
	flagHelpRe = regexp.MustCompile(`(?m)^  -([a-zA-Z][\w-]*)( \S+)?\n\s+(.*)$`)
	longOptRe  = regexp.MustCompile(`(?m)^  (?:-\w, )?--([a-z][a-z-]+)( ARG)?\s+(.*)$`)
)

// parseFlagHelp reads the flag package's PrintDefaults format.
func parseFlagHelp(s string) []flagInfo {
	var out []flagInfo
	for _, m := range flagHelpRe.FindAllStringSubmatch(s, -1) {
		out = append(out, flagInfo{name: m[1], value: m[2] != "", usage: firstSentence(m[3])})
	}
	return out
}

// parseLongOptions reads localproxy's "-x, --long ARG  text" help lines.
func parseLongOptions(s string) []flagInfo {
	var out []flagInfo
	for _, m := range longOptRe.FindAllStringSubmatch(s, -1) {
		out = append(out, flagInfo{name: m[1], value: m[2] != "", usage: firstSentence(m[3])})
	}
	return out
}

func firstSentence(s string) string {
	s, _, _ = strings.Cut(s, " (")
	return strings.TrimSpace(s)
}

func flagWords(flags []flagInfo) string {
	w := make([]string, len(flags))
	for i, f := range flags {
		w[i] = "--" + f.name
	}
	return strings.Join(w, " ")
}

func flagCase(names func(string) bool) string {
	var pats []string
	seen := map[string]bool{}
	for n := range fileFlags {
		if names(n) && !seen[n] {
			seen[n] = true
			pats = append(pats, "--"+n, "-"+n)
		}
	}
	for n := range dirFlags {
		if names(n) && !seen[n] {
			seen[n] = true
			pats = append(pats, "--"+n, "-"+n)
		}
	}
	sort.Strings(pats)
	return strings.Join(pats, "|")
}

func bashScript(global []flagInfo, cmds []cmdInfo) string {
	var valued []string
	for _, f := range global {
		if f.value {
			valued = append(valued, "--"+f.name, "-"+f.name)
		}
	}
	var names []string
	for _, c := range cmds {
		names = append(names, c.name)
	}
	var b strings.Builder
	b.WriteString("_tunnelctl() {\n")
	b.WriteString("    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\" cmd=\"\" words=\"\" i\n")
	b.WriteString("    for ((i = 1; i < COMP_CWORD; i++)); do\n        case \"${COMP_WORDS[i]}\" in\n")
	fmt.Fprintf(&b, "            %s) ((i++)) ;;\n", strings.Join(valued, "|"))
	b.WriteString("            -*) ;;\n            *) cmd=\"${COMP_WORDS[i]}\"; break ;;\n        esac\n    done\n")
	b.WriteString("    case \"$prev\" in\n")
	fmt.Fprintf(&b, "        %s) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n", flagCase(func(n string) bool { return fileFlags[n] }))
	fmt.Fprintf(&b, "        %s) COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n", flagCase(func(n string) bool { return dirFlags[n] }))
	for _, n := range sortedKeys(flagValues) {
		fmt.Fprintf(&b, "        --%s|-%s) COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); return ;;\n", n, n, strings.Join(flagValues[n], " "))
	}
	b.WriteString("    esac\n    case \"$cmd\" in\n")
	fmt.Fprintf(&b, "        \"\") if [[ $cur == -* ]]; then words=\"%s\"; else words=\"%s\"; fi ;;\n", flagWords(global), strings.Join(names, " "))
	for _, c := range cmds {
		positional := ""
		if c.name == "completion" {
			positional = strings.Join(completionShells, " ")
		}
		fmt.Fprintf(&b, "        %s) if [[ $cur == -* ]]; then words=\"%s\"; else words=\"%s\"; fi ;;\n", c.name, flagWords(c.flags), positional)
	}
	b.WriteString("    esac\n    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\n")
	b.WriteString("complete -o default -F _tunnelctl tunnelctl\n")
	return b.String()
}

// fishQuote quotes s for fish single quotes.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func fishFlag(b *strings.Builder, cond string, f flagInfo) {
	fmt.Fprintf(b, "complete -c tunnelctl%s -l %s", cond, f.name)
	switch {
	case fileFlags[f.name]:
		b.WriteString(" -r -F")
	case dirFlags[f.name]:
		b.WriteString(" -r -a '(__fish_complete_directories)'")
	case flagValues[f.name] != nil:
		fmt.Fprintf(b, " -x -a %s", fishQuote(strings.Join(flagValues[f.name], " ")))
	case f.value:
		b.WriteString(" -r")
	}
	fmt.Fprintf(b, " -d %s\n", fishQuote(f.usage))
}

func fishScript(global []flagInfo, cmds []cmdInfo) string {
	var b strings.Builder
	b.WriteString("# fish completion for tunnelctl. Load it with: tunnelctl completion fish | source\n")
	b.WriteString("complete -c tunnelctl -f\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "complete -c tunnelctl -n __fish_use_subcommand -a %s -d %s\n", c.name, fishQuote(c.summary))
	}
	for _, f := range global {
		fishFlag(&b, "", f)
	}
	globalSet := map[string]bool{}
	for _, f := range global {
		globalSet[f.name] = true
	}
	for _, c := range cmds {
		cond := fmt.Sprintf(" -n '__fish_seen_subcommand_from %s'", c.name)
		for _, f := range c.flags {
			if !globalSet[f.name] {
				fishFlag(&b, cond, f)
			}
		}
	}
	fmt.Fprintf(&b, "complete -c tunnelctl -n '__fish_seen_subcommand_from completion' -a %s\n", fishQuote(strings.Join(completionShells, " ")))
	return b.String()
}

func psList(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", "''") + "'"
	}
	return "@(" + strings.Join(q, ", ") + ")"
}

func flagNames(flags []flagInfo, onlyValued bool) []string {
	var out []string
	for _, f := range flags {
		if !onlyValued || f.value {
			out = append(out, "--"+f.name)
		}
	}
	return out
}

func powershellScript(global []flagInfo, cmds []cmdInfo) string {
	var b strings.Builder
	b.WriteString("# PowerShell completion for tunnelctl. Load it with (e.g. in $PROFILE):\n")
	b.WriteString("#   tunnelctl completion powershell | Out-String | Invoke-Expression\n")
	b.WriteString("Register-ArgumentCompleter -Native -CommandName 'tunnelctl', 'tunnelctl.exe' -ScriptBlock {\n")
	b.WriteString("    param($wordToComplete, $commandAst, $cursorPosition)\n")
	b.WriteString("    $commands = @{\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "        '%s' = %s\n", c.name, psList(flagNames(c.flags, false)))
	}
	b.WriteString("    }\n")
	fmt.Fprintf(&b, "    $global = %s\n", psList(flagNames(global, false)))
	fmt.Fprintf(&b, "    $globalValued = %s\n", psList(flagNames(global, true)))
	b.WriteString("    $values = @{\n")
	for _, n := range sortedKeys(flagValues) {
		fmt.Fprintf(&b, "        '--%s' = %s\n", n, psList(flagValues[n]))
	}
	b.WriteString("    }\n")
	fmt.Fprintf(&b, "    $shells = %s\n", psList(completionShells))
	b.WriteString(`    $words = @($commandAst.CommandElements | Select-Object -Skip 1 | ForEach-Object { $_.ToString() })
    if ($wordToComplete -ne '' -and $words.Count -gt 0) { $words = @($words[0..($words.Count - 2)]) }
    $cmd = $null
    $skip = $false
    foreach ($w in $words) {
        if ($skip) { $skip = $false; continue }
        if ($globalValued -contains $w) { $skip = $true; continue }
        if ($w -like '-*') { continue }
        $cmd = $w
        break
    }
    $prev = ''
    if ($words.Count -gt 0) { $prev = $words[-1] }
    if ($values.ContainsKey($prev)) { $candidates = $values[$prev] }
    elseif ($null -eq $cmd) {
        if ($wordToComplete -like '-*') { $candidates = $global } else { $candidates = $commands.Keys }
    }
    elseif ($cmd -eq 'completion' -and $wordToComplete -notlike '-*') { $candidates = $shells }
    elseif ($commands.ContainsKey($cmd) -and $wordToComplete -like '-*') { $candidates = $commands[$cmd] }
    else { return }
    $candidates | Where-Object { $_ -like "$wordToComplete*" } | Sort-Object | ForEach-Object {
        [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $_)
    }
}
`)
	return b.String()
}
