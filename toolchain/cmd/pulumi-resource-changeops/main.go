// Command pulumi-resource-changeops is changeops' own Pulumi provider. It
// manages plain files on the local machine, which is enough for the demo and
// the end-to-end tests to deploy something real and visible (a web page that
// an HTTP server serves, a file a check can read) without a cloud account.
//
// Resource types (package "changeops"):
//
//	changeops:index:File  inputs: path (absolute), content
//	                      outputs: path, content, sha256
package main

import (
	"context"
	"fmt"
	"os"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"

	"github.com/changeops/changeops/toolchain/internal/localfile"
)

// Version is set by the toolchain script with -ldflags; the plugin is
// installed under this version.
var Version = "0.1.0"

func main() {
	prov, err := infer.NewProviderBuilder().
		WithDisplayName("changeops").
		WithDescription("Local resources for changeops demos and tests.").
		WithResources(infer.Resource(localfile.File{})).
		Build()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build provider: %v\n", err)
		os.Exit(1)
	}
	if err := p.RunProvider(context.Background(), "changeops", Version, prov); err != nil {
		fmt.Fprintf(os.Stderr, "run provider: %v\n", err)
		os.Exit(1)
	}
}
