// Package tests holds changeops' end-to-end tests: a real Temporal dev
// server, the real Pulumi engine with a file:// backend and changeops'
// provider, and real git remotes (a bare repository, and git http-backend
// behind basic auth). Nothing here is mocked.
package tests

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/changeops/changeops/internal/devserver"
)

// Shared by every test of the package; set up once in TestMain.
var (
	tools       string // toolchain root (bin/pulumi, bin/temporal, ...)
	binary      string // the changeops command, built for the tests that run it as a process
	temporalURL string // host:port of the dev server's frontend
	pulumiHome  string // one PULUMI_HOME: the provider is installed once
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tools = os.Getenv("CHANGEOPS_TOOLS")
	if tools == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			fmt.Fprintln(os.Stderr, "find toolchain:", err)
			return 1
		}
		tools = filepath.Join(cache, "changeops")
	}
	for _, b := range []string{"temporal", "pulumi", "pulumi-language-yaml", "pulumi-resource-changeops"} {
		if _, err := os.Stat(filepath.Join(tools, "bin", b)); err != nil {
			fmt.Fprintf(os.Stderr, "%s/bin/%s is missing: run scripts/toolchain (make test does)\n", tools, b)
			return 1
		}
	}
	dir, err := os.MkdirTemp("", "changeops-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	pulumiHome = filepath.Join(dir, "pulumi-home")
	binary = filepath.Join(dir, "changeops")
	if out, err := exec.Command("go", "build", "-o", binary, "..").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build changeops: %v\n%s", err, out)
		return 1
	}

	srv, err := devserver.Start(context.Background(), devserver.Options{
		Bin:     filepath.Join(tools, "bin", "temporal"),
		DBFile:  filepath.Join(dir, "temporal.db"),
		IP:      "127.0.0.1",
		Port:    freePort(),
		UIPort:  freePort(),
		LogFile: filepath.Join(dir, "temporal.log"),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start temporal dev server:", err)
		return 1
	}
	defer srv.Stop()
	defer stopGitea() // if a test started it
	temporalURL = srv.Address()
	return m.Run()
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
