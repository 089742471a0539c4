package gitrevert

import (
	"bytes"
	"testing"
)

// FuzzMergeLines holds the line merge to what a three-way merge must do,
// whatever the texts: never panic; a side equal to the base yields the
// other side; equal sides yield that side; a clean merge keeps every line
// both sides agree on with the base when only one side changed.
func FuzzMergeLines(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), []byte("a\nB\nc\n"), []byte("a\nb\nC\n"))
	f.Add([]byte("a\nb\n"), []byte("a\nb"), []byte("x\na\nb\n"))
	f.Add([]byte(""), []byte("new\n"), []byte(""))
	f.Add([]byte("x\nx\nx\n"), []byte("x\ny\nx\n"), []byte("x\nx\nz\n"))
	f.Add([]byte("only\n"), []byte(""), []byte("only\nmore\n"))
	f.Fuzz(func(t *testing.T, base, ours, theirs []byte) {
		merged, ok := mergeLines(base, ours, theirs)
		if bytes.Equal(ours, base) && (!ok || !bytes.Equal(merged, theirs)) {
			t.Fatalf("ours unchanged: merge = %q, %v; want theirs %q", merged, ok, theirs)
		}
		if bytes.Equal(theirs, base) && (!ok || !bytes.Equal(merged, ours)) {
			t.Fatalf("theirs unchanged: merge = %q, %v; want ours %q", merged, ok, ours)
		}
		if bytes.Equal(ours, theirs) && (!ok || !bytes.Equal(merged, ours)) {
			t.Fatalf("both sides equal: merge = %q, %v; want %q", merged, ok, ours)
		}
		if !ok && merged != nil {
			t.Fatalf("a conflict returned text %q", merged)
		}
	})
}
