package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/pulumienv"
	"github.com/changeops/changeops/internal/testkit/gittest"
)

// Real projects: the user's Pulumi CLI, plugins acquired the way Pulumi
// acquires them, a Pulumi service backend's token, readable engine
// messages.

// pluginServer serves changeops' provider as Pulumi downloads plugins:
// <prefix>pulumi-resource-changeops-v<version>-<os>-<arch>.tar.gz, a
// tar.gz with the binary at its root, built with the version it is
// served as. It counts the requests of each path.
type pluginServer struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func servePlugins(t *testing.T, served map[string]string) *pluginServer {
	t.Helper()
	files := map[string][]byte{}
	for path, version := range served {
		files[path] = providerTarball(t, version)
	}
	s := &pluginServer{hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		// Pulumi refuses a download whose length it was not told.
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *pluginServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// pluginFile is the file name Pulumi downloads a changeops provider as.
func pluginFile(version string) string {
	return fmt.Sprintf("pulumi-resource-changeops-v%s-%s-%s.tar.gz", version, runtime.GOOS, runtime.GOARCH)
}

// providerTarball builds changeops' provider reporting version (as
// scripts/toolchain builds it) and packs it as a plugin tarball.
func providerTarball(t *testing.T, version string) []byte {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("go", "build", "-mod=mod", "-trimpath", "-ldflags", "-s -w -X main.Version="+version, "-o", out+"/", "./cmd/pulumi-resource-changeops")
	cmd.Dir = filepath.Join("..", "toolchain")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the provider as v%s: %v\n%s", version, err, b)
	}
	bin, err := os.ReadFile(filepath.Join(out, "pulumi-resource-changeops"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "pulumi-resource-changeops", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(bin); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A stack's program asks for versions of changeops' provider that are
// not installed: 0.2.0 from its pluginDownloadURL, 0.3.0 from Pulumi's
// default source (GitHub), which pulumi.plugin_mirrors sends to the local
// server, and 0.5.0, which pulumi.plugins installs at start-up. With
// acquisition on (no pulumi.offline) and a PULUMI_HOME of its own, the
// worker installs 0.5.0 before any run, the engine downloads the other
// two during the preview, and the change deploys all three files. With
// the server down, a change needing 0.4.0 fails its preview at once,
// naming the plugin, its version and the settings that would provide it.
func TestPluginsAreAcquiredFromPluginServers(t *testing.T) {
	t.Parallel()
	const branch = "e2e-plugins"
	srv := servePlugins(t, map[string]string{
		"/direct/" + pluginFile("0.2.0"): "0.2.0",
		"/mirror/" + pluginFile("0.3.0"): "0.3.0",
		"/direct/" + pluginFile("0.5.0"): "0.5.0",
	})
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name+".txt") }
	resource := func(name, options string) string {
		return fmt.Sprintf("  %s:\n    type: changeops:index:File\n    options:\n%s    properties:\n      path: %s\n      content: %s\n",
			name, options, file(name), name)
	}
	program := func(resources ...string) string {
		return "name: plugins\nruntime: yaml\nresources:\n" + strings.Join(resources, "") + "outputs:\n  path: " + file("direct") + "\n"
	}
	direct := resource("direct", "      version: 0.2.0\n      pluginDownloadURL: "+srv.URL+"/direct/\n")
	mirrored := resource("mirrored", "      version: 0.3.0\n")
	listed := resource("listed", "      version: 0.5.0\n")

	remote := gittest.New(t, branch)
	remote.Commit("Add the stack", map[string]string{"stacks/plugins/Pulumi.yaml": "name: plugins\nruntime: yaml\n"})
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "plugins", Path: "stacks/plugins", Stack: "test", Approval: config.ApprovalAuto,
		Verify: []config.Check{{NoChanges: true}},
	})
	cfg.Pulumi.Home = t.TempDir() // nothing installed but changeops' own 0.1.0
	cfg.Pulumi.Offline = false
	cfg.Pulumi.PluginMirrors = []config.PluginMirror{{Match: "^github://api.github.com/pulumi/", URL: srv.URL + "/mirror/"}}
	cfg.Pulumi.Plugins = []config.Plugin{{Name: "changeops", Kind: "resource", Version: "0.5.0", Server: srv.URL + "/direct/"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	installed := func(version string) bool {
		_, err := os.Stat(filepath.Join(cfg.Pulumi.Home, "plugins", "resource-changeops-v"+version, "pulumi-resource-changeops"))
		return err == nil
	}
	slack := slackWorkspace(t, cfg)
	c := startWorker(t, cfg)
	if !installed("0.5.0") || srv.count("/direct/"+pluginFile("0.5.0")) != 1 {
		t.Fatalf("pulumi.plugins did not install changeops 0.5.0 at start-up (%d downloads)", srv.count("/direct/"+pluginFile("0.5.0")))
	}
	if installed("0.2.0") || installed("0.3.0") {
		t.Fatal("0.2.0 or 0.3.0 is installed before any run")
	}
	waitWatching(t, c, branch)

	sha := remote.Commit("Deploy with three provider versions", map[string]string{"stacks/plugins/Pulumi.yaml": program(direct, mirrored, listed)})
	run := waitState(t, c, contract.ChangeWorkflowID(branch, sha), 3*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	for _, name := range []string{"direct", "mirrored", "listed"} {
		if b, err := os.ReadFile(file(name)); err != nil || string(b) != name {
			t.Errorf("%s = %q, %v", file(name), b, err)
		}
	}
	for path, version := range map[string]string{"/direct/" + pluginFile("0.2.0"): "0.2.0", "/mirror/" + pluginFile("0.3.0"): "0.3.0"} {
		if srv.count(path) == 0 || !installed(version) {
			t.Errorf("changeops %s: %d downloads of %s, installed %v", version, srv.count(path), path, installed(version))
		}
	}
	if n := srv.count("/direct/" + pluginFile("0.5.0")); n != 1 {
		t.Errorf("0.5.0 downloaded %d times: the run should use the one installed at start-up", n)
	}
	if p := run.Status.Plans; len(p) != 1 || p[0].PulumiVersion != pulumienv.PulumiVersion {
		t.Errorf("plans = %+v, want one planned by pulumi %s", p, pulumienv.PulumiVersion)
	}

	// The plugin server goes away; a change asks for a version nothing
	// installed.
	srv.Close()
	missing := resource("missing", "      version: 0.4.0\n      pluginDownloadURL: "+srv.URL+"/direct/\n")
	sha = remote.Commit("Ask for a provider nobody serves", map[string]string{"stacks/plugins/Pulumi.yaml": program(direct, mirrored, listed, missing)})
	id := contract.ChangeWorkflowID(branch, sha)
	run = waitState(t, c, id, 2*time.Minute, contract.StateFailed, contract.StateAwaitingApproval, contract.StateSucceeded)
	if run.State != contract.StateFailed {
		t.Fatalf("run is %s, want failed at its preview", run.State)
	}
	for _, want := range []string{"preview stack plugins (test)", "resource plugin changeops v0.4.0 from " + srv.URL + "/direct/",
		"downloading it failed", "pulumi.plugin_mirrors", "pulumi.plugins: {name: changeops, version: 0.4.0, server: <a server you trust>}", "from " + srv.URL + "/direct/ (as the program asks"} {
		if !strings.Contains(run.Error, want) {
			t.Errorf("error %q does not say %q", run.Error, want)
		}
	}
	if n := countActivities(t, c, id, "Preview"); n != 1 {
		t.Errorf("preview attempted %d times, want 1 (a missing plugin is the program's error)", n)
	}
	th := slack.waitThread(t, sha[:7], contract.StateFailed, "received", contract.StateFailed)
	if !strings.Contains(th[len(th)-1].Blocks, "changeops v0.4.0") {
		t.Errorf("Slack's failure message does not name the plugin: %s", th[len(th)-1].Blocks)
	}
}

// newestCLI is the second Pulumi CLI scripts/toolchain builds (the newest
// pkg/v3 its build module names) and its version.
func newestCLI(t *testing.T) (path, version string) {
	t.Helper()
	b, err := os.ReadFile("../toolchain/pulumi-newest/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github.com/pulumi/pulumi/pkg/v3 (v\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("toolchain/pulumi-newest/go.mod requires no github.com/pulumi/pulumi/pkg/v3")
	}
	version = string(m[1])
	path = filepath.Join(tools, "pulumi-"+version, "pulumi")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing: run scripts/toolchain (make test does)", path)
	}
	return path, version
}

// A change runs end to end on the newest Pulumi CLI the toolchain builds,
// not the one changeops is built against (pulumi.cli), with a minimum
// version it meets: /readyz and the plan say which CLI ran, the state it
// wrote is the state (read back with the pinned CLI), and a preview after
// up finds nothing to do.
func TestChangeRunsOnAnotherPulumiCLI(t *testing.T) {
	t.Parallel()
	const branch = "e2e-newest-cli"
	cli, version := newestCLI(t)
	if version == pulumienv.PulumiVersion {
		t.Fatalf("toolchain/pulumi-newest builds %s, the pinned version: it proves nothing", version)
	}
	remote := gittest.New(t, branch)
	out := filepath.Join(t.TempDir(), "site.txt")
	remote.Commit("Add the site stack", siteProject("stacks/site", out, "v1"))
	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-newest", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto,
		Verify: []config.Check{{Command: []string{"./check.sh"}}, {NoChanges: true}},
	})
	cfg.Pulumi.CLI, cfg.Pulumi.MinVersion = cli, "v3.270.0"
	w := startWorkerFull(t, cfg)
	c := w.Client()
	if body := get(t, "http://"+w.Addr()+"/readyz"); !strings.Contains(body, "pulumi: "+version+" ("+cli+")") {
		t.Errorf("/readyz = %q, want the CLI %s %s", body, version, cli)
	}
	waitWatching(t, c, branch)

	sha := remote.Commit("Serve v2", map[string]string{"stacks/site/Pulumi.test.yaml": "config:\n  site:outFile: " + out + "\n  site:content: v2\n"})
	run := waitState(t, c, contract.ChangeWorkflowID(branch, sha), 3*time.Minute, contract.StateSucceeded, contract.StateFailed, contract.StateRolledBack)
	if run.State != contract.StateSucceeded {
		t.Fatalf("run ended %s: %s", run.State, run.Error)
	}
	if p := run.Status.Plans; len(p) != 1 || p[0].PulumiVersion != version || p[0].Create != 2 {
		t.Errorf("plans = %+v, want 2 creates planned by pulumi %s", p, version)
	}
	if v := run.Status.Verifications; len(v) != 1 || !v[0].Passed {
		t.Errorf("verifications = %+v", v)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "v2" {
		t.Errorf("deployed file = %q, %v; want v2", got, err)
	}
	if n := resourcesOfType(t, cfg, "stacks/site", "test", "changeops:index:File"); n != 1 {
		t.Errorf("Pulumi state holds %d files, want 1", n)
	}
}

// A real CLI below the configured minimum is refused at start-up, naming
// both versions and the fix; nothing else starts.
func TestWorkerRefusesAPulumiCLIBelowTheMinimum(t *testing.T) {
	t.Parallel()
	remote := gittest.New(t, "e2e-old-cli")
	remote.Commit("Add the site stack", siteProject("stacks/site", filepath.Join(t.TempDir(), "x"), "v1"))
	cfg := testConfig(t, remote.Bare, "e2e-old-cli", config.Stack{Name: "site-old-cli", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto})
	cfg.Pulumi.MinVersion = "v3.270.0" // the pinned CLI is v3.259.0
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, _, stderr := changeopsWithConfig(t, ctx, cfg, nil, "worker")
	for _, want := range []string{"pulumi CLI " + filepath.Join(tools, "bin", "pulumi"), "it is " + pulumienv.PulumiVersion,
		"pulumi.min_version needs v3.270.0 or newer", "set pulumi.cli"} {
		if code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("changeops worker = %d, %q; want a refusal saying %q", code, stderr, want)
		}
	}
}

