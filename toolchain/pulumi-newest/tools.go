//go:build tools

// Package newest pins the second Pulumi CLI scripts/toolchain builds.
package newest

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
