// Command keyhole is the keyhole CLI: serve, check, audit, token, agent,
// labels, catalog, vault, demo, version. Each subcommand lives in its own
// cmd_*.go file and registers itself in init. Help asked for (-h, --help,
// help) goes to stdout with exit status 0; usage errors go to stderr with
// exit status 2.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes shared by every subcommand.
const (
	exitOK    = 0
	exitDeny  = 1 // keyhole check: a statement was denied
	exitError = 2 // usage or runtime error
)

type command struct {
	summary string
	run     func(args []string) int
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string) int) {
	if _, dup := commands[name]; dup {
		panic("keyhole: duplicate command " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: keyhole <command> [flags]   (keyhole <command> --help for its flags)\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(exitError)
	}
	if isHelp(os.Args[1]) {
		usage(os.Stdout)
		return
	}
	if os.Args[1] == "--version" || os.Args[1] == "-version" {
		os.Exit(runVersion(nil))
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "keyhole: unknown command %q\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(exitError)
	}
	os.Exit(cmd.run(os.Args[2:]))
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// subcommand handles the help and missing-subcommand cases of a command
// with subcommands (keyhole token, agent, catalog, vault). ok is false when
// the command should return code right away.
func subcommand(args []string, usage string, stdout, stderr io.Writer) (code int, ok bool) {
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, usage)
		return exitError, false
	case isHelp(args[0]):
		fmt.Fprint(stdout, usage)
		return exitOK, false
	}
	return 0, true
}

// cliFlags parses args into fs, printing usage to stdout on -h and errors
// to stderr, and rejects stray positional arguments. ok is false when the
// command should return code right away (help asked for, or a usage error).
func cliFlags(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return exitOK, false
		}
		fmt.Fprintf(stderr, "%s: %v\n%s", fs.Name(), err, usage)
		return exitError, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n%s", fs.Name(), fs.Arg(0), usage)
		return exitError, false
	}
	return exitOK, true
}

// printFlags is flag.PrintDefaults in the CLI's --flag style.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, use := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		const col = 27
		if len(line) < col-1 {
			line += strings.Repeat(" ", col-len(line))
		} else {
			line += "\n" + strings.Repeat(" ", col)
		}
		line += strings.ReplaceAll(use, "\n", "\n"+strings.Repeat(" ", col))
		if f.DefValue != "" && f.DefValue != "false" {
			line += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintln(w, line)
	})
}
