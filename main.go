// Command changeops turns every commit merged into an infrastructure repo
// into a durable Temporal workflow: plan with Pulumi, approve, apply,
// verify. See README.md, and docs/ for the rest.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/changeops/changeops/cmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cmd.Main(ctx, os.Args[1:], cmd.Env{
		Getenv: os.Getenv,
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Tools:  toolsDir(),
	}))
}

// toolsDir is where scripts/toolchain installs the pinned binaries.
func toolsDir() string {
	if d := os.Getenv("CHANGEOPS_TOOLS"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "changeops")
	}
	return ".changeops/tools"
}
