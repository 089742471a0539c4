package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// withPulumi is good with its pulumi block replaced, and stacks[0] given
// extra lines (indented as the stack's fields).
func withPulumi(pulumi, stack string) string {
	y := strings.Replace(good, "    verify:\n", stack+"    verify:\n", 1)
	return y + "pulumi:\n" + pulumi
}

// A stack whose secrets live in a KMS needs no passphrase: the config
// loads without PULUMI_CONFIG_PASSPHRASE, while a stack on the default
// (passphrase) provider of the same DIY backend is refused without it,
// naming the stack and the fix.
func TestPassphraseOnlyWhereAStackNeedsIt(t *testing.T) {
	t.Parallel()
	for _, sp := range []string{"awskms://alias/pulumi?region=eu-west-1", "azurekeyvault://vault.vault.azure.net/keys/pulumi",
		"gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k", "hashivault://pulumi"} {
		cfg, err := Parse([]byte(withPulumi("  backend_url: s3://state?region=eu-west-1\n", "    secrets_provider: "+sp+"\n")), "/etc/changeops", env(nil))
		if err != nil {
			t.Errorf("secrets_provider %s without a passphrase: %v", sp, err)
			continue
		}
		if cfg.Stacks[0].SecretsProvider != sp || cfg.Secrets.PulumiPassphrase != "" || cfg.PassphraseStacks() != nil {
			t.Errorf("secrets_provider %s: stack %+v, passphrase stacks %v", sp, cfg.Stacks[0], cfg.PassphraseStacks())
		}
	}
	for _, stack := range []string{"", "    secrets_provider: passphrase\n", "    secrets_provider: default\n"} {
		_, err := Parse([]byte(withPulumi("  backend_url: s3://state?region=eu-west-1\n", stack)), "/etc/changeops", env(nil))
		if err == nil || !strings.Contains(err.Error(), "stacks web keep their secrets with the passphrase") || !strings.Contains(err.Error(), "secrets_provider") {
			t.Errorf("passphrase stack %q without a passphrase: err = %v", stack, err)
		}
	}
}

// Pulumi Cloud: the URL and the token's variable pass, no passphrase is
// needed (the service keeps secrets), the token is a secret of the
// worker's (withheld from programs and checks, a pulumi.env pattern
// matching it is refused) and never printed with the config.
func TestPulumiCloudBackend(t *testing.T) {
	t.Parallel()
	const token = "pul-0123456789abcdef"
	vars := env(map[string]string{"PULUMI_ACCESS_TOKEN": token})
	for _, url := range []string{"https://api.pulumi.com", "https://pulumi.internal.example.com"} {
		cfg, err := Parse([]byte(withPulumi("  backend_url: "+url+"\n  access_token_env: PULUMI_ACCESS_TOKEN\n", "")), "/etc/changeops", vars)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if cfg.Secrets.PulumiAccessToken != token || !cfg.ServiceBackend() || cfg.PassphraseStacks() != nil {
			t.Errorf("%s: token %q, service %v, passphrase stacks %v", url, cfg.Secrets.PulumiAccessToken, cfg.ServiceBackend(), cfg.PassphraseStacks())
		}
		if !slices.Contains(cfg.SecretVarNames(), "PULUMI_ACCESS_TOKEN") || cfg.SecretVars()["PULUMI_ACCESS_TOKEN"] != "pulumi.access_token_env" {
			t.Errorf("PULUMI_ACCESS_TOKEN is not among the worker's secrets: %v", cfg.SecretVars())
		}
		for _, out := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg.Secrets)} {
			if strings.Contains(out, token) {
				t.Errorf("the config prints the token: %s", out)
			}
		}
	}
	_, err := Parse([]byte(withPulumi("  backend_url: https://api.pulumi.com\n  access_token_env: PULUMI_ACCESS_TOKEN\n  env: [PULUMI_*]\n", "")), "/etc/changeops", vars)
	if err == nil || !strings.Contains(err.Error(), `pulumi.env[0] "PULUMI_*" matches PULUMI_ACCESS_TOKEN (pulumi.access_token_env)`) {
		t.Errorf("a pattern matching the token's variable: err = %v", err)
	}
}

