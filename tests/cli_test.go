package tests

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/changeops/changeops/cmd"
)

// changeops runs the command line against the package's Temporal, as a user
// would, and returns its exit code and output.
func changeops(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return changeopsWithInput(t, "", args...)
}

// changeopsWithInput is changeops with stdin.
func changeopsWithInput(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--address", temporalURL)
	code = cmd.Main(context.Background(), args, cmd.Env{
		Getenv: func(string) string { return "" },
		Stdin:  strings.NewReader(stdin),
		Stdout: &out,
		Stderr: &errOut,
		Tools:  tools,
	})
	return code, out.String(), errOut.String()
}
