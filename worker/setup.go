package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Setup prepares a Temporal namespace for changeops, once per cluster
// (`changeops setup`, the compose one-shot): it creates the namespace when
// it is missing, with retention as how long finished runs stay searchable
// (the audit's reach), registers the search attributes, and returns once
// the namespace takes workflows. Workers do not create namespaces: on a
// shared cluster that is the operator's call.
func Setup(ctx context.Context, c client.Client, namespace string, retention time.Duration, logger *slog.Logger) error {
	_, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	var notFound *serviceerror.NamespaceNotFound
	switch {
	case errors.As(err, &notFound):
		_, err = c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
			Namespace:                        namespace,
			Description:                      "changeops change runs",
			WorkflowExecutionRetentionPeriod: durationpb.New(retention),
		})
		var exists *serviceerror.NamespaceAlreadyExists
		if err != nil && !errors.As(err, &exists) {
			return fmt.Errorf("create namespace %s: %w", namespace, err)
		}
		logger.Info("created namespace", "namespace", namespace, "retention", retention)
	case err != nil:
		return fmt.Errorf("describe namespace %s at temporal.address: %w", namespace, err)
	}
	// A new namespace reaches the frontends' caches some seconds after it
	// is written; until then it is "not found" to everything but Describe.
	_, err = backoff.Retry(ctx, func() (struct{}, error) {
		err := RegisterSearchAttributes(ctx, c, namespace)
		if err == nil {
			_, err = c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: namespace})
		}
		if errors.As(err, &notFound) {
			return struct{}{}, err
		}
		return struct{}{}, backoff.Permanent(err)
	}, backoff.WithBackOff(backoff.NewExponentialBackOff()), backoff.WithMaxElapsedTime(time.Minute))
	if err != nil {
		return fmt.Errorf("set up namespace %s: %w", namespace, err)
	}
	logger.Info("namespace ready", "namespace", namespace)
	return nil
}
