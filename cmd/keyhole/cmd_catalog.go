package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keyholedb/keyhole/catalog"
)

func init() {
	register("catalog", "introspect an upstream database: catalog dump", runCatalog)
}

const catalogUsage = `usage: keyhole catalog dump --dsn URL [--out FILE] [--timeout D]

dump connects to the upstream database as the DSN's login, reads its schema
(relations, columns, comment labels, view definitions, functions, the
login's search_path) and writes it as JSON to FILE or stdout. Leave the
password out of the DSN and set PGPASSWORD to keep it off the command line.
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
	dsn := fs.String("dsn", "", "upstream Postgres connection string (URL or key=value)")
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
	l, err := catalog.InspectPostgresDSN(ctx, *dsn)
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyhole catalog dump: %s\n", redactDSN(err, *dsn))
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

// redactDSN renders err with every form of the DSN's password masked. pgx
// already redacts passwords in its connect and parse errors; this is the
// second lock, for any error text that quotes the DSN or the password (from
// the DSN, PGPASSWORD or a passfile) some other way.
func redactDSN(err error, dsn string) string {
	msg := err.Error()
	var secrets []string
	if cfg, perr := pgconn.ParseConfig(dsn); perr == nil && cfg.Password != "" {
		secrets = append(secrets, cfg.Password)
	}
	if u, perr := url.Parse(dsn); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			secrets = append(secrets, pw)
		}
	}
	for _, s := range secrets {
		for _, form := range []string{s, url.QueryEscape(s), url.PathEscape(s), url.UserPassword("", s).String()[1:]} {
			if form != "" {
				msg = strings.ReplaceAll(msg, form, "xxxxx")
			}
		}
	}
	return msg
}
