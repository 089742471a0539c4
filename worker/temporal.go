package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
)

// Dial connects to Temporal, waiting for it while ctx allows: at start-up
// the server (the dev server started beside us, or a cluster restarting) may
// not answer yet. The client reports the SDK's metrics to mh (nil: none).
// The connection is secured as ClientOptions says; apiKey is the value of
// temporal.api_key_env.
func Dial(ctx context.Context, cfg config.Temporal, apiKey string, logger *slog.Logger, mh client.MetricsHandler) (client.Client, error) {
	opts, err := ClientOptions(cfg, apiKey)
	if err != nil {
		return nil, err
	}
	opts.Logger = tlog.NewStructuredLogger(logger)
	opts.MetricsHandler = mh
	wait := 200 * time.Millisecond
	warned := false
	for {
		c, err := client.DialContext(ctx, opts)
		if err == nil {
			return c, nil
		}
		if !warned {
			logger.Warn("waiting for Temporal", "address", cfg.Address, "error", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to Temporal at temporal.address %s: %w", cfg.Address, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// RegisterSearchAttributes adds the attributes changeops searches by to the
// namespace, once; an attribute that exists with another type is an error
// that names it.
func RegisterSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	// Describe first: on SQL visibility, listing the attributes of a
	// missing namespace is "unavailable", which clients retry for a
	// minute, rather than "not found".
	_, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	var notFound *serviceerror.NamespaceNotFound
	if errors.As(err, &notFound) {
		return fmt.Errorf("temporal.namespace %s does not exist: create it with `changeops setup --config F` (once per cluster): %w", namespace, err)
	}
	if err != nil {
		return fmt.Errorf("describe namespace %s: %w", namespace, err)
	}
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of namespace %s: %w", namespace, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for _, key := range contract.SearchAttributes {
		t, ok := have.GetCustomAttributes()[key.GetName()]
		switch {
		case !ok:
			missing[key.GetName()] = key.GetValueType()
		case t != key.GetValueType():
			return fmt.Errorf("search attribute %s exists in namespace %s as %s, changeops needs %s: remove it or use another namespace",
				key.GetName(), namespace, t, key.GetValueType())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	})
	if err != nil {
		return fmt.Errorf("register search attributes in namespace %s (needs operator rights): %w", namespace, err)
	}
	return nil
}
