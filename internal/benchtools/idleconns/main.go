// Command idleconns holds idle Postgres sessions open so that
// scripts/bench.sh can read a proxy's resident memory per idle session.
// It speaks over stdin/stdout with the script, one line at a time:
//
//  1. it opens one session, runs -query, closes it (so one-time costs of a
//     first session are not counted per session), prints "warm" and waits
//     for a line on stdin;
//  2. it opens -n sessions, runs -query once on each (every session is
//     then fully set up, upstream side included), prints "open N" and
//     waits for stdin to close;
//  3. it closes them and exits.
//
// The connection string is a libpq URL or keyword string; the password
// comes from PGPASSWORD, so that a token stays out of the process list.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func main() {
	dsn := flag.String("dsn", "", "connection `string` (libpq URL or key=value)")
	n := flag.Int("n", 80, "idle sessions to hold")
	query := flag.String("query", "SELECT 1", "statement run once on each session")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	in := bufio.NewReader(os.Stdin)

	c, err := open(ctx, *dsn, *query)
	if err != nil {
		log.Fatalf("warm-up session: %v", err)
	}
	_ = c.Close(ctx)
	fmt.Println("warm")
	if _, err := in.ReadString('\n'); err != nil {
		return
	}

	conns := make([]*pgconn.PgConn, 0, *n)
	for i := range *n {
		c, err := open(ctx, *dsn, *query)
		if err != nil {
			log.Fatalf("session %d: %v", i+1, err)
		}
		conns = append(conns, c)
	}
	fmt.Printf("open %d\n", len(conns))
	// Hold them until the script is done reading memory.
	_, _ = in.ReadString('\n')
	for _, c := range conns {
		_ = c.Close(ctx)
	}
}

func open(ctx context.Context, dsn, query string) (*pgconn.PgConn, error) {
	c, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if _, err := c.Exec(ctx, query).ReadAll(); err != nil {
		c.Close(ctx)
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	return c, nil
}
