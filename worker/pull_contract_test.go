package worker

import "testing"

// Contract tests: parsePull against the pull request webhooks the forges
// document (GitHub's pull_request "opened" example, GitLab's Merge Request
// Hook example, Gitea's pull_request payload), trimmed to the fields around
// the ones read. The Gitea one is also delivered by a real Gitea in
// tests/forge_test.go.
func TestPullWebhookContracts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body   string
		number       int
		branch, url0 string
	}{
		{"github pull_request", `{
  "action": "opened",
  "number": 2,
  "pull_request": {
    "url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/2",
    "number": 2,
    "state": "open",
    "title": "Update the README with new information.",
    "user": {"login": "Codertocat", "id": 21031067},
    "head": {"label": "Codertocat:changes", "ref": "changes", "sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821"},
    "base": {"label": "Codertocat:master", "ref": "master", "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"}
  },
  "repository": {
    "id": 186853002,
    "name": "Hello-World",
    "full_name": "Codertocat/Hello-World",
    "html_url": "https://github.com/Codertocat/Hello-World",
    "git_url": "git://github.com/Codertocat/Hello-World.git",
    "ssh_url": "git@github.com:Codertocat/Hello-World.git",
    "clone_url": "https://github.com/Codertocat/Hello-World.git"
  },
  "sender": {"login": "Codertocat", "id": 21031067}
}`, 2, "master", "https://github.com/Codertocat/Hello-World.git"},
		{"gitlab merge request hook", `{
  "object_kind": "merge_request",
  "event_type": "merge_request",
  "user": {"id": 1, "name": "Administrator", "username": "root"},
  "project": {
    "id": 1,
    "name": "Gitlab Test",
    "web_url": "http://example.com/gitlabhq/gitlab-test",
    "git_ssh_url": "git@example.com:gitlabhq/gitlab-test.git",
    "git_http_url": "http://example.com/gitlabhq/gitlab-test.git",
    "path_with_namespace": "gitlabhq/gitlab-test",
    "default_branch": "master"
  },
  "repository": {"name": "Gitlab Test", "url": "http://example.com/gitlabhq/gitlab-test.git", "homepage": "http://example.com/gitlabhq/gitlab-test"},
  "object_attributes": {
    "id": 99,
    "iid": 1,
    "target_branch": "master",
    "source_branch": "ms-viewport",
    "source_project_id": 14,
    "target_project_id": 14,
    "title": "MS-Viewport",
    "state": "opened",
    "action": "open",
    "last_commit": {"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}
  }
}`, 1, "master", "git@example.com:gitlabhq/gitlab-test.git"},
		{"gitea pull_request", `{
  "action": "synchronized",
  "number": 12,
  "pull_request": {
    "id": 30, "number": 12, "title": "Serve v2", "state": "open",
    "user": {"login": "alice"},
    "head": {"label": "feature", "ref": "feature", "sha": "9a8b7c6d", "repo_id": 3},
    "base": {"label": "main", "ref": "main", "sha": "1a2b3c4d", "repo_id": 3}
  },
  "repository": {"id": 3, "full_name": "ops/infra", "html_url": "https://gitea.example.com/ops/infra", "clone_url": "https://gitea.example.com/ops/infra.git", "ssh_url": "git@gitea.example.com:ops/infra.git"},
  "sender": {"login": "alice"}
}`, 12, "main", "https://gitea.example.com/ops/infra.git"},
	}
	for _, c := range cases {
		p, err := parsePull([]byte(c.body))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		found := false
		for _, u := range p.urls {
			found = found || u == c.url0
		}
		if p.number != c.number || p.branch != c.branch || !found {
			t.Fatalf("%s: read #%d into %q with URLs %v; want #%d into %q with %s", c.name, p.number, p.branch, p.urls, c.number, c.branch, c.url0)
		}
	}
	if _, err := parsePull([]byte(`{"action":"opened"}`)); err == nil {
		t.Fatal("a delivery naming no pull request was read")
	}
}
