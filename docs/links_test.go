// Package docs holds changeops' documentation. Its only Go is this test:
// every relative link in the README and in docs/*.md must reach a file
// that exists, and every #anchor a heading of the page it points at, as
// GitHub renders them.
package docs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// pages are the Markdown files whose links are checked, relative to this
// folder.
func pages(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no docs/*.md found: run the test from the docs folder (go test ./docs/)")
	}
	return append([]string{filepath.Join("..", "README.md")}, docs...)
}

func TestLinksResolve(t *testing.T) {
	t.Parallel()
	for _, p := range pages(t) {
		for _, problem := range checkPage(p) {
			t.Error(problem)
		}
	}
}

// TestIndexListsEveryPage keeps docs/README.md the way in: a page it does
// not link is a page nobody finds.
func TestIndexListsEveryPage(t *testing.T) {
	t.Parallel()
	index, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	linked := map[string]bool{}
	for _, l := range links(string(index)) {
		path, _, _ := strings.Cut(l.target, "#")
		linked[path] = true
	}
	for _, p := range pages(t) {
		if strings.HasPrefix(p, "..") || p == "README.md" {
			continue
		}
		if !linked[p] {
			t.Errorf("docs/README.md does not link %s: add it to the index", p)
		}
	}
}

// TestCheckerFindsBrokenLinks proves the checker fails where it should: a
// missing file, a missing anchor in another page and in the same page.
func TestCheckerFindsBrokenLinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("other.md", "# Other\n\n## The `make dev` step\n\n```sh\n# not a heading\n```\n")
	write("page.md", strings.Join([]string{
		"# Page",
		"",
		"[fine](other.md#the-make-dev-step) and [also fine](#page)",
		"[missing file](nowhere.md) and [missing anchor](other.md#no-such-heading)",
		"[not a heading](other.md#not-a-heading), [here](#nope), `[in code](gone.md)`",
		"",
		"```",
		"[in a fence](gone.md)",
		"```",
		"[external](https://example.com/x.md) [split",
		"over lines](other.md#other)",
	}, "\n"))
	got := checkPage(filepath.Join(dir, "page.md"))
	want := []string{"nowhere.md", "other.md#no-such-heading", "other.md#not-a-heading", "#nope"}
	if len(got) != len(want) {
		t.Fatalf("checker found %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(got[i], "("+w+")") {
			t.Errorf("problem %d is %q, want one about %s", i, got[i], w)
		}
	}
}

func TestSlug(t *testing.T) {
	t.Parallel()
	for heading, want := range map[string]string{
		"`make dev`":                                  "make-dev",
		"Drift: continuous reconciliation":            "drift-continuous-reconciliation",
		"Which `GetVersion` branches remain, and why": "which-getversion-branches-remain-and-why",
		"1. The CLI":                                  "1-the-cli",
		"Order: the watcher and the stack queues":     "order-the-watcher-and-the-stack-queues",
		"Rollback: restore, then revert":              "rollback-restore-then-revert",
		"End to end: `tests/`":                        "end-to-end-tests",
		"The [linked](x.md) part":                     "the-linked-part",
		"snake_case and **bold**":                     "snake_case-and-bold",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

type link struct {
	target string
	line   int
}

var (
	fence      = regexp.MustCompile("^\\s*(```|~~~)")
	codeSpan   = regexp.MustCompile("``[^`]*``|`[^`]*`")
	inlineLink = regexp.MustCompile(`!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refDef     = regexp.MustCompile(`(?m)^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$`)
	heading    = regexp.MustCompile(`^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$`)
	htmlAnchor = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
	scheme     = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// prose blanks fenced code blocks (keeping the lines, for line numbers).
func prose(text string) []string {
	lines := strings.Split(text, "\n")
	in := ""
	for i, l := range lines {
		if m := fence.FindStringSubmatch(l); m != nil {
			switch {
			case in == "":
				in = m[1]
			case in == m[1]:
				in = ""
			}
			lines[i] = ""
			continue
		}
		if in != "" {
			lines[i] = ""
		}
	}
	return lines
}

// links are the link targets of a Markdown text outside code.
func links(text string) []link {
	body := strings.Join(prose(text), "\n")
	// A code span becomes a word of the same lines, so that a link whose
	// text is code still counts and code that looks like a link does not.
	body = codeSpan.ReplaceAllStringFunc(body, func(s string) string {
		return "code" + strings.Repeat("\n", strings.Count(s, "\n"))
	})
	var out []link
	add := func(target string, at int) {
		out = append(out, link{target: target, line: 1 + strings.Count(body[:at], "\n")})
	}
	for _, m := range inlineLink.FindAllStringSubmatchIndex(body, -1) {
		add(body[m[4]:m[5]], m[0])
	}
	for _, m := range refDef.FindAllStringSubmatchIndex(body, -1) {
		add(body[m[2]:m[3]], m[0])
	}
	slices.SortStableFunc(out, func(a, b link) int { return a.line - b.line })
	return out
}

// anchors are the fragments a page's headings (and HTML anchors) answer
// to, numbered for repeats as GitHub numbers them.
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range prose(text) {
		for _, m := range htmlAnchor.FindAllStringSubmatch(l, -1) {
			out[m[1]] = true
		}
		m := heading.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s := slug(m[1])
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

var linkText = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)

// slug is GitHub's anchor for a heading: its text as rendered, lower
// case, without punctuation but - and _, spaces turned into -.
func slug(h string) string {
	h = linkText.ReplaceAllString(h, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// checkPage returns one line per link of the page that does not resolve.
func checkPage(page string) []string {
	text, err := os.ReadFile(page)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, l := range links(string(text)) {
		if scheme.MatchString(l.target) || strings.HasPrefix(l.target, "//") {
			continue // another site: not checked here
		}
		path, frag, _ := strings.Cut(l.target, "#")
		target := page
		if path != "" {
			target = filepath.Join(filepath.Dir(page), filepath.FromSlash(path))
		}
		info, err := os.Stat(target)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s:%d: link (%s): %s does not exist", page, l.line, l.target, target))
			continue
		}
		if frag == "" {
			continue
		}
		if info.IsDir() || !strings.HasSuffix(target, ".md") {
			problems = append(problems, fmt.Sprintf("%s:%d: link (%s): %s is not a Markdown page, so it has no anchor #%s", page, l.line, l.target, target, frag))
			continue
		}
		body, err := os.ReadFile(target)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s:%d: link (%s): %v", page, l.line, l.target, err))
			continue
		}
		if !anchors(string(body))[frag] {
			problems = append(problems, fmt.Sprintf("%s:%d: link (%s): %s has no heading with the anchor #%s", page, l.line, l.target, target, frag))
		}
	}
	return problems
}
