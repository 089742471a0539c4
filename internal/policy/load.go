package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Where a policy comes from. Organisation policies are the worker's own
// (policy.org in the configuration); repository policies are versioned
// with the change. Each origin is compiled and evaluated on its own, so a
// repository policy cannot redefine, shadow or add to the rules and
// helpers of an organisation policy: it can only add results.
const (
	OriginOrg  = "org"
	OriginRepo = "repo"
)

// Package is the Rego package policies put their rules in: deny, warn
// and require of `package changeops` and of every package under it
// (`package changeops.buckets`) are evaluated.
const Package = "changeops"

// Bounds of what a policy set may be.
const (
	MaxFiles     = 200
	MaxFileBytes = 1 << 20
	// MaxBytes bounds a folder's policies together: they are compiled in
	// the worker's process.
	MaxBytes = 4 << 20
)

// File is one policy module: where it comes from, its name as errors and
// results show it (the path in the repository, or on the worker), and its
// text.
type File struct {
	Origin string
	Name   string
	Source string
}

// Set is the compiled policies of a plan: the organisation's and the
// repository's, each compiled apart.
type Set struct {
	// Digest is the SHA-256 of every file's origin, name and text, in
	// order: which policies judged a plan.
	Digest string
	// Files names the files, "org:NAME" and "repo:NAME".
	Files  []string
	parts  []compiled
	Limits Limits
}

type compiled struct {
	origin string
	query  rego.PreparedEvalQuery
	// rules are the rule paths to read from the result, as
	// ["buckets", "deny"] under data.changeops.
	rules [][]string
}

// BrokenError is a policy that does not compile: a syntax error, an
// undefined function or rule, a builtin changeops does not allow. Runs
// fail closed on it.
type BrokenError struct {
	// Errors are "FILE:LINE: message", at most ten.
	Errors []string
}

func (e *BrokenError) Error() string {
	return "the policies are broken: " + strings.Join(e.Errors, "; ")
}

