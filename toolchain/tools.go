//go:build tools

// Package toolchain pins the Pulumi binaries changeops builds from source.
package toolchain

import (
	_ "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml"
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
