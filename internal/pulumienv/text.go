package pulumienv

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/charmbracelet/x/ansi"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag/colors"
)

// Readable is text a terminal program printed as a person reads it in a
// status, a Slack message or an audit record: without escape sequences
// (colours and styles, cursor movement, window titles, hyperlinks: every
// CSI, OSC, DCS and the like, parsed by charmbracelet's ansi package),
// without Pulumi's own colour markup (<{%bold%}>, which colors.Never
// drops), and without other control characters but newlines and tabs. A
// carriage return becomes a newline, as a progress line overwritten in
// place is a line of its own in a log. Pulumi YAML colours its diagnostics
// whatever --color says, so an error would otherwise read
// "\x1b[1;4mchangeops:index:File\x1b[0m".
func Readable(s string) string {
	if !strings.ContainsFunc(s, unwanted) && !strings.Contains(s, "<{%") {
		return s
	}
	s = colors.Never.Colorize(ansi.Strip(s))
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\r':
			return '\n'
		case unwanted(r):
			return -1
		}
		return r
	}, s)
}

// unwanted are the control characters Readable drops: all but newlines
// and tabs (and carriage returns, which it turns into newlines).
func unwanted(r rune) bool { return r != '\n' && r != '\t' && unicode.IsControl(r) }

// Redacted stands for a secret in what the CLI printed.
const Redacted = "[redacted]"

// minSecretLen is the shortest secret masked: a shorter one would mask
// ordinary words of every plan (such a passphrase is a weak one anyway).
const minSecretLen = 6

// secrets are the values changeops hands the CLI that must not come back
// out of it: a program may print its environment, and a service may echo
// a token in an error.
func (e Env) secrets() []string {
	var out []string
	for _, s := range []string{e.Passphrase, e.AccessToken} {
		if len(s) >= minSecretLen {
			out = append(out, spellings(s)...)
		}
	}
	// Longest first, so a spelling that holds another is masked whole.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(out)
}

// spellings are the ways a secret comes back in text: as it is, and as Go
// (%q, %+q), JSON and a URL escape it.
func spellings(s string) []string {
	out := []string{s}
	for _, q := range []string{strconv.Quote(s), strconv.QuoteToASCII(s)} {
		out = append(out, q[1:len(q)-1])
	}
	if j, err := json.Marshal(s); err == nil {
		out = append(out, string(j[1:len(j)-1]))
	}
	return append(out, url.QueryEscape(s), url.PathEscape(s))
}

// readable is Readable with the secrets masked.
func (e Env) readable(s string) string { return mask(Readable(s), e.secrets()) }

func (c command) readable(s string) string { return mask(Readable(s), c.secrets) }

func mask(s string, secrets []string) string {
	for _, v := range secrets {
		s = strings.ReplaceAll(s, v, Redacted)
	}
	return s
}

// lineWriter hands whole lines, made readable, to the writers the
// Automation API streams the CLI's output to (progress heartbeats): an
// escape sequence or a secret split between two writes is still found.
// The rest of a line is handed on by flush, when the CLI has exited.
type lineWriter struct {
	mu  sync.Mutex
	c   command
	out io.Writer
	buf []byte
}

func (c command) lines(ws []io.Writer) *lineWriter {
	return &lineWriter{c: c, out: io.MultiWriter(ws...)}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if i := bytes.LastIndexByte(w.buf, '\n'); i >= 0 {
		_, _ = io.WriteString(w.out, w.c.readable(string(w.buf[:i+1])))
		w.buf = append(w.buf[:0], w.buf[i+1:]...)
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		_, _ = io.WriteString(w.out, w.c.readable(string(w.buf)))
		w.buf = nil
	}
}
