package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func init() {
	register("token", "agent tokens: keygen, mint, verify", runToken)
}

const tokenUsage = `usage:
  keyhole token keygen --out FILE
      write a new Ed25519 signing key to FILE (mode 0600) and its public
      key to FILE.pub (for identity.tokens.public_key_file)
  keyhole token mint --token-key FILE --agent NAME [--ttl 15m] [--scope VERB:TABLE[,TABLE...]]... [--purpose TEXT] [--id JTI] [--audience AUD]
      print a signed agent token; each --scope narrows the agent's role to
      that verb on those tables (e.g. --scope select:public.orders,public.customers);
      --purpose names the task (reviewers see it with the agent's access
      requests; it grants nothing)
  keyhole token verify --token-key FILE.pub --agent NAME < TOKEN
      check a token (read from stdin) and print its agent, scope and expiry
`

func runToken(args []string) int {
	return tokenMain(args, os.Stdin, os.Stdout, os.Stderr)
}

func tokenMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if code, ok := subcommand(args, tokenUsage, stdout, stderr); !ok {
		return code
	}
	switch args[0] {
	case "keygen":
		return tokenKeygen(args[1:], stdout, stderr)
	case "mint":
		return tokenMint(args[1:], stdout, stderr)
	case "verify":
		return tokenVerify(args[1:], stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "keyhole token: unknown subcommand %q\n%s", args[0], tokenUsage)
	return exitError
}

func tokenKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keyhole token keygen", flag.ContinueOnError)
	out := fs.String("out", "", "private key file to write (the public key goes to FILE.pub)")
	if code, ok := cliFlags(fs, args, tokenUsage, stdout, stderr); !ok {
		return code
	}
	if *out == "" {
		fmt.Fprintf(stderr, "keyhole token keygen: --out is required\n%s", tokenUsage)
		return exitError
	}
	key, err := identity.GenerateKey()
	if err == nil {
		err = identity.WriteKeyFile(*out, key)
	}
	if err != nil {
		fmt.Fprintf(stderr, "keyhole token keygen: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "private key: %s (keep secret; signs agent tokens)\npublic key:  %s.pub (identity.tokens.public_key_file)\n", *out, *out)
	return exitOK
}

// grantFlags collects repeated --scope flags.
type grantFlags []sqlpolicy.Grant

func (g *grantFlags) String() string { return fmt.Sprint(*g) }
func (g *grantFlags) Set(s string) error {
	gr, err := identity.ParseGrant(s)
	if err != nil {
		return err
	}
	*g = append(*g, gr)
	return nil
}

func tokenMint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keyhole token mint", flag.ContinueOnError)
	keyFile := fs.String("token-key", "", "Ed25519 private key file (from keyhole token keygen)")
	fs.StringVar(keyFile, "key", "", "old name of --token-key")
	agent := fs.String("agent", "", "agent name (the token's subject; the database user the agent connects as)")
	ttl := fs.Duration("ttl", 15*time.Minute, "token lifetime")
	id := fs.String("id", "", "token id (jti); random when empty")
	aud := fs.String("audience", "", "audience (aud) claim, if keyhole is configured to require one")
	purpose := fs.String("purpose", "", "the task the token is for, shown to reviewers (purpose claim)")
	var scope grantFlags
	fs.Var(&scope, "scope", "narrow the role to VERB:TABLE[,TABLE...] (repeatable)")
	if code, ok := cliFlags(fs, args, tokenUsage, stdout, stderr); !ok {
		return code
	}
	if *keyFile == "" || *agent == "" {
		fmt.Fprintf(stderr, "keyhole token mint: --token-key and --agent are required\n%s", tokenUsage)
		return exitError
	}
	key, err := identity.ReadPrivateKeyFile(*keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "keyhole token mint: %v\n", err)
		return exitError
	}
	c := identity.Claims{Agent: *agent, TTL: *ttl, ID: *id, Audience: *aud, Purpose: *purpose}
	if len(scope) > 0 {
		c.Scope = scope
	}
	tok, err := identity.Mint(key, c)
	if err != nil {
		fmt.Fprintf(stderr, "keyhole token mint: %v\n", err)
		return exitError
	}
	// The token alone goes to stdout, so it can be captured into an
	// environment variable or secret store.
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stderr, "token for agent %s expires %s\n", *agent, time.Now().Add(*ttl).UTC().Format(time.RFC3339))
	return exitOK
}

func tokenVerify(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keyhole token verify", flag.ContinueOnError)
	pub := fs.String("token-key", "", "public key file (FILE.pub from keyhole token keygen)")
	fs.StringVar(pub, "pub", "", "old name of --token-key")
	agent := fs.String("agent", "", "the database user the token is presented for")
	if code, ok := cliFlags(fs, args, tokenUsage, stdout, stderr); !ok {
		return code
	}
	if *pub == "" || *agent == "" {
		fmt.Fprintf(stderr, "keyhole token verify: --token-key and --agent are required\n%s", tokenUsage)
		return exitError
	}
	// The token is read from stdin, never the command line, where other
	// users could see it in the process list.
	line, err := bufio.NewReader(io.LimitReader(stdin, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "keyhole token verify: read token: %v\n", err)
		return exitError
	}
	a, err := identity.New(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: *pub}})
	if err != nil {
		fmt.Fprintf(stderr, "keyhole token verify: %v\n", err)
		return exitError
	}
	ag, err := a.Token(*agent, strings.TrimSpace(line))
	if err != nil {
		fmt.Fprintf(stderr, "keyhole token verify: %v\n", err)
		return exitDeny
	}
	fmt.Fprintf(stdout, "agent:   %s\ntoken:   %s\nexpires: %s\n", ag.Name, ag.TokenID, ag.Expires.UTC().Format(time.RFC3339))
	if ag.Purpose != "" {
		fmt.Fprintf(stdout, "purpose: %s\n", ag.Purpose)
	}
	if ag.Scope == nil {
		fmt.Fprintln(stdout, "scope:   (role, not narrowed)")
	}
	for _, g := range ag.Scope {
		fmt.Fprintf(stdout, "scope:   %s %s\n", g.Verb, strings.Join(g.Tables, ", "))
	}
	return exitOK
}
