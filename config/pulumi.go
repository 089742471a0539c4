package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/blang/semver"
)

// PulumiCLI is the part of the pulumi block that says which Pulumi CLI
// runs the stacks, where its plugins come from and how it logs in to a
// Pulumi service backend.
type PulumiCLI struct {
	// CLI is the pulumi binary: a path (relative to this file), or a name
	// looked up on the worker's PATH. Empty: pulumi on the worker's PATH,
	// else the toolchain's (root/bin/pulumi); changeops dev uses the
	// toolchain's.
	CLI string `yaml:"cli"`
	// MinVersion refuses an older CLI at start-up; changeops' own floor
	// (internal/pulumienv.MinPulumiVersion) holds whatever it says.
	MinVersion string `yaml:"min_version"`
	// AccessTokenEnv names the variable holding the access token of a
	// Pulumi service backend (Pulumi Cloud, or a self-hosted service):
	// the CLI gets it as PULUMI_ACCESS_TOKEN, nothing else does.
	AccessTokenEnv string `yaml:"access_token_env"`
	// Offline turns automatic plugin acquisition off: a plugin that is
	// not installed fails the preview instead of being downloaded.
	// changeops dev's demo and the tests set it.
	Offline bool `yaml:"offline"`
	// AmbientPlugins lets the engine use plugin binaries on the worker's
	// PATH, as the Pulumi CLI does by default (off: see docs/your-stacks.md,
	// "Plugins").
	AmbientPlugins bool `yaml:"ambient_plugins"`
	// Plugins are installed into PULUMI_HOME at start-up.
	Plugins []Plugin `yaml:"plugins"`
	// PluginMirrors send plugin downloads to servers of your own.
	PluginMirrors []PluginMirror `yaml:"plugin_mirrors"`
}

// Plugin is one plugin installed at start-up (`pulumi plugin install`).
type Plugin struct {
	Name    string `yaml:"name"`
	Kind    string `yaml:"kind"` // default resource
	Version string `yaml:"version"`
	// Server is the plugin's download URL (--server), for a plugin that
	// is not Pulumi's own; a mirror still applies to it.
	Server string `yaml:"server"`
}

// PluginMirror downloads every plugin whose source URL matches Match (a
// regular expression) from URL instead: Pulumi's
// PULUMI_PLUGIN_DOWNLOAD_URL_OVERRIDES. Pulumi's own plugins have the
// source github://api.github.com/pulumi/pulumi-<name>; a plugin with a
// pluginDownloadURL has that URL.
type PluginMirror struct {
	Match string `yaml:"match"`
	URL   string `yaml:"url"`
}

// Secrets providers of stacks[].secrets_provider besides KMS URLs.
const (
	SecretsDefault    = "default"
	SecretsPassphrase = "passphrase"
	SecretsService    = "service"
)

// kmsSchemes are the secrets providers given as URLs, passed to the CLI
// as they are.
var kmsSchemes = []string{"awskms", "azurekeyvault", "gcpkms", "hashivault"}

// backendSchemes are the state backends the Pulumi CLI opens: its DIY
// backends, and a Pulumi service over http(s).
var backendSchemes = []string{"file", "s3", "azblob", "gs", "postgres", "postgresql", "http", "https"}

// pluginKinds are the kinds `pulumi plugin install` takes.
var pluginKinds = []string{"resource", "language", "analyzer", "converter", "tool"}

var pluginName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func (p *PulumiCLI) applyDefaults(base string) {
	// A bare name is looked up on PATH; a path is the file's.
	if strings.Contains(p.CLI, "/") {
		p.CLI = absFrom(base, p.CLI)
	}
	for i := range p.Plugins {
		setDefault(&p.Plugins[i].Kind, "resource")
	}
}

// ServiceBackend says whether the state backend is a Pulumi service
// (Pulumi Cloud or self-hosted), which keeps secrets with its own provider
// by default and needs an access token.
func (c *Config) ServiceBackend() bool {
	scheme, _, _ := strings.Cut(c.Pulumi.BackendURL, "://")
	return scheme == "http" || scheme == "https"
}

// PassphraseStacks are the stacks whose secrets provider is the
// passphrase: passphrase itself, or the default on a DIY backend. Only
// these need pulumi.passphrase_env.
func (c *Config) PassphraseStacks() []string {
	var out []string
	for _, s := range c.Stacks {
		switch s.SecretsProvider {
		case SecretsPassphrase:
		case "", SecretsDefault:
			if c.ServiceBackend() {
				continue
			}
		default:
			continue
		}
		out = append(out, s.Name)
	}
	return out
}

func (c *Config) passphraseMissing() string {
	return fmt.Sprintf("pulumi.passphrase_env names environment variable %s, which is not set, and stacks %s keep their secrets with the passphrase (secrets_provider passphrase, or the default on a DIY backend): export it, or give those stacks another stacks[].secrets_provider",
		c.Pulumi.PassphraseEnv, strings.Join(c.PassphraseStacks(), ", "))
}

