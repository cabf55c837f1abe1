package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

func init() {
	register("demo", "play scripted Postgres and MySQL agent sessions through keyhole (scripts/demo.sh)", runDemo)
}

const demoUsage = `usage: keyhole demo [--keep]

demo runs scripts/demo.sh from the keyhole source tree (found next to the
keyhole binary's bin/ directory, or from the current directory). Postgres:
it loads a small labelled database on the local Postgres (or a throwaway
cluster), mints an agent token, starts keyhole and plays an agent session
with psql, showing allowed reads, denials with their SQLSTATE 42501 reason
and hint, and the audit log. MySQL: when MariaDB or MySQL runs on
127.0.0.1:3306 with a root login without a password, the same for a MySQL
agent with the mariadb client (errors 1143 for a column, 1142 for a
table); KEYHOLE_DEMO_MYSQL=0 skips it. The demo drops only the databases
and logins it created. --keep leaves keyhole running afterwards.
`

func runDemo(args []string) int {
	for _, a := range args {
		switch a {
		case "--keep", "-keep":
		case "-h", "--help", "help":
			fmt.Fprint(os.Stdout, demoUsage)
			return exitOK
		default:
			fmt.Fprintf(os.Stderr, "keyhole demo: unknown argument %q\n%s", a, demoUsage)
			return exitError
		}
	}
	script := findDemoScript()
	if script == "" {
		fmt.Fprintf(os.Stderr, "keyhole demo: scripts/demo.sh not found; run it from the keyhole source tree\n")
		return exitError
	}
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "keyhole demo: %v\n", err)
		return exitError
	}
	return exitOK
}

// findDemoScript looks for scripts/demo.sh beside the binary's directory
// (bin/keyhole in the source tree) and in the current directory.
func findDemoScript() string {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			dirs = append(dirs, filepath.Dir(filepath.Dir(exe)))
		}
	}
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	for _, d := range dirs {
		p := filepath.Join(d, "scripts", "demo.sh")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}