// changeopsWithConfig runs the changeops command with cfg written to a
// file, the config's passphrase and env in its environment.
func changeopsWithConfig(t *testing.T, ctx context.Context, cfg *config.Config, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, binary, append(args, "--config", writeConfig(t, cfg))...)
	cmd.Env = append(os.Environ(), append(env, cfg.Pulumi.PassphraseEnv+"="+cfg.Secrets.PulumiPassphrase, "CHANGEOPS_TOOLS="+tools)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		code = 1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return code, stdout.String(), stderr.String()
}

// A Pulumi service backend (here a stand-in that answers every call with
// an error echoing the Authorization header, as a misbehaving proxy
// might): the config names it and the token's variable and needs no
// passphrase; the worker, a `changeops worker` process, hands the token to
// the CLI (the service sees it), the run fails with the service's error,
// and the token's value is nowhere a person or a test can look: the
// worker's log, the run's status, `changeops status`, the histories and
// Slack. The service's words do reach the status, masked.
func TestPulumiServiceTokenStaysSecret(t *testing.T) {
	t.Parallel()
	const branch = "e2e-service"
	const token = "pul-e2e-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	var mu sync.Mutex
	var auth []string
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"code":500,"message":"this service cannot serve %s"}`, r.Header.Get("Authorization"))
	}))
	t.Cleanup(service.Close)

	remote := gittest.New(t, branch)
	sha := remote.Commit("Add the site stack", siteProject("stacks/site", filepath.Join(t.TempDir(), "x"), "v1"))
	// The config as a user writes it: Pulumi Cloud's settings, no
	// passphrase in the environment.
	yml := fmt.Sprintf(`repo: {url: %s, branch: %s}
