// Build module for Gitea, the real forge the end-to-end tests of pull
// request previews run against (tests/forge_test.go): scripts/toolchain
// builds code.gitea.io/gitea from it, with SQLite, into $CHANGEOPS_TOOLS/bin.
// v1.26.0 because v1.27's go.mod declares the module gitea.dev, which can be
// required under neither name.
module github.com/changeops/changeops/toolchain/gitea

go 1.26.6

require code.gitea.io/gitea v1.26.0

// Gitea's own replace lines (a dependency's replaces do not apply to the
// module that requires it, so they are copied here).
replace github.com/jaytaylor/html2text => github.com/Necoro/html2text v0.0.0-20250804200300-7bf1ce1c7347

replace github.com/nektos/act => gitea.com/gitea/act v0.261.10

replace github.com/urfave/cli/v3 => github.com/urfave/cli/v3 v3.4.1

replace go.yaml.in/yaml/v4 => go.yaml.in/yaml/v4 v4.0.0-rc.3

replace github.com/Azure/azure-sdk-for-go/sdk/azcore => github.com/Azure/azure-sdk-for-go/sdk/azcore v1.19.0

replace github.com/Azure/azure-sdk-for-go/sdk/storage/azblob => github.com/Azure/azure-sdk-for-go/sdk/storage/azblob v1.6.2

replace github.com/microsoft/go-mssqldb => github.com/microsoft/go-mssqldb v1.9.7
