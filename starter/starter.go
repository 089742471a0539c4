// Package starter is the client side of changeops: start a change run by
// hand, decide a waiting one, and read runs back. The CLI and the tests use
// the same functions, so what the tests prove is what users run.
package starter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/crypto/ssh"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
	"github.com/changeops/changeops/internal/gitrepo"
	"github.com/changeops/changeops/workflows"
)

// Started says which run a Start found or began.
type Started struct {
	ID      string
	Commit  string
	Existed bool
}

// Target is what to start: a commit (full or abbreviated SHA) on a
// repository's branch. Repo is a repos entry's name, empty for the repo
// block; Branch defaults to the repository's branch.
type Target struct {
	Repo, Branch, Commit string
}

// Start resolves the commit on the repository's remote (through cache, its
// cached clone) and starts the commit's change run, or finds the one that
// exists.
func Start(ctx context.Context, c client.Client, cfg *config.Config, cache *gitrepo.Repo, t Target) (Started, error) {
	repo, ok := cfg.RepoByName(t.Repo)
	if !ok {
		return Started{}, fmt.Errorf("repository %q is not in the configuration: name one of repos[].name", t.Repo)
	}
	if t.Branch == "" {
		t.Branch = repo.Branch
	}
	g, release, err := cache.Fetch(ctx)
	defer release()
	if err != nil {
		return Started{}, err
	}
	sha, err := gitrepo.Resolve(g, t.Commit)
	if err != nil {
		return Started{}, fmt.Errorf("commit %s is not on %s: check the SHA and that it was pushed", t.Commit, repo.URL)
	}
	// Only merged commits deploy; the run's Inspect checks again.
	switch on, head, err := gitrepo.OnBranch(g, t.Branch, sha); {
	case err != nil:
		return Started{}, err
	case !on:
		return Started{}, &gitrepo.NotOnBranchError{SHA: sha, Branch: t.Branch, URL: repo.URL, Head: head}
	}
	id := contract.ChangeID(t.Repo, t.Branch, sha)
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    id,
		TaskQueue:             cfg.Temporal.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		// Tell "found" from "started": the caller prints which.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("Change %s on %s (started by hand)", sha[:7], t.Branch),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			contract.ChangeCommit.ValueSet(sha),
			contract.ChangeBranch.ValueSet(t.Branch),
			contract.ChangeState.ValueSet(contract.StatePlanning),
		),
	}, contract.ChangeWorkflowName, workflows.ChangeInput{Repo: t.Repo, Branch: t.Branch, Commit: sha, UIURL: cfg.Temporal.UIURL})
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &already):
		return Started{ID: id, Commit: sha, Existed: true}, nil
	case err != nil:
		return Started{}, fmt.Errorf("start change run %s: %w", id, err)
	}
	return Started{ID: id, Commit: sha}, nil
}

// Decision is what a person decides on the command line, signed with the
// SSH key of their people entry.
type Decision struct {
	Approve bool
	Comment string
	// Person is the deciding people entry; Signer holds one of its keys.
	Person string
	Signer ssh.Signer
}

// Decide signs d for the run and the plan it shows now, and sends it.
func Decide(ctx context.Context, c client.Client, id string, d Decision) (workflows.DecisionResult, error) {
	run, err := Status(ctx, c, id)
	if err != nil {
		return workflows.DecisionResult{}, err
	}
	st := run.Status
	if st == nil {
		return workflows.DecisionResult{}, fmt.Errorf("decide %s: %s", id, run.Detail)
	}
	signed, err := gate.SignSSH(d.Signer, gate.Claim{
		WorkflowID: st.ID, RunID: st.RunID, Approve: d.Approve, Comment: d.Comment,
		Plan: st.PlanDigest(), Person: d.Person, IssuedAt: time.Now(),
	})
	if err != nil {
		return workflows.DecisionResult{}, err
	}
	return Send(ctx, c, id, workflows.DecisionRequest{Signed: &signed})
}

// Send delivers a decision request through the validated Update, so a
// refusal (unsigned, not an approver, linked to the commit under four
// eyes, not waiting) comes back at once as an error saying why.
func Send(ctx context.Context, c client.Client, id string, req workflows.DecisionRequest) (workflows.DecisionResult, error) {
	return update[workflows.DecisionResult](ctx, c, id, contract.DecisionUpdate, req)
}

// update sends a validated Update and waits for its result; a validator's
// refusal becomes "refused: <why>".
func update[T any](ctx context.Context, c client.Client, id, name string, arg any) (T, error) {
	var res T
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateName:   name,
		Args:         []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return res, refusal(id, err)
	}
	if err := h.Get(ctx, &res); err != nil {
		return res, refusal(id, err)
	}
	return res, nil
}

func refusal(id string, err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return fmt.Errorf("refused: %s", appErr.Message())
	}
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return fmt.Errorf("no running change %s: it finished or never started (see changeops status)", id)
	}
	return fmt.Errorf("decide %s: %w", id, err)
}

// Resolve turns a workflow ID or a unique prefix of a commit SHA into a
// change run's workflow ID.
func Resolve(ctx context.Context, c client.Client, ref string) (string, error) {
	if strings.HasPrefix(ref, "change/") || strings.HasPrefix(ref, "drift/") {
		return ref, nil
	}
	if len(ref) < 4 || strings.Trim(ref, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%q is neither a workflow ID (change/<branch>/<sha>) nor a commit SHA prefix of 4+ hex digits (drift runs are named drift/<stack>/...)", ref)
	}
	runs, err := List(ctx, c, Filter{CommitPrefix: ref, Kind: KindChange, Limit: 10})
	if err != nil {
		return "", err
	}
	ids := map[string]bool{}
	var uniq []string
	for _, r := range runs {
		if !ids[r.ID] {
			ids[r.ID] = true
			uniq = append(uniq, r.ID)
		}
	}
	switch len(uniq) {
	case 0:
		return "", fmt.Errorf("no change run for a commit starting with %s", ref)
	case 1:
		return uniq[0], nil
	}
	return "", fmt.Errorf("%s matches several runs (%s): give more of the SHA", ref, strings.Join(uniq, ", "))
}

// AckRewrite resumes a branch's watcher held by a history rewrite, through a
// validated Update: "no rewrite waiting" comes back at once. repo is a repos
// entry's name, empty for the repo block.
func AckRewrite(ctx context.Context, c client.Client, repo, branch, user string) (workflows.WatcherStatus, error) {
	return update[workflows.WatcherStatus](ctx, c, contract.WatcherID(repo, branch), contract.AckRewriteUpdate, workflows.AckRequest{User: user})
}
