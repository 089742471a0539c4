// Build module for a second Pulumi CLI, the newest pkg/v3 the module proxy
// serves, beside the pinned one in ../go.mod: the end-to-end tests run a
// change with it (pulumi.cli), so changeops is proven against a CLI other
// than the one it is built with. Only the CLI: it runs the pinned YAML
// language host, which scripts/toolchain links beside it.
module github.com/changeops/changeops/toolchain/pulumi-newest

go 1.26.6

require (
	github.com/pulumi/pulumi/pkg/v3 v3.274.1
	github.com/pulumi/pulumi/sdk/v3 v3.274.1
)

// pkg/v3's own replace (its go.mod's other one points at its source tree).
replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
