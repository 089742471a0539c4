//go:build linux

package worker

import "golang.org/x/sys/unix"

// hideFromChildren marks the worker process non-dumpable. The programs,
// providers and checks it starts run code from the repository as the
// worker's user; their own environment holds none of the worker's
// secrets, but a process of the same uid could still read the worker's
// through /proc/<pid>/environ, /proc/<pid>/mem or ptrace. A non-dumpable
// process's /proc files belong to root and only a process with
// CAP_SYS_PTRACE may attach to it, so a child running as the same
// non-root user cannot. It does not help when the worker runs as root
// (root has that capability): run it as a dedicated non-root user, as the
// Dockerfile does. The setting is not inherited across exec, so the
// children themselves stay ordinary processes (core dumps of the worker
// are off too, which is also what one wants of a process holding secrets).
func hideFromChildren() error {
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
