package contract

import "strings"

// Quote is s as a string literal of a visibility query ('...'), with its
// backslashes and quotes escaped: a value from a config file, a build ID
// any poller can register, or a stack name never ends the literal early.
func Quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
