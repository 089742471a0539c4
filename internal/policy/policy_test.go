package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func bucketPlan(public bool) Input {
	acl := "private"
	if public {
		acl = "public-read"
	}
	return Input{
		Commit: Commit{SHA: "3f2a91c0", Subject: "open the bucket", Trailers: map[string][]string{"Ticket": {"OPS-12"}}},
		Stack:  Stack{Name: "web-prod", Labels: map[string]string{"environment": "prod"}},
		Steps: []Step{
			{Op: "create", URN: "urn:pulumi:prod::web::aws:s3/bucket:Bucket::assets", Type: "aws:s3/bucket:Bucket",
				New: map[string]any{"acl": acl}},
			{Op: "delete", URN: "urn:pulumi:prod::web::aws:rds/instance:Instance::db", Type: "aws:rds/instance:Instance",
				Old: map[string]any{"engine": "postgres"}},
		},
	}
}

const bucketsRego = `package changeops.buckets

deny contains {"msg": "buckets must not be public", "resource": s.urn} if {
	some s in input.steps
	s.type == "aws:s3/bucket:Bucket"
	s.new.acl == "public-read"
}

warn contains sprintf("%s is not in a ticket", [input.commit.sha]) if not input.commit.trailers.Ticket

require contains {"group": "dba", "count": 2, "msg": "deletes a database"} if {
	some s in input.steps
	s.op == "delete"
	startswith(s.type, "aws:rds/")
}
`

func compileT(t *testing.T, files ...File) *Set {
	t.Helper()
	s, err := Compile(context.Background(), files, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEvaluateDenyWarnRequire(t *testing.T) {
	t.Parallel()
	s := compileT(t, File{Origin: OriginRepo, Name: "policies/buckets.rego", Source: bucketsRego})
	res, err := s.Evaluate(context.Background(), bucketPlan(true))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deny) != 1 || res.Deny[0].Rule != "buckets.deny" || res.Deny[0].Resource != "urn:pulumi:prod::web::aws:s3/bucket:Bucket::assets" ||
		res.Deny[0].Message != "buckets must not be public" || res.Deny[0].Origin != OriginRepo {
		t.Errorf("deny = %+v", res.Deny)
	}
	if len(res.Warn) != 0 {
		t.Errorf("warn = %+v, want none: the commit has a ticket", res.Warn)
	}
	if len(res.Require) != 1 || res.Require[0].Group != "dba" || res.Require[0].Count != 2 || res.Require[0].Rule != "buckets.require" {
		t.Errorf("require = %+v", res.Require)
	}
	if res.Digest == "" || res.Digest != s.Digest {
		t.Errorf("digest = %q, set's %q", res.Digest, s.Digest)
	}

	in := bucketPlan(false)
	in.Commit.Trailers = nil
	res, err = s.Evaluate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deny) != 0 || len(res.Warn) != 1 || res.Warn[0].Message != "3f2a91c0 is not in a ticket" {
		t.Errorf("private bucket, no ticket: deny %+v warn %+v", res.Deny, res.Warn)
	}
}

// A repository policy cannot take back what an organisation policy says:
// each origin is compiled apart, so redefining the organisation's helper
// or rule in the repository changes nothing of its results.
func TestRepositoryCannotWeakenOrganisation(t *testing.T) {
	t.Parallel()
	org := File{Origin: OriginOrg, Name: "public.rego", Source: `package changeops

exempt contains "nothing"

deny contains "public buckets are forbidden" if {
	some s in input.steps
	s.new.acl == "public-read"
	not exempt[s.urn]
}
`}
	repo := File{Origin: OriginRepo, Name: "policies/weaken.rego", Source: `package changeops

exempt contains s.urn if some s in input.steps

deny := set()
`}
	s := compileT(t, org, repo)
	res, err := s.Evaluate(context.Background(), bucketPlan(true))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deny) != 1 || res.Deny[0].Origin != OriginOrg {
		t.Fatalf("deny = %+v: the organisation's deny must stand", res.Deny)
	}
}

