//go:build !linux

package worker

// hideFromChildren does nothing here: PR_SET_DUMPABLE is Linux's (see
// dumpable_linux.go).
func hideFromChildren() error { return nil }
