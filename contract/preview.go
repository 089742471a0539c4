package contract

import "strconv"

// Names of the previews of pull requests (docs/pull-requests.md).
const (
	// PreviewWorkflowName previews one pull request, again on each push,
	// until it is closed or merged.
	PreviewWorkflowName = "PreviewWorkflow"
	// PullRequestSignal says the pull request changed (a webhook): the
	// preview reads it again from the forge, which alone says what it is.
	PullRequestSignal = "pull-request"
	// PreviewQuery returns the preview's PreviewStatus.
	PreviewQuery = "preview"
	// PreviewMarker starts changeops' one comment on a pull request.
	PreviewMarker = "<!-- changeops:preview -->"
)

// PreviewID names the preview of a pull request by the repository's path
// on its forge (repos[].forge.project, owner/name) and its number: unique
// however the configuration names the repository, as the pull request's
// own address is.
func PreviewID(project string, number int) string {
	return "preview/" + project + "/" + strconv.Itoa(number)
}

// PullRequestEvent is what a webhook says about a pull request; only a
// hint, since anyone who reaches Temporal can send it.
type PullRequestEvent struct {
	Number int
	Action string // as the forge names it: opened, synchronized, closed, ...
}

// StatusContext names a stack's commit status on the forge.
func StatusContext(stack string) string { return "changeops/" + stack }
