// Command keyhole is the keyhole CLI: serve, check, audit, token, labels,
// catalog, vault, demo. Each subcommand lives in its own cmd_*.go file and
// registers itself in init.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
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

func usage() {
	fmt.Fprintln(os.Stderr, "usage: keyhole <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
	}
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(exitError)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "keyhole: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(exitError)
	}
	os.Exit(cmd.run(os.Args[2:]))
}

// cliFlags parses args into fs, printing usage on -h and errors on stderr,
// and rejects stray positional arguments. ok is false when the command
// should return code right away (help asked for, or a usage error).
func cliFlags(fs *flag.FlagSet, args []string, usage string, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usage)
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
