package activities

import (
	"context"
	"fmt"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate"
)

// maxPullCommits bounds the commits of a pull request whose authors and
// committers four eyes excludes; more are refused as too many to check.
const maxPullCommits = 1000

// PullApprovalsInput asks which approvals of a merged pull request count
// as a run's decision (approval: pull-request).
type PullApprovalsInput struct {
	Repo   string
	Number int
	// Head is the pull request head the preview the run matched showed:
	// approvals of another head do not count.
	Head string
	// Commit is the merge commit the run deploys.
	Commit    string
	Approvers []string
	FourEyes  bool
	Needed    int
}

// PullApprovalsResult says whose approvals count, and why the others do
// not.
type PullApprovalsResult struct {
	Approvers []string // people, sorted
	Refused   []string `json:",omitempty"`
	Enough    bool
}

// PullApprovals reads the pull request's approvals from the forge, with
// changeops' token, and counts those of the stacks' approvers (forge
// logins mapped to people through people[].forge, as the configuration is
// now) given on the previewed head. Under four eyes the pull request's
// author, the authors and committers of its commits and whoever merged it
// do not count.
func (a *Activities) PullApprovals(ctx context.Context, in PullApprovalsInput) (PullApprovalsResult, error) {
	var out PullApprovalsResult
	f, err := a.forgeOf(in.Repo)
	if err != nil {
		return out, err
	}
	pr, err := f.PullRequest(ctx, in.Number)
	if err != nil {
		return out, err
	}
	if pr.Head != in.Head {
		out.Refused = append(out.Refused, fmt.Sprintf("#%d's head %s is not the previewed %s", in.Number, contract.ShortSHA(pr.Head), contract.ShortSHA(in.Head)))
		return out, nil
	}
	approvals, err := f.Approvals(ctx, in.Number)
	if err != nil {
		return out, err
	}
	var excluded []gitIdentity
	if in.FourEyes {
		if excluded, err = a.pullIdentities(ctx, in.Repo, in.Commit); err != nil {
			return out, err
		}
	}
	author, authorKnown := gate.ForgeUser(a.Config.People, pr.Author)
	for _, ap := range approvals {
		id, ok := gate.ForgeUser(a.Config.People, ap.User)
		why := ""
		switch {
		case !ok:
			why = "is in no people entry's forge logins"
		case ap.Stale || (ap.Commit != "" && ap.Commit != in.Head):
			why = "approved another head"
		case !id.Allowed(in.Approvers, ""):
			why = fmt.Sprintf("%s is not an approver of the stacks", id.Person)
		case in.FourEyes && (ap.User == pr.Author || authorKnown && author.Person == id.Person):
			why = fmt.Sprintf("%s opened the pull request (four eyes)", id.Person)
		case in.FourEyes:
			for _, g := range excluded {
				if l := id.LinkedTo(g.name, g.email); l != "" {
					why = fmt.Sprintf("%s wrote or merged its commits (%s; four eyes)", id.Person, l)
					break
				}
			}
		}
		if why != "" {
			out.Refused = append(out.Refused, fmt.Sprintf("approval by %s: %s", ap.User, why))
			continue
		}
		if !slices.Contains(out.Approvers, id.Person) {
			out.Approvers = append(out.Approvers, id.Person)
		}
	}
	slices.Sort(out.Approvers)
	out.Enough = len(out.Approvers) >= max(in.Needed, 1)
	return out, nil
}

type gitIdentity struct{ name, email string }

// pullIdentities are the authors and committers of the merge commit and
// of every commit it brought in: those after its parents' merge base on
// its second parent's side.
func (a *Activities) pullIdentities(ctx context.Context, repoName, sha string) ([]gitIdentity, error) {
	cache, err := a.git(repoName)
	if err != nil {
		return nil, err
	}
	repo, release, err := cache.EnsureCommit(ctx, sha)
	defer release()
	if err != nil {
		return nil, gitError(err, sha, cache.URL())
	}
	merge, err := repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		return nil, fmt.Errorf("read merge commit %s: %w", contract.ShortSHA(sha), err)
	}
	out := []gitIdentity{{merge.Author.Name, merge.Author.Email}, {merge.Committer.Name, merge.Committer.Email}}
	if merge.NumParents() < 2 {
		return out, nil // squashed or rebased: the commit is the pull request's
	}
	first, err := merge.Parent(0)
	if err != nil {
		return nil, err
	}
	head, err := merge.Parent(1)
	if err != nil {
		return nil, err
	}
	bases, err := head.MergeBase(first)
	if err != nil {
		return nil, fmt.Errorf("merge base of %s: %w", contract.ShortSHA(sha), err)
	}
	stop := map[plumbing.Hash]bool{}
	for _, b := range bases {
		stop[b.Hash] = true
	}
	seen, queue := map[plumbing.Hash]bool{}, []*object.Commit{head}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		if seen[c.Hash] || stop[c.Hash] {
			continue
		}
		if seen[c.Hash] = true; len(seen) > maxPullCommits {
			return nil, fmt.Errorf("pull request merged by %s brings more than %d commits: too many to check for four eyes", contract.ShortSHA(sha), maxPullCommits)
		}
		out = append(out, gitIdentity{c.Author.Name, c.Author.Email}, gitIdentity{c.Committer.Name, c.Committer.Email})
		err := c.Parents().ForEach(func(p *object.Commit) error {
			queue = append(queue, p)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read parents of %s: %w", contract.ShortSHA(c.Hash.String()), err)
		}
	}
	return out, nil
}
