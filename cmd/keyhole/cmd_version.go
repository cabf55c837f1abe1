package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

func init() {
	register("version", "print keyhole's version", runVersion)
}

// version is set at link time (-ldflags "-X main.version=v1.2.3"); without
// it the module version or VCS revision the binary was built from is shown.
var version = ""

func runVersion(args []string) int {
	if len(args) > 0 && !isHelp(args[0]) {
		fmt.Fprintf(os.Stderr, "keyhole version: unexpected argument %q\nusage: keyhole version\n", args[0])
		return exitError
	}
	fmt.Fprintf(os.Stdout, "keyhole %s (%s, %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "(devel)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel " + rev
}
