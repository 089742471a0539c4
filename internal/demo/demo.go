// Package demo creates the self-contained demo `changeops dev` runs when it
// is given no config: a bare git remote, a working clone of it, a Pulumi
// YAML project that writes a web page through changeops' own provider, and a
// changeops.yaml that deploys it with approvals and verification.
package demo

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"
)

// Demo is where the demo lives.
type Demo struct {
	Dir        string // .changeops/demo
	Remote     string // bare repository, the "forge"
	Clone      string // where a person edits and pushes
	WWW        string // folder the stack writes and the demo site serves
	Config     string // changeops.yaml
	Keys       string // alice's and bob's SSH keys, for changeops approve --key
	SiteAddr   string // host:port the demo site listens on
	HTTPListen string // the worker's endpoints
}

// Options place the demo's listeners.
type Options struct {
	SiteAddr   string
	HTTPListen string
	// DataDir holds changeops' git cache, workspaces and Pulumi state.
	DataDir string
	// TemporalAddress and UIURL point the config at the dev server.
	TemporalAddress, UIURL string
}

// Ensure creates the demo under dir unless it exists, and returns it.
func Ensure(dir string, opts Options) (*Demo, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	d := &Demo{
		Dir:        dir,
		Remote:     filepath.Join(dir, "remote.git"),
		Clone:      filepath.Join(dir, "infra"),
		WWW:        filepath.Join(dir, "www"),
		Config:     filepath.Join(dir, "changeops.yaml"),
		Keys:       filepath.Join(dir, "keys"),
		SiteAddr:   opts.SiteAddr,
		HTTPListen: opts.HTTPListen,
	}
	// A demo from before decisions were signed has no keys: made again.
	if _, err := os.Stat(filepath.Join(d.Keys, "bob.pub")); err == nil {
		if _, err := os.Stat(d.Config); err == nil {
			return d, nil
		}
	}
	if err := os.MkdirAll(d.WWW, 0o755); err != nil {
		return nil, fmt.Errorf("create demo: %w", err)
	}
	if err := d.createRepos(); err != nil {
		return nil, fmt.Errorf("create demo repository: %w", err)
	}
	alice, err := d.createKey("alice")
	if err != nil {
		return nil, err
	}
	bob, err := d.createKey("bob")
	if err != nil {
		return nil, err
	}
	cfg, err := render(configTemplate, map[string]string{
		"Remote": d.Remote, "SiteAddr": d.SiteAddr, "HTTPListen": d.HTTPListen,
		"DataDir": opts.DataDir, "Temporal": opts.TemporalAddress, "UIURL": opts.UIURL,
		"AliceKey": alice, "BobKey": bob,
	})
	if err != nil {
		return nil, err
	}
	// Written last: its presence means the demo is whole.
	if err := os.WriteFile(d.Config, cfg, 0o644); err != nil {
		return nil, fmt.Errorf("write demo config: %w", err)
	}
	return d, nil
}

func (d *Demo) createRepos() error {
	for _, p := range []string{d.Remote, d.Clone} {
		if err := os.RemoveAll(p); err != nil { // a half-made demo from an interrupted run
			return err
		}
	}
	if _, err := git.PlainInitWithOptions(d.Remote, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.Main},
		Bare:        true,
	}); err != nil {
		return err
	}
	repo, err := git.PlainInitWithOptions(d.Clone, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.Main},
	})
	if err != nil {
		return err
	}
	files := map[string]string{
		"README.md":                   readme,
		"stacks/site/Pulumi.yaml":     pulumiYAML,
		"stacks/site/index.html":      indexHTML,
		"stacks/site/Pulumi.dev.yaml": fmt.Sprintf("config:\n  site:wwwDir: %s\n", d.WWW),
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	for name, content := range files {
		p := filepath.Join(d.Clone, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
		if _, err := wt.Add(name); err != nil {
			return err
		}
	}
	sig := &object.Signature{Name: "changeops demo", Email: "demo@changeops.local", When: time.Now()}
	if _, err := wt.Commit("Add the demo site stack", &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		return err
	}
	// The demo's commits are alice's: with four eyes she cannot approve
	// them herself, bob can.
	cfg, err := repo.Config()
	if err != nil {
		return err
	}
	cfg.User.Name, cfg.User.Email = "alice", "alice@example.com"
	if err := repo.SetConfig(cfg); err != nil {
		return err
	}
	if _, err := repo.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{d.Remote}}); err != nil {
		return err
	}
	if err := repo.CreateBranch(&gitconfig.Branch{Name: "main", Remote: "origin", Merge: plumbing.NewBranchReferenceName("main")}); err != nil {
		return err
	}
	err = repo.Push(&git.PushOptions{RemoteName: "origin", RefSpecs: []gitconfig.RefSpec{"refs/heads/main:refs/heads/main"}})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return err
	}
	return nil
}

