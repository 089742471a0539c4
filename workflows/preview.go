package workflows

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/changeops/changeops/activities"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// previewsPerRun bounds a preview's history: after this many previews it
// continues as new with the last one.
const previewsPerRun = 50

// previewIdle ends a preview whose pull request has not changed for this
// long; the next webhook starts it again (signal-with-start).
const previewIdle = 30 * 24 * time.Hour

// PreviewInput starts (or continues) the preview of one pull request.
type PreviewInput struct {
	Repo   string // a repos entry's name; empty for the repo block
	Number int
	UIURL  string
	// Last is the previous run's last preview, carried over a continue
	// as new.
	Last *PreviewStatus `json:",omitempty"`
}

// PreviewStatus is the last preview of a pull request (PreviewQuery).
type PreviewStatus struct {
	Number int
	// State is previewing, previewed, skipped (Plan.Skipped says why),
	// failed (Error) or closed.
	State string
	Plan  activities.PullPlan
	// Stacks are the stacks' plans at Plan.Tree, with their Steps digests:
	// what reviewers saw.
	Stacks []activities.PullStackPlan
	Error  string `json:",omitempty"`
	// Previews counts the previews this pull request had; Superseded, the
	// ones a newer push cut short.
	Previews   int
	Superseded int
	At         time.Time
	// Thread is the pull request's thread in Slack: every preview of it
	// goes there.
	Thread notify.Thread `json:",omitzero"`
}

// States of a preview.
const (
	PreviewPreviewing = "previewing"
	PreviewPreviewed  = "previewed"
	PreviewSkipped    = "skipped"
	PreviewFailed     = "failed"
	PreviewClosed     = "closed"
)

// PreviewWorkflow previews a pull request each time it changes, until it
// is closed or merged: its head merged into its branch's head, every stack
// that merge changes previewed without a lock or a state write, a commit
// status per stack and one comment on the pull request. A webhook's
// PullRequestSignal (signal-with-start) wakes it; the forge, not the
// signal, says what the pull request is. A push while a preview runs
// cancels that preview and starts again on the new head.
func PreviewWorkflow(ctx workflow.Context, in PreviewInput) error {
	p := &preview{in: in, st: PreviewStatus{Number: in.Number}}
	if in.Last != nil {
		p.st = *in.Last
	}
	if err := workflow.SetQueryHandler(ctx, contract.PreviewQuery, func() (PreviewStatus, error) { return p.st, nil }); err != nil {
		return err
	}
	events := workflow.GetSignalChannel(ctx, contract.PullRequestSignal)
	for i := 0; i < previewsPerRun; i++ {
		// Signal-with-start hands the first run its signal at once.
		ok, err := workflow.AwaitWithTimeout(ctx, previewIdle, func() bool { return events.Len() > 0 })
		if err != nil {
			return err
		}
		if !ok {
			return nil // idle: the next webhook starts it again
		}
		for events.ReceiveAsync(nil) {
			// One preview answers every change so far.
		}
		if p.once(ctx, events) {
			return nil
		}
	}
	return workflow.NewContinueAsNewError(ctx, PreviewWorkflow, PreviewInput{Repo: in.Repo, Number: in.Number, UIURL: in.UIURL, Last: &p.st})
}

type preview struct {
	in PreviewInput
	st PreviewStatus
}

// once previews the pull request as it is now, unless a new event
// supersedes it first; closed says the pull request is closed or merged.
func (p *preview) once(ctx workflow.Context, events workflow.ReceiveChannel) (closed bool) {
	cctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	done := false
	workflow.Go(cctx, func(ctx workflow.Context) {
		closed = p.run(ctx)
		done = true
	})
	_ = workflow.Await(ctx, func() bool { return done || events.Len() > 0 })
	if !done {
		// A newer push: this preview's statuses are on an older head
		// and its comment is replaced by the next preview.
		cancel()
		_ = workflow.Await(ctx, func() bool { return done })
		p.st.Superseded++
		return false
	}
	return closed
}

