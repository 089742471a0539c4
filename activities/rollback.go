package activities

import (
	"context"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gitrevert"
)

// Revert pushes the revert commit of a failed change to its branch. It is
// idempotent: a revert of the commit already on the branch is reused, so a
// retry after a push that was not reported never pushes a second one.
func (a *Activities) Revert(ctx context.Context, in RevertInput) (RevertResult, error) {
	cache, err := a.git(in.Repo)
	if err != nil {
		return RevertResult{}, err
	}
	repo, _ := a.Config.RepoByName(in.Repo)
	// Heartbeats let Temporal notice a dead worker within the heartbeat
	// timeout and retry elsewhere; the retry finds a pushed revert.
	progress := startHeartbeat(ctx, a.HeartbeatEvery, "revert "+contract.ShortSHA(in.Commit))
	defer progress.Stop()
	res, err := gitrevert.RevertAndPush(ctx, cache, gitrevert.Request{
		Branch:     in.Branch,
		Commit:     in.Commit,
		Subject:    in.Subject,
		RunID:      in.RunID,
		Author:     object.Signature{Name: repo.AuthorName, Email: repo.AuthorEmail},
		BeforePush: a.beforePush,
	})
	if err != nil {
		return RevertResult{}, gitError(err, in.Commit, cache.URL())
	}
	if res.Revert != "" && !res.Reused {
		a.pause(ctx, PauseAfterRevertPush)
	}
	return RevertResult{Revert: res.Revert, Reused: res.Reused, NoChange: res.NoChange, Conflicts: res.Conflicts}, nil
}

// LastGood finds the commit of the stack's newest succeeded change run, in
// Temporal's visibility. (The per-stack queue will hold it once it exists.)
func (a *Activities) LastGood(ctx context.Context, in LastGoodInput) (LastGoodResult, error) {
	if a.Temporal == nil {
		return LastGoodResult{}, fmt.Errorf("last good commit of %s: no Temporal client", in.Stack)
	}
	// Visibility lists closed runs newest first; ORDER BY is not portable
	// across visibility stores.
	resp, err := a.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = '%s' AND %s = '%s' AND %s = '%s'",
			contract.ChangeWorkflowName, contract.ChangeStacks.GetName(), in.Stack, contract.ChangeState.GetName(), contract.StateSucceeded),
		PageSize: 1,
	})
	if err != nil {
		return LastGoodResult{}, fmt.Errorf("last good commit of %s: %w", in.Stack, err)
	}
	for _, e := range resp.GetExecutions() {
		var sha string
		if p, ok := e.GetSearchAttributes().GetIndexedFields()[contract.ChangeCommit.GetName()]; ok {
			if err := decode(p, &sha); err != nil {
				return LastGoodResult{}, err
			}
		}
		if sha != "" {
			return LastGoodResult{Commit: sha, RunID: e.GetExecution().GetWorkflowId(), Found: true}, nil
		}
	}
	return LastGoodResult{}, nil
}

func decode(p *commonpb.Payload, into any) error {
	return converter.GetDefaultDataConverter().FromPayload(p, into)
}