func TestPulumiRefusals(t *testing.T) {
	t.Parallel()
	vars := env(map[string]string{"PULUMI_CONFIG_PASSPHRASE": "s3cret", "TOKEN": "pul-x"})
	for _, tc := range []struct {
		name, pulumi, stack string
		want                []string
	}{
		{"cloud without a token", "  backend_url: https://api.pulumi.com\n", "",
			[]string{"is a Pulumi service, but pulumi.access_token_env is empty"}},
		{"token for a DIY backend", "  backend_url: s3://state\n  access_token_env: TOKEN\n", "",
			[]string{"pulumi.access_token_env is set, but pulumi.backend_url is not a Pulumi service"}},
		{"unknown scheme", "  backend_url: mysql://db/state\n", "",
			[]string{`pulumi.backend_url "mysql://db/state" is not a state backend`, "postgres://", "https://"}},
		{"not a URL", "  backend_url: /srv/state\n", "", []string{"is not a state backend"}},
		{"password in the URL", "  backend_url: postgres://u:hunter22@db/state\n", "",
			[]string{"carries a password"}},
		{"password in the URL's query", "  backend_url: postgres://db/state?sslmode=require&password=hunter22\n", "",
			[]string{"carries a password or key"}},
		{"unknown secrets provider", "  backend_url: s3://state\n", "    secrets_provider: vault://x\n",
			[]string{`stacks[0] (web).secrets_provider "vault://x" is not a secrets provider`, "awskms://"}},
		{"service provider on a DIY backend", "  backend_url: s3://state\n", "    secrets_provider: service\n",
			[]string{"secrets_provider service needs a Pulumi service backend"}},
		{"bad min_version", "  min_version: latest\n", "", []string{`pulumi.min_version "latest" is not a version`}},
		{"bad plugin", "  plugins:\n    - {name: AWS, kind: provider}\n", "",
			[]string{`pulumi.plugins[0].name "AWS"`, `pulumi.plugins[0].kind "provider"`, `pulumi.plugins[0].version ""`}},
		{"plugin server with credentials", "  plugins:\n    - {name: aws, version: 6.1.0, server: \"https://u:p@plugins.example.com/\"}\n", "",
			[]string{"pulumi.plugins[0].server carries credentials"}},
		{"bad mirror", "  plugin_mirrors:\n    - {match: \"^github://(\", url: \"https://m.example.com/a=b\"}\n", "",
			[]string{"pulumi.plugin_mirrors[0].match", "pulumi.plugin_mirrors[0].url may not hold , or ="}},
	} {
		_, err := Parse([]byte(withPulumi(tc.pulumi, tc.stack)), "/etc/changeops", vars)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "hunter22") {
			t.Errorf("%s: error prints the password: %v", tc.name, err)
		}
	}
}

// The CLI, plugins and mirrors load as written, with their defaults.
func TestPulumiCLISettings(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(withPulumi(`  cli: bin/pulumi
  min_version: v3.200.0
  offline: true
  plugins:
    - {name: aws, version: 6.66.0}
    - {name: policy, kind: analyzer, version: 1.2.0, server: "https://plugins.example.com/"}
  plugin_mirrors:
    - {match: "^github://api.github.com/pulumi/", url: "https://mirror.example.com/pulumi/"}
`, "")), "/etc/changeops", withPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pulumi
	if p.CLI != "/etc/changeops/bin/pulumi" || p.MinVersion != "v3.200.0" || !p.Offline || p.AmbientPlugins {
		t.Errorf("pulumi = %+v", p.PulumiCLI)
	}
	if p.Plugins[0].Kind != "resource" || p.Plugins[1].Kind != "analyzer" || p.Plugins[1].Server != "https://plugins.example.com/" {
		t.Errorf("plugins = %+v", p.Plugins)
	}
	if len(p.PluginMirrors) != 1 || p.PluginMirrors[0].URL != "https://mirror.example.com/pulumi/" {
		t.Errorf("plugin_mirrors = %+v", p.PluginMirrors)
	}
	// A bare name is looked up on PATH at start-up, not in the config's folder.
	cfg, err = Parse([]byte(withPulumi("  cli: pulumi\n", "")), "/etc/changeops", withPassphrase)
	if err != nil || cfg.Pulumi.CLI != "pulumi" {
		t.Errorf("cli: pulumi = %q, %v", cfg.Pulumi.CLI, err)
	}
}
