package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/internal/atomicfile"
)

func init() {
	register("reviewers", "console users: add, token, remove (console.users_file)", runReviewers)
}

const reviewersUsage = `usage:
  keyhole reviewers add --file FILE --name NAME --role viewer|approver < PASSWORD
      add a reviewer (or set its role and password); the password (at least
      12 characters) is read from the first line of stdin and kept as an
      argon2id hash
  keyhole reviewers token --file FILE --name NAME --token-name LABEL
      make an API token for the reviewer (the CLI's KEYHOLE_API_TOKEN); it
      is printed once, only its SHA-256 is kept
  keyhole reviewers remove --file FILE --name NAME

FILE is console.users_file of keyhole.yaml; keyhole reloads it when it
changes (a removed reviewer's console sessions end at their next request).
`

func runReviewers(args []string) int { return reviewersMain(args, os.Stdin, os.Stdout, os.Stderr) }

func reviewersMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if code, ok := subcommand(args, reviewersUsage, stdout, stderr); !ok {
		return code
	}
	sub := args[0]
	fs := flag.NewFlagSet("keyhole reviewers "+sub, flag.ContinueOnError)
	file := fs.String("file", "", "")
	name := fs.String("name", "", "")
	role := fs.String("role", "", "")
	tokName := fs.String("token-name", "", "")
	if code, ok := cliFlags(fs, args[1:], reviewersUsage, stdout, stderr); !ok {
		return code
	}
	if *file == "" || *name == "" {
		fmt.Fprintf(stderr, "keyhole reviewers %s: --file and --name are required\n%s", sub, reviewersUsage)
		return exitError
	}
	f, err := readUsers(*file)
	if err != nil {
		fmt.Fprintf(stderr, "keyhole reviewers: %v\n", err)
		return exitError
	}
	u := f.Reviewers[*name]
	switch sub {
	case "add":
		if *role != admin.RoleViewer && *role != admin.RoleApprover {
			fmt.Fprintf(stderr, "keyhole reviewers add: --role viewer or approver\n")
			return exitError
		}
		line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(stderr, "keyhole reviewers add: read password: %v\n", err)
			return exitError
		}
		hash, err := admin.HashPassword(strings.TrimRight(line, "\r\n"))
		if err != nil {
			fmt.Fprintf(stderr, "keyhole reviewers add: %v\n", err)
			return exitError
		}
		if u == nil {
			u = &admin.User{}
			f.Reviewers[*name] = u
		}
		u.Role, u.Password = *role, hash
	case "token":
		if u == nil {
			fmt.Fprintf(stderr, "keyhole reviewers token: no reviewer %s (add it first)\n", *name)
			return exitError
		}
		if *tokName == "" {
			fmt.Fprintf(stderr, "keyhole reviewers token: --token-name is required (what the token is for)\n")
			return exitError
		}
		tok, hash := admin.NewAPIToken()
		u.Tokens = append(u.Tokens, admin.APIToken{Name: *tokName, SHA256: hash})
		defer fmt.Fprintln(stdout, tok)
	case "remove":
		if u == nil {
			fmt.Fprintf(stderr, "keyhole reviewers remove: no reviewer %s\n", *name)
			return exitError
		}
		delete(f.Reviewers, *name)
	default:
		fmt.Fprintf(stderr, "keyhole reviewers: unknown subcommand %q\n%s", sub, reviewersUsage)
		return exitError
	}
	data, err := f.Marshal()
	if err == nil {
		_, err = admin.ParseUsers(data)
	}
	if err == nil {
		err = atomicfile.Write(*file, data, 0o600)
	}
	if err != nil {
		fmt.Fprintf(stderr, "keyhole reviewers: %v\n", err)
		return exitError
	}
	return exitOK
}

func readUsers(path string) (*admin.UsersFile, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &admin.UsersFile{Reviewers: map[string]*admin.User{}}, nil
	}
	if err != nil {
		return nil, err
	}
	return admin.ParseUsers(data)
}
