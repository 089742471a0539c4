// Package notify sends a change run's step messages to people: always to the
// log, and to Slack when a bot token is configured. A notifier that fails is
// reported to the caller, which retries and then gives up; a notification
// never decides the outcome of a change.
package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Event is one step of a change run, as people should hear of it. It holds
// no secrets: workflows build it from recorded results only.
type Event struct {
	RunID   string
	Branch  string
	Commit  string
	Subject string
	Author  string
	Stacks  []string
	State   string
	// Step says what happened ("plan ready", "approved by alice").
	Step string
	// Detail is optional longer text (a plan summary, a failure reason).
	Detail string
	// URL links to the run in the Temporal UI.
	URL string
}

// ShortSHA returns the first 7 characters of a commit.
func ShortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// Text renders the event as plain text (console, Slack fallback).
func (e Event) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s %q (%s): %s", e.State, ShortSHA(e.Commit), e.Subject, strings.Join(e.Stacks, ", "), e.Step)
	if e.Detail != "" {
		b.WriteString("\n")
		b.WriteString(e.Detail)
	}
	if e.URL != "" {
		b.WriteString("\n")
		b.WriteString(e.URL)
	}
	return b.String()
}

// Notifier delivers events.
type Notifier interface {
	Notify(ctx context.Context, e Event) error
}

// Multi sends to every notifier and joins their errors.
type Multi []Notifier

func (m Multi) Notify(ctx context.Context, e Event) error {
	var errs []error
	for _, n := range m {
		if err := n.Notify(ctx, e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