pulumi:
  backend_url: %s
  access_token_env: PULUMI_ACCESS_TOKEN
stacks:
  - {name: site-service, path: stacks/site, stack: test, approval: auto}
`, remote.Bare, branch, service.URL)
	parsed, err := config.Parse([]byte(yml), t.TempDir(), func(k string) string {
		return map[string]string{"PULUMI_ACCESS_TOKEN": token}[k]
	})
	if err != nil {
		t.Fatalf("the service's settings without a passphrase: %v", err)
	}
	if parsed.Secrets.PulumiAccessToken != token || parsed.Secrets.PulumiPassphrase != "" {
		t.Fatalf("token %q, passphrase %q", parsed.Secrets.PulumiAccessToken, parsed.Secrets.PulumiPassphrase)
	}

	cfg := testConfig(t, remote.Bare, branch, config.Stack{
		Name: "site-service", Path: "stacks/site", Stack: "test", Approval: config.ApprovalAuto,
		ApplyRetryFor: config.Duration(time.Second),
	})
	cfg.Repo.Initial = config.InitialDeploy
	cfg.Pulumi.BackendURL, cfg.Pulumi.AccessTokenEnv = service.URL, "PULUMI_ACCESS_TOKEN"
	cfg.Secrets.PulumiPassphrase = ""
	cfg.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", freePort())
	cfg.Log.Format = "json"
	ws := slackWorkspace(t, cfg)
	w := startWorkerProcess(t, cfg, "worker", []string{"PULUMI_ACCESS_TOKEN=" + token,
		"SLACK_BOT_TOKEN=" + slackToken, "SLACK_SIGNING_SECRET=" + slackSecret})
	c, err := client.Dial(client.Options{HostPort: temporalURL, Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	id := contract.ChangeWorkflowID(branch, sha)
	run := waitState(t, c, id, 3*time.Minute, contract.StateFailed, contract.StateSucceeded)
	if run.State != contract.StateFailed || !strings.Contains(run.Error, "this service cannot serve token "+pulumienv.Redacted) {
		t.Fatalf("run ended %s: %q; want failed with the service's error, its token masked", run.State, run.Error)
	}
	mu.Lock()
	seen := strings.Join(auth, "\n")
	mu.Unlock()
	if !strings.Contains(seen, "token "+token) {
		t.Fatalf("the service never saw the token: %q", seen)
	}

	places := map[string]string{}
	b, err := os.ReadFile(w.log)
	if err != nil {
		t.Fatal(err)
	}
	places["the worker's log"] = string(b)
	status, _ := json.Marshal(run)
	places["the run's status"] = string(status)
	_, places["changeops status"], _ = changeops(t, "status", sha[:8], "--json")
	places["the workflow histories of the task queue"] = histories(t, c, cfg.Temporal.TaskQueue, id)
	var slack strings.Builder
	ws.mu.Lock()
	for _, m := range ws.messages {
		fmt.Fprintf(&slack, "%s\n%s\n", m.Text, m.Blocks)
	}
	ws.mu.Unlock()
	places["Slack"] = slack.String()
	for place, text := range places {
		if strings.Contains(text, token) {
			t.Errorf("%s holds the access token", place)
		}
	}
	if !strings.Contains(places["Slack"], "this service cannot serve") {
		t.Errorf("Slack does not show the service's error, so its check above proves nothing:\n%s", places["Slack"])
	}
}
