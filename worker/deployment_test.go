package worker

import (
	"runtime/debug"
	"testing"

	"github.com/changeops/changeops/config"
)

func TestBuildIDOf(t *testing.T) {
	t.Parallel()
	const rev = "3f2a91c4e5d6a7b8c9d0e1f2a3b4c5d6e7f8a9b0"
	digest := func() string { return "0123456789ab" }
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "exe-0123456789ab"},
		{"installed at a version", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.2"}}, "v1.4.2"},
		{"built from a clean commit", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("false")}, "3f2a91c4e5d6"},
		{"a pseudo-version Go stamps from the commit",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261202101010-3f2a91c4e5d6"}, Settings: vcs("false")},
			"v0.0.0-20261202101010-3f2a91c4e5d6"},
		{"a dirty tree: two builds of it must differ",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261202101010-3f2a91c4e5d6+dirty"}, Settings: vcs("true")},
			"3f2a91c4e5d6-dirty-01234567"},
		{"no version control (go test, a copied tree)", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "exe-0123456789ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := buildIDOf(tc.info, digest); got != tc.want {
				t.Errorf("buildIDOf = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBuildIDPrefersConfig(t *testing.T) {
	if got := BuildID(config.Temporal{BuildID: "release-7"}); got != "release-7" {
		t.Errorf("BuildID with temporal.build_id = %q, want release-7", got)
	}
	// A test binary carries no version control stamp: its digest names it,
	// the same on every call.
	a, b := BuildID(config.Temporal{}), BuildID(config.Temporal{})
	if a == "" || a != b {
		t.Errorf("BuildID without config = %q then %q, want one stable ID", a, b)
	}
}

func TestDeploymentOptions(t *testing.T) {
	t.Parallel()
	off := false
	if o := deploymentOf(config.Temporal{DeploymentName: "changeops", BuildID: "b1", Versioning: &off}).options(); o.UseVersioning || o.Version.BuildID != "" {
		t.Errorf("temporal.versioning: false gave deployment options %+v, want none (an unversioned worker)", o)
	}
	o := deploymentOf(config.Temporal{DeploymentName: "changeops", BuildID: "b1"}).options()
	if !o.UseVersioning || o.Version.DeploymentName != "changeops" || o.Version.BuildID != "b1" {
		t.Errorf("versioning by default gave %+v, want build b1 of changeops", o)
	}
	if o.DefaultVersioningBehavior != 0 {
		t.Errorf("a default versioning behaviour is set (%v): every workflow must declare its own", o.DefaultVersioningBehavior)
	}
}
