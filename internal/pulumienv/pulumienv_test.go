package pulumienv

import "testing"

func TestBackendURLSkipsSidecars(t *testing.T) {
	for in, want := range map[string]string{
		"file:///srv/state":                 "file:///srv/state?metadata=skip",
		"file:///srv/state?no_tmp_dir=true": "file:///srv/state?no_tmp_dir=true&metadata=skip",
		"file:///srv/state?metadata=skip":   "file:///srv/state?metadata=skip",
		"s3://bucket?region=eu-west-1":      "s3://bucket?region=eu-west-1",
		"postgres://u@db/pulumi":            "postgres://u@db/pulumi",
	} {
		if got := BackendURL(in); got != want {
			t.Errorf("BackendURL(%q) = %q, want %q", in, got, want)
		}
	}
}
