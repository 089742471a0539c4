package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/changeops/changeops/internal/testkit/testca"
)

func TestTemporalTLSLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := testca.New(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("changeops")
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ca.Issue("other")
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name string
		tls  TemporalTLS
		want []string // every fragment must appear in the error; none: no error
	}{
		{"empty block: system roots, no client certificate", TemporalTLS{}, nil},
		{"CA and client certificate", TemporalTLS{CAFile: ca.CertFile, CertFile: cert, KeyFile: key}, nil},
		{"unreadable CA", TemporalTLS{CAFile: missing},
			[]string{"temporal.tls.ca_file " + missing + ": cannot open it: no such file or directory", "PEM file of the CA"}},
		{"CA without a certificate", TemporalTLS{CAFile: notPEM},
			[]string{"temporal.tls.ca_file " + notPEM + ": no PEM certificate in it"}},
		{"certificate without key", TemporalTLS{CertFile: cert},
			[]string{"temporal.tls.cert_file is set but temporal.tls.key_file is not: set both"}},
		{"key without certificate", TemporalTLS{KeyFile: key},
			[]string{"temporal.tls.key_file is set but temporal.tls.cert_file is not: set both"}},
		{"unreadable key", TemporalTLS{CertFile: cert, KeyFile: missing},
			[]string{"temporal.tls.key_file " + missing + ": cannot open it"}},
		{"key of another certificate", TemporalTLS{CertFile: cert, KeyFile: otherKey},
			[]string{"temporal.tls.cert_file " + cert + " and key_file " + otherKey + " are not a client certificate and its key", "does not match"}},
		{"a CA file given as the certificate", TemporalTLS{CertFile: notPEM, KeyFile: key},
			[]string{"temporal.tls.cert_file " + notPEM, "are not a client certificate"}},
		{"every error at once", TemporalTLS{CAFile: notPEM, CertFile: cert},
			[]string{"temporal.tls.ca_file", "temporal.tls.key_file is not"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roots, pair, err := tc.tls.Load()
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if (roots != nil) != (tc.tls.CAFile != "") || (pair != nil) != (tc.tls.CertFile != "") {
					t.Errorf("roots %v, certificate %v: want each exactly when its file is set", roots != nil, pair != nil)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if roots != nil || pair != nil {
				t.Error("a failed load returned roots or a certificate")
			}
		})
	}
}

func TestTemporalSecurityFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := testca.New(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.Issue("client"); err != nil {
		t.Fatal(err)
	}
	secured := `
repo:
  url: /srv/infra.git
temporal:
  tls:
    ca_file: ca.pem
    cert_file: client.pem
    key_file: /abs/not/used/client-key.pem
    server_name: temporal.internal
  api_key_env: TEMPORAL_API_KEY
stacks:
  - {name: web, path: stacks/web, stack: prod, approval: auto}
`
	vars := map[string]string{"PULUMI_CONFIG_PASSPHRASE": "x", "TEMPORAL_API_KEY": "key-123"}

	// Relative paths resolve against the config's folder; the absolute
	// key path does not exist, so the file is refused naming it.
	_, err = Parse([]byte(secured), dir, env(vars))
	if err == nil || !strings.Contains(err.Error(), "temporal.tls.key_file /abs/not/used/client-key.pem: cannot open it") {
		t.Fatalf("Parse = %v, want the missing key file named", err)
	}
	cfg, err := Parse([]byte(strings.Replace(secured, "/abs/not/used/client-key.pem", "client-key.pem", 1)), dir, env(vars))
	if err != nil {
		t.Fatal(err)
	}
	got := *cfg.Temporal.TLS
	want := TemporalTLS{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client-key.pem"), ServerName: "temporal.internal"}
	if got != want {
		t.Errorf("temporal.tls = %+v, want %+v", got, want)
	}
	if cfg.Secrets.TemporalAPIKey != "key-123" || !cfg.Temporal.Secured() {
		t.Errorf("API key %q, secured %v: want key-123 and TLS on", cfg.Secrets.TemporalAPIKey, cfg.Temporal.Secured())
	}

	// The key's variable must be set.
	delete(vars, "TEMPORAL_API_KEY")
	_, err = Parse([]byte(strings.Replace(secured, "/abs/not/used/client-key.pem", "client-key.pem", 1)), dir, env(vars))
	if err == nil || !strings.Contains(err.Error(), "temporal.api_key_env names environment variable TEMPORAL_API_KEY, which is not set") {
		t.Errorf("Parse without the key = %v, want the variable named", err)
	}

	// An API key alone turns TLS on; neither is plaintext.
	if !(Temporal{APIKeyEnv: "K"}).Secured() || (Temporal{}).Secured() || !(Temporal{TLS: &TemporalTLS{}}).Secured() {
		t.Error("Secured: want true with an API key or a tls block, false with neither")
	}
}

func TestTemporalDeployment(t *testing.T) {
	t.Parallel()
	base := "repo:\n  url: /srv/infra.git\nstacks:\n  - {name: web, path: stacks/web, stack: prod, approval: auto}\n"
	parse := func(temporal string) (*Config, error) {
		return Parse([]byte(base+temporal), "/etc/changeops", withPassphrase)
	}

	cfg, err := parse("")
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Temporal; d.DeploymentName != "changeops" || d.BuildID != "" || !d.Versioned() {
		t.Errorf("defaults: deployment %q, build %q, versioned %v; want changeops, the binary's (empty here), on", d.DeploymentName, d.BuildID, d.Versioned())
	}
	cfg, err = parse("temporal:\n  deployment_name: changeops-eu\n  build_id: v1.4.2\n  versioning: false\n")
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Temporal; d.DeploymentName != "changeops-eu" || d.BuildID != "v1.4.2" || d.Versioned() {
		t.Errorf("set: deployment %q, build %q, versioned %v; want changeops-eu, v1.4.2, off", d.DeploymentName, d.BuildID, d.Versioned())
	}

	for _, tc := range []struct{ temporal, want string }{
		{"temporal:\n  deployment_name: changeops.eu\n", `temporal.deployment_name "changeops.eu" has a dot`},
		{"temporal:\n  build_id: \"v1 2\"\n", `temporal.build_id "v1 2" has a space`},
		{"temporal:\n  build_id: __unversioned__\n", "set temporal.versioning: false instead"},
		{"temporal:\n  build_id: " + strings.Repeat("a", 256) + "\n", "temporal.build_id is 256 bytes long"},
	} {
		if _, err := parse(tc.temporal); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.temporal, err, tc.want)
		}
	}
}