func (p *preview) run(ctx workflow.Context) (closed bool) {
	p.st.Previews++
	p.st.State, p.st.Error, p.st.At = PreviewPreviewing, "", workflow.Now(ctx)
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("Previewing pull request #%d", p.in.Number))
	var plan activities.PullPlan
	err := workflow.ExecuteActivity(withOptions(ctx, effectiveOptions(fmt.Sprintf("Merge #%d into its branch", p.in.Number))),
		a.PreparePull, activities.PullInput{Repo: p.in.Repo, Number: p.in.Number}).Get(ctx, &plan)
	if err != nil {
		if ctx.Err() == nil {
			p.st.State, p.st.Error = PreviewFailed, errorMessage(err)
		}
		return false
	}
	p.st.Plan, p.st.Stacks = plan, nil
	switch plan.Skipped {
	case "":
	case activities.SkipClosed:
		p.st.State = PreviewClosed
		return true
	case activities.SkipNoStacks:
		p.st.State = PreviewSkipped
		p.report(ctx)
		return false
	default:
		p.st.State = PreviewSkipped
		return false
	}
	var plans []activities.PullStackPlan
	for _, s := range plan.Stacks {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Previewing %s for #%d at %s", s.Name, p.in.Number, contract.ShortSHA(plan.Head)))
		var res activities.PullStackPlan
		err := workflow.ExecuteActivity(withOptions(ctx, pulumiOptions("Preview "+s.Name+" for #"+fmt.Sprint(p.in.Number), 30*time.Minute, s)),
			a.PreviewPull, activities.PullStackInput{
				Repo: p.in.Repo, Number: p.in.Number, Head: plan.Head, HeadRef: plan.HeadRef, BranchHead: plan.BranchHead, Tree: plan.Tree,
				Stack: s, TargetURL: p.link(ctx),
			}).Get(ctx, &res)
		if err != nil {
			if ctx.Err() == nil {
				p.st.State, p.st.Error = PreviewFailed, errorMessage(err)
			}
			return false
		}
		plans = append(plans, res)
	}
	p.st.Stacks = plans
	p.report(ctx)
	p.announce(ctx)
	if ctx.Err() == nil {
		p.st.State = PreviewPreviewed
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Previewed #%d at %s", p.in.Number, contract.ShortSHA(plan.Head)))
	}
	return false
}

// report updates the comment on the pull request.
func (p *preview) report(ctx workflow.Context) {
	err := workflow.ExecuteActivity(withOptions(ctx, notifyOptions(fmt.Sprintf("Comment on #%d", p.in.Number))),
		a.ReportPull, activities.PullReport{Repo: p.in.Repo, Plan: p.st.Plan, Stacks: p.st.Stacks}).Get(ctx, nil)
	if err != nil && ctx.Err() == nil {
		workflow.GetLogger(ctx).Warn("comment on pull request", "number", p.in.Number, "error", err)
	}
}

// announce posts the plan to the pull request's Slack thread (or the log).
func (p *preview) announce(ctx workflow.Context) {
	if ctx.Err() != nil {
		return
	}
	plan := p.st.Plan
	var names []string
	var plans []activities.PlanResult
	var failed []string
	for _, s := range p.st.Stacks {
		names = append(names, s.Stack)
		if s.Error != "" {
			failed = append(failed, s.Stack+": "+s.Error)
			continue
		}
		plans = append(plans, s.PlanResult)
	}
	detail := fmt.Sprintf("pull request #%d merged into %s at %s: %s", p.in.Number, plan.Branch, contract.ShortSHA(plan.BranchHead), plan.URL)
	if len(failed) > 0 {
		detail += "\n" + strings.Join(failed, "\n")
	}
	th, ok := deliver(ctx, notify.Event{
		Kind: notify.KindPlanned, RunID: workflow.GetInfo(ctx).WorkflowExecution.ID, Branch: plan.Branch, Commit: plan.Head,
		Subject: fmt.Sprintf("Pull request #%d: %s", p.in.Number, plan.Title), Author: plan.Author, Stacks: names,
		State: "previewed", Step: "preview of #" + fmt.Sprint(p.in.Number), Detail: detail, URL: p.link(ctx),
		Thread: p.st.Thread, Plans: notePlans(plans),
	})
	if ok {
		p.st.Thread = th
	}
}

// link is the preview in the Temporal UI, for the statuses' links.
func (p *preview) link(ctx workflow.Context) string {
	if p.in.UIURL == "" {
		return ""
	}
	info := workflow.GetInfo(ctx)
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimSuffix(p.in.UIURL, "/"),
		url.PathEscape(info.Namespace), url.PathEscape(info.WorkflowExecution.ID))
}
