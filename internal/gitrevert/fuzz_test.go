package gitrevert

import (
	"bytes"
	"testing"
)

// FuzzMergeLines holds the line merge to what a three-way merge must do,
// whatever the texts: never fail or panic; a side equal to the base yields
// the other side; equal sides yield that side; a conflict returns no text
// and a reason; a clean merge of texts that each end in a newline ends in
// one; binary input is a conflict, never a merge.
func FuzzMergeLines(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), []byte("a\nB\nc\n"), []byte("a\nb\nC\n"))
	f.Add([]byte("a\nb\n"), []byte("a\nb"), []byte("x\na\nb\n"))
	f.Add([]byte(""), []byte("new\n"), []byte(""))
	f.Add([]byte("x\nx\nx\n"), []byte("x\ny\nx\n"), []byte("x\nx\nz\n"))
	f.Add([]byte("only\n"), []byte(""), []byte("only\nmore\n"))
	f.Add([]byte("a\x00\n"), []byte("b\n"), []byte("c\n"))
	f.Fuzz(func(t *testing.T, base, ours, theirs []byte) {
		merged, why, err := mergeLines(t.Context(), base, ours, theirs, DefaultLimits)
		if err != nil {
			t.Fatalf("merge failed: %v", err)
		}
		ok := why == ""
		if bytes.Equal(ours, base) && (!ok || !bytes.Equal(merged, theirs)) {
			t.Fatalf("ours unchanged: merge = %q, %q; want theirs %q", merged, why, theirs)
		}
		if bytes.Equal(theirs, base) && (!ok || !bytes.Equal(merged, ours)) {
			t.Fatalf("theirs unchanged: merge = %q, %q; want ours %q", merged, why, ours)
		}
		if bytes.Equal(ours, theirs) && (!ok || !bytes.Equal(merged, ours)) {
			t.Fatalf("both sides equal: merge = %q, %q; want %q", merged, why, ours)
		}
		if !ok && merged != nil {
			t.Fatalf("a conflict returned text %q", merged)
		}
		if ok && !bytes.Equal(ours, base) && !bytes.Equal(theirs, base) && !bytes.Equal(ours, theirs) {
			if isBinary(base) || isBinary(ours) || isBinary(theirs) {
				t.Fatalf("binary texts merged to %q", merged)
			}
			nl := func(b []byte) bool { return len(b) > 0 && b[len(b)-1] == '\n' }
			if nl(base) && nl(ours) && nl(theirs) && len(merged) > 0 && !nl(merged) {
				t.Fatalf("texts ending in newlines merged to %q", merged)
			}
		}
	})
}