// A broken policy fails closed, naming the file and the line.
func TestBrokenPoliciesFailClosed(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, src, want string }{
		{"syntax", "package changeops\n\ndeny contains msg if {\n\tmsg := \n}\n", "policies/p.rego:5"},
		{"undefined function", "package changeops\n\ndeny contains msg if {\n\tmsg := no_such(input)\n}\n", "policies/p.rego:4: undefined function no_such"},
		{"http.send", "package changeops\n\ndeny contains msg if {\n\tr := http.send({\"method\": \"get\", \"url\": \"http://example.com\"})\n\tmsg := r.body\n}\n", "policies/p.rego:4: undefined function http.send"},
		{"opa.runtime", "package changeops\n\ndeny contains msg if {\n\tmsg := opa.runtime().env.SECRET\n}\n", "policies/p.rego:4: undefined function opa.runtime"},
		{"clock", "package changeops\n\ndeny contains \"late\" if time.now_ns() > 0\n", "policies/p.rego:3: undefined function time.now_ns"},
		{"no rules", "package changeops\n\nhelper := 1\n", "no file has a deny, warn or require rule"},
		{"undefined rule", "package changeops\n\nimport data.lib\n\ndeny contains \"x\" if data.changeops.is_public\n\nwarn contains \"y\" if lib.missing\n", "policies/p.rego:5: data.changeops.is_public refers to no rule"},
		{"v0 syntax", "package changeops\n\ndeny[msg] { msg := \"x\" }\n", "policies/p.rego:3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Compile(context.Background(), []File{{Origin: OriginRepo, Name: "policies/p.rego", Source: c.src}}, Limits{})
			var b *BrokenError
			if !errors.As(err, &b) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Compile = %v, want a BrokenError containing %q", err, c.want)
			}
		})
	}
}