// validatePulumi checks the backend, the CLI's settings, the plugins and
// mirrors and every stack's secrets provider. No message echoes a password.
func (c *Config) validatePulumi(bad func(string, ...any)) {
	p := c.Pulumi
	scheme, _, ok := strings.Cut(p.BackendURL, "://")
	if !ok || !slices.Contains(backendSchemes, scheme) {
		bad("pulumi.backend_url %q is not a state backend: use file://, s3://, azblob://, gs:// or postgres:// (DIY backends), or https:// for Pulumi Cloud (https://api.pulumi.com) or a self-hosted Pulumi service", redactURL(p.BackendURL))
	}
	// A password in the URL would reach the CLI's error messages, and from
	// there logs and workflow history; the backends read it from the
	// environment instead.
	if u, err := url.Parse(p.BackendURL); err == nil {
		_, hasPassword := u.User.Password()
		if u.User != nil && hasPassword || secretInQuery(u.Query()) {
			bad("pulumi.backend_url carries a password or key: remove it from the URL and set it in the worker's environment, which the backend reads (PGPASSWORD for postgres://, AWS_SECRET_ACCESS_KEY for s3://; pulumi.access_token_env for a Pulumi service)")
		}
	}
	switch {
	case c.ServiceBackend() && p.AccessTokenEnv == "":
		bad("pulumi.backend_url %s is a Pulumi service, but pulumi.access_token_env is empty: name the variable holding an access token (pul-...) for the worker to log in with", redactURL(p.BackendURL))
	case !c.ServiceBackend() && p.AccessTokenEnv != "":
		bad("pulumi.access_token_env is set, but pulumi.backend_url is not a Pulumi service (https://): remove it, so the token does not reach programs that do not need it")
	}
	if p.MinVersion != "" {
		if _, err := semver.ParseTolerant(p.MinVersion); err != nil {
			bad("pulumi.min_version %q is not a version: write it like v3.200.0", p.MinVersion)
		}
	}
	for i, pl := range p.Plugins {
		at := fmt.Sprintf("pulumi.plugins[%d]", i)
		if !pluginName.MatchString(pl.Name) {
			bad("%s.name %q is not a plugin name: write it as `pulumi plugin install` takes it, like aws or kubernetes", at, pl.Name)
		}
		if !slices.Contains(pluginKinds, pl.Kind) {
			bad("%s.kind %q is not a plugin kind: use %s (default resource)", at, pl.Kind, strings.Join(pluginKinds, ", "))
		}
		if _, err := semver.ParseTolerant(pl.Version); err != nil {
			bad("%s.version %q is not a version: pin one, like 6.66.0 (a start-up installs exactly it)", at, pl.Version)
		}
		if pl.Server != "" {
			checkPluginURL(at+".server", pl.Server, bad)
		}
	}
	for i, m := range p.PluginMirrors {
		at := fmt.Sprintf("pulumi.plugin_mirrors[%d]", i)
		// Pulumi reads the mirrors as "regexp=URL,regexp=URL".
		if _, err := regexp.Compile(m.Match); err != nil || m.Match == "" || strings.ContainsAny(m.Match, ",=") {
			bad("%s.match %q is not a regular expression without , and =: match plugin source URLs, like ^github://api.github.com/pulumi/", at, m.Match)
		}
		if strings.ContainsAny(m.URL, ",=") {
			bad("%s.url may not hold , or = (Pulumi separates mirrors with them)", at)
		}
		checkPluginURL(at+".url", m.URL, bad)
	}
	for i, s := range c.Stacks {
		at := fmt.Sprintf("stacks[%d]", i)
		if s.Name != "" {
			at = fmt.Sprintf("stacks[%d] (%s)", i, s.Name)
		}
		sp := s.SecretsProvider
		kms, _, isURL := strings.Cut(sp, "://")
		switch {
		case sp == "" || sp == SecretsDefault || sp == SecretsPassphrase:
		case sp == SecretsService:
			if !c.ServiceBackend() {
				bad("%s.secrets_provider service needs a Pulumi service backend (https://): use passphrase or a KMS URL on a DIY backend", at)
			}
		case isURL && slices.Contains(kmsSchemes, kms):
		default:
			bad("%s.secrets_provider %q is not a secrets provider: use default, passphrase, service, or a KMS URL (awskms://, azurekeyvault://, gcpkms://, hashivault://)", at, redactURL(sp))
		}
	}
}

// checkPluginURL refuses a plugin server URL that is not one, or that
// carries credentials (it would reach error messages and logs).
func checkPluginURL(at, raw string, bad func(string, ...any)) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		bad("%s %q is not a URL: write it like https://plugins.example.com/pulumi/", at, redactURL(raw))
		return
	}
	if u.User != nil {
		bad("%s carries credentials: serve plugins without them, or from a server the worker reaches", at)
	}
}

// secretInQuery says whether a URL's query names a credential, as
// postgres:// (password, sslpassword) and some blob stores accept it.
func secretInQuery(q url.Values) bool {
	for k := range q {
		switch k := strings.ToLower(k); {
		case strings.Contains(k, "password"), strings.Contains(k, "secret"), strings.Contains(k, "token"),
			strings.Contains(k, "accesskey"), k == "sig":
			return true
		}
	}
	return false
}

// redactURL hides a URL's password in a message.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not a URL)"
	}
	return u.Redacted()
}
