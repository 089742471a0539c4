package activities

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestArtifactsArePinnedValuesOnly(t *testing.T) {
	dir := t.TempDir()
	digest := "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	settings := `config:
  web:image: registry.example.com/team/web:1.4.2
  web:worker: ghcr.io/acme/worker@` + digest + `
  web:bundle: "` + digest + `"
  web:replicas: 3
  web:region: eu-west-1
  web:homepage: https://example.com:8443/web
  web:name: web
  web:token:
    secure: AAABAKMvnFh0dGVzdC1zZWNyZXQ=
`
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.prod.yaml"), []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	got := artifacts(dir, "prod")
	want := []string{
		"web:bundle=" + digest,
		"web:image=registry.example.com/team/web:1.4.2",
		"web:worker=ghcr.io/acme/worker@" + digest,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("artifacts = %q, want %q", got, want)
	}
	if a := artifacts(dir, "missing"); a != nil {
		t.Fatalf("a stack without a settings file has artifacts %q", a)
	}
}
