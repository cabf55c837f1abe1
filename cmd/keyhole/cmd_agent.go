package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/keyholedb/keyhole/identity"
)

func init() {
	register("agent", "per-agent credentials: secret", runAgent)
}

const agentUsage = `usage:
  keyhole agent secret --agent NAME [--iterations N] [--mysql]
      print a new random secret for the agent (its database password, for
      SCRAM-SHA-256) and the verifier to store in keyhole's identity config
      (scram.verifiers or scram.verifiers_file). With --mysql, also the
      MySQL verifier of the same secret (mysql.verifiers or
      mysql.verifiers_file: mysql_native_password and caching_sha2_password).
      keyhole keeps only the verifiers; the secret is shown once.
`

func runAgent(args []string) int { return agentMain(args, os.Stdout, os.Stderr) }

func agentMain(args []string, stdout, stderr io.Writer) int {
	if code, ok := subcommand(args, agentUsage, stdout, stderr); !ok {
		return code
	}
	if args[0] != "secret" {
		fmt.Fprintf(stderr, "keyhole agent: unknown subcommand %q\n%s", args[0], agentUsage)
		return exitError
	}
	fs := flag.NewFlagSet("keyhole agent secret", flag.ContinueOnError)
	agent := fs.String("agent", "", "agent name")
	iter := fs.Int("iterations", identity.DefaultSCRAMIter, "PBKDF2 iterations (at least 4096, RFC 7677)")
	withMySQL := fs.Bool("mysql", false, "also print the MySQL verifier (identity mysql.verifiers)")
	if code, ok := cliFlags(fs, args[1:], agentUsage, stdout, stderr); !ok {
		return code
	}
	if *agent == "" {
		fmt.Fprintf(stderr, "keyhole agent secret: --agent is required\n%s", agentUsage)
		return exitError
	}
	if *iter < identity.DefaultSCRAMIter {
		fmt.Fprintf(stderr, "keyhole agent secret: --iterations must be at least %d\n", identity.DefaultSCRAMIter)
		return exitError
	}
	secret := identity.NewSecret()
	v, err := identity.NewVerifier(secret, *iter)
	if err != nil {
		fmt.Fprintf(stderr, "keyhole agent secret: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "# agent %s: give the secret to the agent as its password; it is not stored.\n", *agent)
	fmt.Fprintf(stdout, "secret: %s\n", secret)
	fmt.Fprintf(stdout, "# add to the identity config, scram.verifiers (or the verifiers_file map):\n")
	fmt.Fprintf(stdout, "%s: %s\n", strconv.Quote(*agent), strconv.Quote(v.Encode()))
	if *withMySQL {
		fmt.Fprintf(stdout, "# add to the identity config, mysql.verifiers (or the verifiers_file map):\n")
		fmt.Fprintf(stdout, "%s: %s\n", strconv.Quote(*agent), strconv.Quote(identity.NewMySQLVerifier(secret).Encode()))
	}
	return exitOK
}