// createKey writes a new ed25519 key pair for a demo person, as ssh-keygen
// would (keys/NAME, keys/NAME.pub), and returns the public key line.
func (d *Demo) createKey(name string) (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, name+"@changeops-demo")
	if err != nil {
		return "", err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return "", err
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + name + "@changeops-demo"
	if err := os.MkdirAll(d.Keys, 0o700); err != nil {
		return "", fmt.Errorf("create demo keys: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d.Keys, name), pem.EncodeToMemory(block), 0o600); err != nil {
		return "", fmt.Errorf("write demo key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d.Keys, name+".pub"), []byte(pub+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write demo key: %w", err)
	}
	return pub, nil
}

func render(t string, data any) ([]byte, error) {
	tpl, err := template.New("").Parse(t)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := tpl.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

const pulumiYAML = `name: site
runtime: yaml
description: The demo site. changeops dev serves wwwDir over HTTP.
config:
  wwwDir:
    type: string
resources:
  index:
    type: changeops:index:File
    properties:
      path: ${wwwDir}/index.html
      content:
        fn::readFile: ./index.html
  health:
    type: changeops:index:File
    properties:
      path: ${wwwDir}/healthz
      content: "ok\n"
outputs:
  indexSha256: ${index.sha256}
`

const indexHTML = `<!doctype html>
<title>changeops demo</title>
<h1>Hello from changeops</h1>
<p>Edit stacks/site/index.html, commit, push, approve.</p>
`

const readme = `# Demo infrastructure repository

stacks/site is a Pulumi YAML project. changeops deploys every commit pushed
to main that touches it, after an approval.
`

const configTemplate = `# Demo configuration written by changeops dev. Every field is documented in
# docs/configuration.md of changeops.
repo:
  url: {{.Remote}}
  branch: main
  poll_interval: 2s
temporal:
  address: {{.Temporal}}
  namespace: default
  task_queue: changeops
  ui_url: {{.UIURL}}
data_dir: {{.DataDir}}
pulumi:
  passphrase_env: PULUMI_CONFIG_PASSPHRASE
  # The demo deploys with changeops' own provider, installed from the
  # toolchain: nothing is downloaded.
  offline: true
http:
  listen: {{.HTTPListen}}
# Who may decide: each approver's identities. Decisions are signed: in
# Slack by the app, on the command line with the person's SSH key
# (changeops approve ID --as bob --key keys/bob).
people:
  - name: alice
    emails: [alice@example.com]
    keys: ["{{.AliceKey}}"]
  - name: bob
    emails: [bob@example.com]
    keys: ["{{.BobKey}}"]
stacks:
  - name: site
    path: stacks/site
    stack: dev
    approval: manual
    approvers: [alice, bob]
    four_eyes: true
    approval_timeout: 24h
    verify:
      - http: {url: "http://{{.SiteAddr}}/healthz", status: 200}
      - http: {url: "http://{{.SiteAddr}}/index.html", status: 200}
      - no_changes: true
    verify_timeout: 1m
    # Every 10 minutes, compare the live site with git; ask alice or bob
    # whether to re-apply git or accept what changed.
    drift_interval: 10m
    drift: approve
`
