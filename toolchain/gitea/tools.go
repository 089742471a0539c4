//go:build tools

// Package gitea pins the Gitea server scripts/toolchain builds for the tests.
package gitea

import _ "code.gitea.io/gitea"
