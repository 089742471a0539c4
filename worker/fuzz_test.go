package worker

import (
	"strings"
	"testing"
)

// FuzzParsePush feeds the push parser arbitrary bodies: it never panics,
// every refusal says why, and an accepted branch push names a branch that
// is not a tag or another kind of ref.
func FuzzParsePush(f *testing.F) {
	f.Add([]byte(`{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/acme/infra.git"}}`))
	f.Add([]byte(`{"ref":"refs/tags/v1"}`))
	f.Add([]byte(`{"branch":"staging","repo":"network"}`))
	f.Add([]byte(`{"ref":"refs/heads/main","project":{"git_ssh_url":"git@gitlab.com:acme/infra.git"}}`))
	f.Add([]byte(`{"repository":null,"ref":7}`))
	f.Add([]byte(`main`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parsePush(body)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("a refusal with no message")
			}
			return
		}
		if p.isBranch && strings.HasPrefix(p.branch, "refs/tags/") {
			t.Fatalf("a tag taken for a branch: %+v", p)
		}
		for _, u := range p.urls {
			if u == "" {
				t.Fatalf("an empty repository URL: %+v", p)
			}
			_ = normalizeURL(u)
		}
	})
}

// FuzzParsePull feeds the pull request parser arbitrary bodies: it never
// panics, every refusal says why, and an accepted delivery names a pull
// request by a positive number, a base branch, and an action short enough
// for a signal's payload.
func FuzzParsePull(f *testing.F) {
	f.Add([]byte(`{"action":"opened","number":2,"pull_request":{"base":{"ref":"main"}},"repository":{"clone_url":"https://github.com/acme/infra.git"}}`))
	f.Add([]byte(`{"object_kind":"merge_request","object_attributes":{"iid":1,"target_branch":"main","action":"open"},"project":{"git_http_url":"http://gitlab/a/b.git"}}`))
	f.Add([]byte(`{"number":-1,"pull_request":{"base":{"ref":""}}}`))
	f.Add([]byte(`{"action":7}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parsePull(body)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("a refusal with no message")
			}
			return
		}
		if p.number <= 0 || p.branch == "" || len(p.action) > 40 {
			t.Fatalf("accepted a delivery without a pull request: %+v", p)
		}
	})
}