// Results of the wrong shape, conflicts and loops fail closed too.
func TestEvaluationErrorsFailClosed(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, src, want string }{
		{"count", "package changeops\n\nrequire contains {\"group\": \"dba\", \"count\": 0}\n", "count 0 must be a whole number"},
		{"no group", "package changeops\n\nrequire contains {\"count\": 1}\n", "name either a group or people"},
		{"conflict", "package changeops\n\nx := 1 if true\nx := 2 if true\n\ndeny contains \"d\" if x\n", "conflict"},
		{"number", "package changeops\n\ndeny := 3\n", "make it a set of messages"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := Compile(context.Background(), []File{{Origin: OriginRepo, Name: "p.rego", Source: c.src}}, Limits{})
			if err == nil {
				_, err = s.Evaluate(context.Background(), bucketPlan(true))
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestEvaluationIsBoundedInTime(t *testing.T) {
	t.Parallel()
	src := "package changeops\n\ndeny contains \"slow\" if {\n\tsome i in numbers.range(1, 100000000)\n\ti < 0\n}\n"
	s, err := Compile(context.Background(), []File{{Origin: OriginRepo, Name: "slow.rego", Source: src}}, Limits{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Evaluate(context.Background(), bucketPlan(true))
	if err == nil || !strings.Contains(err.Error(), "took longer than 200ms") {
		t.Fatalf("Evaluate = %v, want the time limit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the limit stopped it after %s", d)
	}
}

// Every string a policy returns is bounded, and so is their number.
func TestResultsAreBounded(t *testing.T) {
	t.Parallel()
	src := `package changeops

deny contains {"msg": sprintf("%05000d", [i]), "resource": sprintf("%05000d", [0])} if some i in numbers.range(1, 80)
`
	s, err := Compile(context.Background(), []File{{Origin: OriginRepo, Name: "big.rego", Source: src}}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Evaluate(context.Background(), bucketPlan(true))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deny) != 50 || res.Omitted != 30 {
		t.Fatalf("%d denies, %d omitted; want 50 and 30", len(res.Deny), res.Omitted)
	}
	for _, v := range res.Deny {
		if len(v.Message) > maxMessage+len("…") || len(v.Resource) > maxResource+len("…") {
			t.Fatalf("unbounded result: %d-byte message, %d-byte resource", len(v.Message), len(v.Resource))
		}
	}
}

func TestReadDirAndDigest(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, "policies")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("buckets.rego", bucketsRego)
	write("sub/tags.rego", "package changeops.tags\n\nwarn contains \"tags\" if false\n")
	write("buckets_test.rego", "package changeops.buckets_test\n\nthis is not rego\n")
	write("README.md", "not a policy")
	files, err := ReadDir(OriginRepo, root, dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if fmt.Sprint(names) != "[policies/buckets.rego policies/sub/tags.rego]" {
		t.Fatalf("files = %v", names)
	}
	a := compileT(t, files...)
	write("sub/tags.rego", "package changeops.tags\n\nwarn contains \"tags\" if true\n")
	files, _ = ReadDir(OriginRepo, root, dir)
	b := compileT(t, files...)
	if a.Digest == b.Digest || len(a.Digest) != 64 {
		t.Fatalf("digests %q and %q: a changed policy must change the digest", a.Digest, b.Digest)
	}
	if none, err := ReadDir(OriginRepo, root, filepath.Join(root, "missing")); err != nil || len(none) != 0 {
		t.Fatalf("missing folder: %v, %v", none, err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link.rego")); err != nil {
		t.Fatal(err)
	}
	var broken *BrokenError
	if _, err := ReadDir(OriginRepo, root, dir); !errors.As(err, &broken) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a symlinked policy: %v", err)
	}
	// A policies folder that is itself a link fails too, not silently
	// empty.
	link := filepath.Join(root, "linked")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDir(OriginRepo, root, link); !errors.As(err, &broken) || !strings.Contains(err.Error(), "is a link") {
		t.Fatalf("a symlinked policies folder: %v", err)
	}
}

func TestTrailers(t *testing.T) {
	t.Parallel()
	cases := []struct{ msg, want string }{
		{"subject\n\nbody\n\nTicket: OPS-12\nSigned-off-by: A <a@x>\nTicket: OPS-13\n", "map[Signed-off-by:[A <a@x>] Ticket:[OPS-12 OPS-13]]"},
		{"Ticket: OPS-1", "map[]"},
		{"subject\n\nthis is prose: with a colon\n", "map[]"},
	}
	for _, c := range cases {
		if got := fmt.Sprint(Trailers(c.msg)); got != c.want {
			t.Errorf("Trailers(%q) = %s, want %s", c.msg, got, c.want)
		}
	}
}

// Trailers never panics on a commit message, and what it returns are
// trailers: keys without blanks, each from a line of the message.
func FuzzTrailers(f *testing.F) {
	for _, s := range []string{"s\n\nb\n\nTicket: OPS-1\nTicket: OPS-2", "s", "s\n\n: x", "s\r\n\r\nA: b\r\n", "s\n\nK:\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		for k, vs := range Trailers(msg) {
			if k == "" || strings.ContainsAny(k, " \t\n") || len(vs) == 0 {
				t.Fatalf("trailer %q = %q", k, vs)
			}
			if !strings.Contains(msg, k) {
				t.Fatalf("key %q is not in the message", k)
			}
		}
	})
}

// Library packages, imported, and rules reading other rules' values
// compile; only a reference that no rule defines is refused.
func TestLibrariesAndRuleReferences(t *testing.T) {
	t.Parallel()
	s := compileT(t,
		File{Origin: OriginRepo, Name: "policies/lib/steps.rego", Source: "package lib.steps\n\npublic(s) if s.new.acl == \"public-read\"\n\nbuckets contains s if {\n\tsome s in input.steps\n\ts.type == \"aws:s3/bucket:Bucket\"\n}\n"},
		File{Origin: OriginRepo, Name: "policies/buckets.rego", Source: "package changeops.buckets\n\nimport data.lib.steps\n\ndeny contains s.urn if {\n\tsome s in steps.buckets\n\tsteps.public(s)\n}\n\nwarn contains \"denied\" if count(data.changeops.buckets.deny) > 0\n"},
	)
	res, err := s.Evaluate(context.Background(), bucketPlan(true))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deny) != 1 || len(res.Warn) != 1 {
		t.Fatalf("result = %+v", res)
	}
	_, err = Compile(context.Background(), []File{{Origin: OriginRepo, Name: "p.rego", Source: "package changeops\n\nimport data.lib\n\nwarn contains \"y\" if lib.missing\n"}}, Limits{})
	if err == nil || !strings.Contains(err.Error(), "p.rego:5: data.lib.missing refers to no rule") {
		t.Fatalf("Compile = %v, want the undefined library rule named", err)
	}
}

// A rule with a dotted head (`buckets.deny contains …` in package
// changeops) is a deny like any other, not skipped.
func TestDottedRuleHeads(t *testing.T) {
	t.Parallel()
	s := compileT(t, File{Origin: OriginOrg, Name: "dotted.rego", Source: `package changeops

warn contains "always"

buckets.deny contains {"msg": "public", "resource": s.urn} if {
	some s in input.steps
	s.new.acl == "public-read"
}
`})
	res, err := s.Evaluate(context.Background(), bucketPlan(true))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deny) != 1 || res.Deny[0].Rule != "buckets.deny" {
		t.Fatalf("deny = %+v, want the dotted buckets.deny", res.Deny)
	}
}

// A policy's text is one line without control characters, and
// requirements are never dropped to the bound: the same one is counted
// once, and too many distinct ones fail closed.
func TestResultTextAndRequirementsBounded(t *testing.T) {
	t.Parallel()
	s := compileT(t, File{Origin: OriginRepo, Name: "text.rego", Source: `package changeops

warn contains "approved by alice\n\u001b]52;c;aGk=\u0007ok"

require contains {"group": "dba", "count": 2} if some s in input.steps
`})
	res, err := s.Evaluate(context.Background(), bucketPlan(true))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warn) != 1 || res.Warn[0].Message != "approved by alice ]52;c;aGk=ok" {
		t.Errorf("warn = %q, want one line without control characters", res.Warn)
	}
	if len(res.Require) != 1 {
		t.Errorf("require = %+v, want the one requirement once", res.Require)
	}
	many := compileT(t, File{Origin: OriginOrg, Name: "many.rego", Source: `package changeops

require contains {"people": [sprintf("p%d", [i])]} if some i in numbers.range(1, 60)
`})
	if _, err := many.Evaluate(context.Background(), bucketPlan(true)); err == nil || !strings.Contains(err.Error(), "distinct approvals") {
		t.Fatalf("60 distinct requirements: err = %v, want a failure saying so", err)
	}
}
