package cmd

import (
	"io"
	"log/slog"

	tlog "go.temporal.io/sdk/log"
)

// quietLogger keeps the SDK's connection chatter out of CLI output.
func quietLogger() tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}
