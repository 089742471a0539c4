package tests

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/internal/pulumienv"
)

// The reference deployment cannot run here (no Docker engine), so it is
// checked as Docker Compose itself reads it: compose-go, the loader and
// schema validation of `docker compose config`, on a copy of the files with
// deploy/env.example as the .env a user makes from it. Then what the
// deployment depends on is held to what CI tests: the Temporal server's
// version is the one tests/cluster_test.go runs on PostgreSQL, the worker
// starts after the setup one-shot, and deploy/changeops.yaml loads.
func TestComposeDeployment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range []string{"docker-compose.yml", "deploy/changeops.yaml"} {
		copyFile(t, filepath.Join("..", f), filepath.Join(dir, f))
	}
	copyFile(t, "../deploy/env.example", filepath.Join(dir, "deploy", ".env"))
	env := readEnvFile(t, filepath.Join(dir, "deploy", ".env"))

	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "docker-compose.yml")},
		cli.WithWorkingDirectory(dir), cli.WithEnv(envList(env)))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load as Compose reads it: %v", err)
	}
	services := map[string]types.ServiceConfig{}
	for _, s := range project.Services {
		services[s.Name] = s
	}
	for _, name := range []string{"postgresql", "temporal", "temporal-ui", "changeops-setup", "changeops"} {
		if _, ok := services[name]; !ok {
			t.Fatalf("service %s is missing; have %v", name, project.ServiceNames())
		}
	}

	// The server version users deploy is the one CI proves.
	want := "temporalio/auto-setup:" + strings.TrimPrefix(toolchainPin(t, "temporal_server_version"), "v")
	if got := services["temporal"].Image; got != want {
		t.Errorf("temporal image = %s, want %s (scripts/toolchain's temporal_server_version, which tests/cluster_test.go runs)", got, want)
	}
	if got := services["temporal"].Environment["DB"]; got == nil || *got != "postgres12" {
		t.Errorf("temporal DB = %v, want postgres12", got)
	}
	// Whoever reaches Temporal's frontend or UI can start and signal
	// workflows: the host publishes them on loopback only.
	for name, port := range map[string]uint32{"temporal": 7233, "temporal-ui": 8080} {
		ports := services[name].Ports
		if !slices.ContainsFunc(ports, func(p types.ServicePortConfig) bool { return p.Target == port }) {
			t.Errorf("%s ports = %+v; want %d published", name, ports, port)
		}
		for _, p := range ports {
			if p.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %d on %q; want 127.0.0.1 (the frontend and UI must not be open to the network)", name, p.Target, p.HostIP)
			}
		}
	}

	setup, worker := services["changeops-setup"], services["changeops"]
	if len(setup.Command) == 0 || setup.Command[0] != "setup" {
		t.Errorf("changeops-setup runs %v, want changeops setup", setup.Command)
	}
	if len(worker.Command) == 0 || worker.Command[0] != "worker" {
		t.Errorf("changeops runs %v, want changeops worker", worker.Command)
	}
	if dep, ok := worker.DependsOn["changeops-setup"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("changeops depends on %+v; want changeops-setup completed successfully", worker.DependsOn)
	}
	if dep, ok := setup.DependsOn["temporal"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("changeops-setup depends on %+v; want temporal healthy", setup.DependsOn)
	}
	if worker.Build == nil || worker.Build.Context != dir {
		t.Errorf("changeops builds from %+v, want the repository's Dockerfile", worker.Build)
	}
	if !slices.ContainsFunc(worker.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Target == "/var/lib/changeops" && v.Type == types.VolumeTypeVolume
	}) {
		t.Errorf("changeops volumes = %+v; want a named volume at /var/lib/changeops (git cache, workspaces, state)", worker.Volumes)
	}
	if !slices.ContainsFunc(worker.Ports, func(p types.ServicePortConfig) bool { return p.Target == 8088 }) {
		t.Errorf("changeops ports = %+v; want 8088 (webhooks, Slack, metrics)", worker.Ports)
	}

	// deploy/changeops.yaml loads with the env file's variables, reaches
	// Temporal by its service name, and listens beyond loopback.
	cfg, err := config.Load(filepath.Join(dir, "deploy", "changeops.yaml"), func(k string) string {
		if v, ok := env[k]; ok && v == "" {
			return "filled-in" // the user fills in the blanks
		} else if ok {
			return v
		}
		return ""
	})
	if err != nil {
		t.Fatalf("deploy/changeops.yaml: %v", err)
	}
	if cfg.Temporal.Address != "temporal:7233" {
		t.Errorf("temporal.address = %s, want the compose service temporal:7233", cfg.Temporal.Address)
	}
	if strings.HasPrefix(cfg.HTTP.Listen, "127.") {
		t.Errorf("http.listen = %s: unreachable from outside the container", cfg.HTTP.Listen)
	}
	for _, name := range []string{cfg.Repo.UsernameEnv, cfg.Repo.PasswordEnv, cfg.Pulumi.PassphraseEnv, cfg.Slack.BotTokenEnv, cfg.Slack.SigningSecretEnv, cfg.Webhooks.GitHubSecretEnv, cfg.Temporal.APIKeyEnv} {
		if _, ok := env[name]; name != "" && !ok {
			t.Errorf("deploy/changeops.yaml reads %s, which deploy/env.example does not list", name)
		}
	}
}

// The image is Pulumi's official one (every language host and runtime)
// at the CLI version changeops' tests run, with changeops on top: a
// non-root user whose home is the data volume, changeops as the
// entrypoint (the official image's is pulumi), and a health check on
// /healthz.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, re := range []string{
		`(?m)^FROM golang:\S+ AS build$`,
		`(?m)^FROM pulumi/pulumi:\$\{PULUMI_VERSION\}$`,
		`(?m)^ARG PULUMI_VERSION=` + regexp.QuoteMeta(strings.TrimPrefix(pulumienv.PulumiVersion, "v")) + `$`,
		`useradd --system --uid 10001 --home-dir /var/lib/changeops`,
		`(?m)^USER changeops$`,
		`(?m)^\s+HOME=/var/lib/changeops \\$`,
		`(?m)^VOLUME /var/lib/changeops$`,
		`(?s)\nHEALTHCHECK .*?CMD curl -fsS http://127\.0\.0\.1:8088/healthz`,
		`(?m)^ENTRYPOINT \["/opt/changeops/bin/changeops"\]$`,
	} {
		if !regexp.MustCompile(re).MatchString(df) {
			t.Errorf("Dockerfile lacks %s", re)
		}
	}
	if stages := regexp.MustCompile(`(?m)^FROM `).FindAllStringIndex(df, -1); len(stages) != 2 {
		t.Errorf("Dockerfile has %d stages, want a build stage and the runtime on pulumi/pulumi", len(stages))
	}
	// The Pulumi CLI comes from the official image, not from a build.
	if strings.Contains(df, "scripts/toolchain") {
		t.Error("Dockerfile builds the Pulumi toolchain; the official image ships it")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readEnvFile reads KEY=value lines, commented ones included as names a
// user may set.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "#"))
		if k, v, ok := strings.Cut(line, "="); ok && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`).MatchString(k) {
			env[k] = v
		}
	}
	return env
}

func envList(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// toolchainPin reads a version variable of scripts/toolchain.
func toolchainPin(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../scripts/toolchain")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("scripts/toolchain sets no %s", name)
	}
	return m[1]
}
