package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func init() {
	register("catalog", "introspect an upstream database: catalog dump", runCatalog)
}

const catalogUsage = `usage: keyhole catalog dump --dsn URL [--out FILE] [--timeout D]

dump connects to the upstream database as the DSN's login, reads its schema
(relations, columns, comment labels, view definitions, functions, the
login's search_path or current database) and writes it as JSON to FILE or
stdout. The DSN is a Postgres one (postgres://USER@HOST[:PORT]/DB or
key=value) or a MySQL/MariaDB URL (mysql://USER@HOST[:PORT]/DB, every
database the login sees, names database.table). Leave the password out of
the DSN and set PGPASSWORD or MYSQL_PWD to keep it off the command line.
`

func runCatalog(args []string) int {
	if code, ok := subcommand(args, catalogUsage, os.Stdout, os.Stderr); !ok {
		return code
	}
	switch args[0] {
	case "dump":
		return runCatalogDump(args[1:])
	default:
		fmt.Fprintf(os.Stderr, "keyhole catalog: unknown subcommand %q\n%s", args[0], catalogUsage)
		return exitError
	}
}

func runCatalogDump(args []string) int {
	fs := flag.NewFlagSet("keyhole catalog dump", flag.ContinueOnError)
	dsn := fs.String("dsn", "", "upstream DSN: postgres:// (or key=value) or mysql://")
	out := fs.String("out", "", "output file (default stdout)")
	fs.StringVar(out, "o", "", "short for --out")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if code, ok := cliFlags(fs, args, catalogUsage, os.Stdout, os.Stderr); !ok {
		return code
	}
	if *dsn == "" {
		fmt.Fprintf(os.Stderr, "keyhole catalog dump: --dsn is required\n%s", catalogUsage)
		return exitError
	}
	ctx, stop := catalogContext(*timeout)
	defer stop()
	l, err := inspectDSN(ctx, *dsn)
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyhole catalog dump: %v\n", err)
		return exitError
	}
	catalogPrintWarnings(l.Warnings)
	if *out == "" {
		err = l.Catalog.Save(os.Stdout)
	} else {
		err = l.Catalog.WriteFile(*out)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyhole catalog dump: %v\n", err)
		return exitError
	}
	return exitOK
}

// catalogContext bounds an introspection by timeout and by Ctrl-C.
func catalogContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, func() { cancel(); stop() }
}

func catalogPrintWarnings(ws []string) {
	for _, w := range ws {
		fmt.Fprintf(os.Stderr, "warning: %s\n", w)
	}
}
