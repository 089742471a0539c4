package activities

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"gopkg.in/yaml.v3"
)

// maxArtifacts bounds the artifacts a plan records.
const maxArtifacts = 20

var (
	// digestRef holds a content digest: sha256:<64 hex>.
	digestRef = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	// imageRef is a container image pinned by a tag or a digest, with a
	// registry or repository path: registry.example.com/team/web:1.4.2.
	imageRef = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[0-9a-f]{64})$`)
)

// artifacts are the plain values of a stack's settings file
// (Pulumi.<stack>.yaml in dir) that pin an artifact, as "key=value",
// sorted: what the audit needs to tell which build a change deployed.
// Secret values (secure:) are never read; a file that is missing or not
// YAML has none.
func artifacts(dir, stack string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "Pulumi."+stack+".yaml"))
	if err != nil {
		return nil
	}
	var settings struct {
		Config map[string]any `yaml:"config"`
	}
	if yaml.Unmarshal(b, &settings) != nil {
		return nil
	}
	var out []string
	for key, v := range settings.Config {
		s, ok := v.(string) // a secret is a map (secure: ...), never a string
		if ok && (digestRef.MatchString(s) || imageRef.MatchString(s)) {
			out = append(out, fmt.Sprintf("%s=%s", key, s))
		}
	}
	sort.Strings(out)
	if len(out) > maxArtifacts {
		out = out[:maxArtifacts]
	}
	return out
}