// ReadDir reads the .rego files of dir and its subfolders (not _test.rego
// files), named by their path relative to base with slashes. A dir that
// does not exist has none. A folder changeops will not read (a link, too
// many or too large files) is a BrokenError, like a policy that does not
// compile: it fails closed.
func ReadDir(origin, base, dir string) ([]File, error) {
	var files []File
	total := int64(0)
	// WalkDir does not follow a link it starts from: it would read
	// nothing, silently.
	if info, err := os.Lstat(dir); err == nil && info.Mode()&fs.ModeSymlink != 0 {
		return nil, &BrokenError{Errors: []string{fmt.Sprintf("policies %s is a link: replace it with the folder", dir)}}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, "_test.rego") {
			return nil
		}
		// A symlink could point anywhere on the worker; a policy is a
		// regular file of the folder.
		if !d.Type().IsRegular() {
			return &BrokenError{Errors: []string{fmt.Sprintf("policy %s is not a regular file: replace the link with the file", p)}}
		}
		name, err := filepath.Rel(base, p)
		if err != nil {
			name = p
		}
		name = filepath.ToSlash(name)
		if len(files) == MaxFiles {
			return &BrokenError{Errors: []string{fmt.Sprintf("more than %d policy files under %s: merge some", MaxFiles, dir)}}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > MaxFileBytes {
			return &BrokenError{Errors: []string{fmt.Sprintf("policy %s is %d bytes, more than %d: split it", name, info.Size(), MaxFileBytes)}}
		}
		if total += info.Size(); total > MaxBytes {
			return &BrokenError{Errors: []string{fmt.Sprintf("the policies under %s are more than %d bytes together: keep generated data out of them", dir, MaxBytes)}}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, File{Origin: origin, Name: name, Source: string(b)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read policies in %s: %w", dir, err)
	}
	return files, nil
}

// Compile compiles the files into a set: those of each origin together,
// apart from the other origin's. An empty set judges nothing.
func Compile(ctx context.Context, files []File, limits Limits) (*Set, error) {
	files = slices.Clone(files)
	sort.SliceStable(files, func(i, j int) bool {
		if files[i].Origin != files[j].Origin {
			return files[i].Origin == OriginOrg
		}
		return files[i].Name < files[j].Name
	})
	s := &Set{Limits: limits.withDefaults()}
	h := sha256.New()
	byOrigin := map[string][]File{}
	for _, f := range files {
		fmt.Fprintf(h, "%s:%s\x00%d\x00%s", f.Origin, f.Name, len(f.Source), f.Source)
		s.Files = append(s.Files, f.Origin+":"+f.Name)
		byOrigin[f.Origin] = append(byOrigin[f.Origin], f)
	}
	if len(files) > 0 {
		s.Digest = hex.EncodeToString(h.Sum(nil))
	}
	var broken BrokenError
	for _, origin := range []string{OriginOrg, OriginRepo} {
		if len(byOrigin[origin]) == 0 {
			continue
		}
		c, err := compile(ctx, origin, byOrigin[origin])
		var b *BrokenError
		switch {
		case errors.As(err, &b):
			broken.Errors = append(broken.Errors, b.Errors...)
		case err != nil:
			return nil, err
		default:
			s.parts = append(s.parts, c)
		}
	}
	if len(broken.Errors) > 0 {
		broken.Errors = broken.Errors[:min(len(broken.Errors), 10)]
		return nil, &broken
	}
	return s, nil
}

// Empty says whether the set has no policy at all.
func (s *Set) Empty() bool { return s == nil || len(s.Files) == 0 }

// ruleKinds are the rules a policy may return.
var ruleKinds = []string{KindDeny, KindWarn, KindRequire}

// headPath is the named part of a rule's head: `deny` for `deny contains
// x`, and `buckets`, `deny` for `buckets.deny contains x`, which puts the
// rule in the package's buckets document; it stops at the first part
// that is not a name (a partial object's key). A rule is judged by the
// last name, so a deny written with a dotted head is not skipped.
func headPath(ref ast.Ref) []string {
	var path []string
	for i, t := range ref {
		switch v := t.Value.(type) {
		case ast.Var:
			if i > 0 {
				return path
			}
			path = append(path, string(v))
		case ast.String:
			path = append(path, string(v))
		default:
			return path
		}
	}
	return path
}

func compile(ctx context.Context, origin string, files []File) (compiled, error) {
	opts := []func(*rego.Rego){
		rego.Query("data." + Package),
		rego.Capabilities(capabilities()),
		rego.StrictBuiltinErrors(true),
	}
	var rules [][]string
	var broken BrokenError
	modules := map[string]*ast.Module{}
	for _, f := range files {
		m, err := ast.ParseModuleWithOpts(displayName(f), f.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			broken.Errors = append(broken.Errors, astErrors(err)...)
			continue
		}
		opts = append(opts, rego.ParsedModule(m))
		modules[displayName(f)] = m
		pkg := m.Package.Path.String() // data.changeops.buckets
		rel, ok := strings.CutPrefix(pkg, "data."+Package)
		if !ok || (rel != "" && rel[0] != '.') {
			continue // a library package, imported by the others
		}
		for _, r := range m.Rules {
			head := headPath(r.Head.Ref())
			if len(head) == 0 || !slices.Contains(ruleKinds, head[len(head)-1]) {
				continue
			}
			path := head
			if rel != "" {
				path = append(strings.Split(strings.TrimPrefix(rel, "."), "."), head...)
			}
			if !slices.ContainsFunc(rules, func(p []string) bool { return slices.Equal(p, path) }) {
				rules = append(rules, path)
			}
		}
	}
	if len(broken.Errors) == 0 && len(rules) == 0 {
		broken.Errors = append(broken.Errors, fmt.Sprintf("%s: no file has a deny, warn or require rule in package %s or a package under it, so nothing would be judged: declare `package %s` and a rule", displayName(files[0]), Package, Package))
	}
	if len(broken.Errors) > 0 {
		return compiled{}, &broken
	}
	q, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		if errs := astErrors(err); len(errs) > 0 {
			return compiled{}, &BrokenError{Errors: errs}
		}
		return compiled{}, fmt.Errorf("compile the %s policies: %w", origin, err)
	}
	if errs := undefinedRefs(modules); len(errs) > 0 {
		return compiled{}, &BrokenError{Errors: errs}
	}
	return compiled{origin: origin, query: q, rules: rules}, nil
}

// undefinedRefs finds references to data that no rule defines. OPA
// leaves them undefined (data could come from a bundle), which would make
// a misspelt rule name silently allow; changeops gives policies no data
// but their own rules, so such a reference is an error. The modules
// compiled already, so this compilation only resolves imports.
func undefinedRefs(modules map[string]*ast.Module) []string {
	c := ast.NewCompiler().WithCapabilities(capabilities())
	c.Compile(modules)
	if c.Failed() {
		return nil // reported by the compilation before
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		ast.WalkRefs(c.Modules[name], func(r ast.Ref) bool {
			p := r.GroundPrefix()
			if len(p) < 2 || !p[0].Equal(ast.DefaultRootDocument) {
				return false
			}
			if len(c.GetRulesWithPrefix(p)) > 0 || len(c.GetRulesForVirtualDocument(p)) > 0 {
				return false
			}
			line := fmt.Sprintf("%s: %s refers to no rule: define it, or fix the name", name, p)
			if r[0].Location != nil {
				line = fmt.Sprintf("%s:%d: %s refers to no rule: define it, or fix the name", r[0].Location.File, r[0].Location.Row, p)
			}
			if !slices.Contains(out, line) {
				out = append(out, line)
			}
			return false
		})
	}
	return out
}

// displayName is how errors name a file: "policies/buckets.rego", or
// "org:deny-public.rego" for the worker's own.
func displayName(f File) string {
	if f.Origin == OriginOrg {
		return "org:" + f.Name
	}
	return f.Name
}

// astErrors turns OPA's compile errors into "FILE:LINE: message" lines.
func astErrors(err error) []string {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		var one *ast.Error
		if !errors.As(err, &one) {
			return nil
		}
		errs = ast.Errors{one}
	}
	var out []string
	for _, e := range errs {
		msg := e.Message
		if name, ok := strings.CutPrefix(msg, "undefined function "); ok && !allowed(name) {
			msg += ": changeops allows only builtins that read nothing but the policy and the plan (no http.send, net.lookup_ip_addr, opa.runtime, time.now_ns, rand.intn, uuid.rfc4122)"
		}
		line := bound(msg, maxMessage)
		if e.Location != nil {
			line = fmt.Sprintf("%s:%d: %s", e.Location.File, e.Location.Row, line)
		}
		if !slices.Contains(out, line) {
			out = append(out, line)
		}
	}
	return out
}

// capabilities are the builtins a policy may call: every builtin of this
// OPA except those that read something besides the policy and its input
// (http.send, net.lookup_ip_addr, opa.runtime with the worker's
// environment, the clock, randomness). What is left is a pure function of
// the policies and the plan, so `changeops policy test` reproduces a run's
// result exactly, and a policy cannot reach the network or the worker's
// secrets.
func capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool { return !allowed(b.Name) })
	c.AllowNet = []string{} // and no host, should one slip through
	return c
}

// allowed says whether a policy may call the builtin name; an unknown
// name is allowed here and refused by the compiler as undefined.
func allowed(name string) bool {
	b, ok := ast.BuiltinMap[name]
	return !ok || !(b.Nondeterministic || name == ast.OPARuntime.Name || name == ast.HTTPSend.Name || strings.HasPrefix(name, "net.lookup"))
}
