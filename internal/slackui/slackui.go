// Package slackui renders a change run's Slack messages as Block Kit: the
// parent message that shows the run's state, the step messages in its
// thread, and the approval buttons. It is pure: the same event always
// renders the same blocks, which golden files pin down.
package slackui

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/notify"
)

// Action IDs of the approval buttons; each button's value is a Button.
// Nothing here needs to be secret: every click is verified and authorised
// before it decides anything.
const (
	ActionApprove   = "changeops_approve"
	ActionReject    = "changeops_reject"
	decisionBlockID = "changeops_decision"
)

// Slack's limits (api.slack.com/reference/block-kit/blocks).
const (
	maxSectionText = 3000
	maxBlocks      = 50
	// maxPlans keeps a plan message within maxBlocks with room for notes.
	maxPlans = 20
	// maxListed bounds the changed paths a "received" message lists.
	maxListed = 15
)

// Message is one Slack message: its blocks and the plain text Slack shows
// in notifications and where blocks cannot be shown.
type Message struct {
	Text   string
	Blocks []slack.Block
}

// Options of a Slack message, for chat.postMessage or chat.update.
func (m Message) Options() []slack.MsgOption {
	return []slack.MsgOption{slack.MsgOptionText(m.Text, false), slack.MsgOptionBlocks(m.Blocks...)}
}

var emoji = map[string]string{
	"planning":           ":mag:",
	"queued":             ":hourglass_flowing_sand:",
	"awaiting-approval":  ":raised_hand:",
	"waiting-for-window": ":calendar:",
	"applying":           ":gear:",
	"verifying":          ":stethoscope:",
	"succeeded":          ":white_check_mark:",
	"no-op":              ":white_circle:",
	"rejected":           ":no_entry_sign:",
	"policy-denied":      ":no_entry:",
	"expired":            ":alarm_clock:",
	"rolling-back":       ":rewind:",
	"rolled-back":        ":leftwards_arrow_with_hook:",
	"drift-checking":     ":mag:",
	"drift-none":         ":white_check_mark:",
	"drift-found":        ":warning:",
	"drift-healed":       ":adhesive_bandage:",
	"drift-accepted":     ":ok_hand:",
	"rollback-failed":    ":rotating_light:",
	"failed":             ":x:",
}

// Emoji is the state's emoji (a neutral one for states it does not know).
func Emoji(state string) string {
	if e, ok := emoji[state]; ok {
		return e
	}
	return ":information_source:"
}

// Parent is the run's parent message: commit, subject, author, stacks and
// current state, with a link to the run in the Temporal UI. It is updated
// in place at every state change.
func Parent(e notify.Event) Message {
	head := fmt.Sprintf("%s *%s*  %s %s", Emoji(e.State), e.State, commitRef(e), esc(e.Subject))
	blocks := []slack.Block{
		section(head),
		slack.NewSectionBlock(nil, []*slack.TextBlockObject{
			mrkdwn("*Stacks*\n" + esc(strings.Join(e.Stacks, ", "))),
			mrkdwn("*Author*\n" + orDash(esc(e.Author))),
			mrkdwn("*Branch*\n" + orDash(esc(e.Branch))),
		}, nil),
	}
	var ctx []slack.MixedElement
	if e.State != "" && e.Kind == notify.KindFinished && e.Detail != "" {
		ctx = append(ctx, mrkdwn(truncate(esc(e.Detail), maxSectionText)))
	}
	if e.URL != "" {
		ctx = append(ctx, mrkdwn(fmt.Sprintf("<%s|Open %s in the Temporal UI>", e.URL, esc(e.RunID))))
	}
	if len(ctx) > 0 {
		blocks = append(blocks, slack.NewContextBlock("", ctx...))
	}
	return Message{
		Text:   fmt.Sprintf("%s: %s %s (%s)", e.State, contract.ShortSHA(e.Commit), e.Subject, strings.Join(e.Stacks, ", ")),
		Blocks: blocks,
	}
}

// Step is the thread message for e; attempt above 1 marks a delivery that
// may repeat an earlier one.
func Step(e notify.Event, attempt int) Message {
	var blocks []slack.Block
	text := e.Step
	switch e.Kind {
	case notify.KindReceived:
		blocks = received(e)
	case notify.KindPlanned:
		blocks = plans(e, ":clipboard: *Plan ready*")
	case notify.KindDrift:
		blocks = drift(e)
	case notify.KindApproval:
		blocks = approval(e)
		text = "Waiting for a decision on " + contract.ShortSHA(e.Commit)
	case notify.KindDecision:
		blocks = []slack.Block{section(decided(e.Decision))}
	case notify.KindVerified:
		blocks = checks(e)
	case notify.KindRevert:
		blocks = []slack.Block{section(":leftwards_arrow_with_hook: *Revert commit pushed*: " + code(e.Detail))}
	case notify.KindRevertConflict:
		paths, _ := codeBlock(e.Detail, maxSectionText-100)
		blocks = []slack.Block{section(":warning: *The revert conflicts*, nothing was pushed: revert these paths by hand\n" + paths)}
	case notify.KindFinished:
		blocks = []slack.Block{section(fmt.Sprintf("%s *%s*: %s", Emoji(e.State), e.State, esc(e.Detail)))}
	case notify.KindWindow:
		blocks = generic(e)
		if e.Step == "waiting for window" {
			// Break glass from here: the button asks for the vote's reason.
			override := slack.NewButtonBlockElement(ActionOverride, Target{Verb: "override", Target: e.RunID}.Value(), plain("Override window")).
				WithStyle(slack.StyleDanger)
			blocks = append(blocks, slack.NewActionBlock("changeops_window", override), slack.NewContextBlock("", mrkdwn(fmt.Sprintf(
				"Approvers can vote to apply it now (two must): the button, or `/changeops override %s REASON`", contract.ShortSHA(e.Commit)))))
		}
	default:
		blocks = generic(e)
	}
	if attempt > 1 {
		blocks = append(blocks, slack.NewContextBlock("", mrkdwn(fmt.Sprintf(
			":repeat: delivery attempt %d: this may repeat a message sent before", attempt))))
	}
	if len(blocks) > maxBlocks {
		blocks = blocks[:maxBlocks]
	}
	return Message{Text: fmt.Sprintf("%s %s: %s", contract.ShortSHA(e.Commit), e.State, text), Blocks: blocks}
}

// ReasonModal asks for the reason of an unfreeze or an override vote
// (both are recorded and announced with it); its submission carries t.
func ReasonModal(t Target, maxReason int) slack.ModalViewRequest {
	title, submit, ask := "Unfreeze", "Unfreeze", fmt.Sprintf("Lift the freeze of %s. Why?", t.Target)
	if t.Target == "all" {
		ask = "Lift every freeze. Why?"
	}
	if t.Verb == "override" {
		title, submit, ask = "Override window", "Vote", fmt.Sprintf("Vote to apply %s now, outside its change window or freeze (two approvers must). Why?", t.Target)
	}
	input := slack.NewPlainTextInputBlockElement(plain("the reason, recorded and announced"), ReasonAction)
	input.Multiline, input.MaxLength = true, maxReason
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      CallbackReason,
		PrivateMetadata: t.Value(),
		Title:           plain(title),
		Submit:          plain(submit),
		Close:           plain("Cancel"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewInputBlock(ReasonBlock, plain(truncate(ask, 2000)), nil, input),
		}},
	}
}

// Closed replaces the approval message once the run no longer waits: the
// decision, or why no one decided. The buttons are gone.
func Closed(e notify.Event) Message {
	line := decided(e.Decision)
	if e.Decision == nil {
		line = fmt.Sprintf("%s No longer waiting for a decision: the run is *%s*", Emoji(e.State), e.State)
		if e.Detail != "" {
			line += " (" + esc(e.Detail) + ")"
		}
	}
	return Message{Text: line, Blocks: []slack.Block{section(line)}}
}

// Decided is what the approval message says once a click was accepted,
// before the run's own notification arrives.
func Decided(approve bool, user, comment string, at time.Time) Message {
	line := decided(&notify.Decision{Approve: approve, User: user, Comment: comment, At: at})
	return Message{Text: line, Blocks: []slack.Block{section(line)}}
}

// Standalone renders an event that belongs to no run (a branch's watcher,
// a stack's queue, the freezes) as a message of its own in the channel.
func Standalone(e notify.Event) Message {
	icon := ":warning:"
	if strings.Contains(e.Step, "recovered") {
		icon = ":white_check_mark:"
	}
	where := esc(e.Branch)
	switch e.Kind {
	case notify.KindQueue:
		where = "stack " + esc(strings.Join(e.Stacks, ", "))
	case notify.KindFreeze:
		icon, where = ":ice_cube:", "emergency stop"
		if e.State != "freeze" {
			icon = ":arrow_forward:"
		}
	}
	line := fmt.Sprintf("%s *%s* (%s)", icon, esc(e.Step), where)
	blocks := []slack.Block{section(line)}
	if e.Detail != "" {
		blocks = append(blocks, section(truncate(esc(e.Detail), maxSectionText)))
	}
	text := e.Text()
	if e.Kind == notify.KindFreeze {
		// What people typed (a reason) reaches notifications escaped too.
		why, _, _ := strings.Cut(e.Detail, "\n")
		text = truncate(esc(e.Step+": "+why), maxSectionText)
		if e.State == "freeze" {
			target := "all"
			if len(e.Stacks) > 0 {
				target = e.Stacks[0]
			}
			unfreeze := slack.NewButtonBlockElement(ActionUnfreeze, Target{Verb: "unfreeze", Target: target}.Value(), plain("Unfreeze"))
			blocks = append(blocks, slack.NewActionBlock("changeops_freeze", unfreeze))
		}
	}
	return Message{Text: text, Blocks: blocks}
}

func received(e notify.Event) []slack.Block {
	paths := strings.Split(strings.TrimSpace(e.Detail), "\n")
	more := ""
	if len(paths) > maxListed {
		more = fmt.Sprintf("\n… and %d more", len(paths)-maxListed)
		paths = paths[:maxListed]
	}
	line := fmt.Sprintf(":inbox_tray: *Received* %s by %s", commitRef(e), orDash(esc(e.Author)))
	if len(e.Stacks) > 0 {
		line += ": plans " + esc(strings.Join(e.Stacks, ", "))
	}
	blocks := []slack.Block{section(line)}
	if e.Detail != "" {
		blocks = append(blocks, slack.NewContextBlock("", mrkdwn(truncate("Changed: "+esc(strings.Join(paths, ", "))+more, maxSectionText))))
	}
	return blocks
}

// drift shows what differs from git: the summary line and each resource,
// then the plan that would put it back.
func drift(e notify.Event) []slack.Block {
	head, resources, _ := strings.Cut(strings.TrimSpace(e.Detail), "\n")
	blocks := []slack.Block{section(truncate(":warning: *Drift found*: "+esc(head), maxSectionText))}
	if resources != "" {
		list, _ := codeBlock(resources, maxSectionText)
		blocks = append(blocks, section(list))
	}
	return append(blocks, plans(e, "*What re-applying git would do*")...)
}

func plans(e notify.Event, title string) []slack.Block {
	blocks := []slack.Block{section(title)}
	truncated := false
	ps := e.Plans
	if len(ps) > maxPlans {
		ps = ps[:maxPlans]
		truncated = true
	}
	for _, p := range ps {
		line := fmt.Sprintf("*%s*: %d to create, %d to update, %d to replace, %d to delete, %d unchanged",
			esc(p.Stack), p.Create, p.Update, p.Replace, p.Delete, p.Same)
		if p.Destructive() {
			line += "\n:warning: destructive: this plan replaces or deletes resources"
		}
		line += policyLines(p)
		blocks = append(blocks, section(truncate(line, maxSectionText)))
		if strings.TrimSpace(p.Diff) != "" {
			diff, cut := codeBlock(p.Diff, maxSectionText)
			truncated = truncated || cut || p.DiffTruncated
			blocks = append(blocks, section(diff))
		}
	}
	if truncated {
		note := "Plan truncated to fit Slack: the whole plan is in `changeops status " + esc(e.RunID) + "`"
		if e.URL != "" {
			note += fmt.Sprintf(" and <%s|the Temporal UI>", e.URL)
		}
		blocks = append(blocks, slack.NewContextBlock("", mrkdwn(note)))
	}
	return blocks
}

// policyLines are what the policies said of a plan, one line each, and
// the digest of the policy set that said it.
func policyLines(p notify.Plan) string {
	var b strings.Builder
	for _, l := range []struct {
		mark  string
		lines []string
	}{{":no_entry: denied by ", p.Denied}, {":warning: ", p.Warnings}, {":busts_in_silhouette: requires ", p.Requires}} {
		for _, s := range l.lines {
			b.WriteString("\n" + l.mark + esc(s))
		}
	}
	if p.PolicyDigest != "" {
		b.WriteString("\nPolicies `" + esc(p.PolicyDigest[:min(12, len(p.PolicyDigest))]) + "`")
	}
	return b.String()
}

func approval(e notify.Event) []slack.Block {
	ask := e.Ask
	if ask == nil {
		ask = &notify.Ask{}
	}
	var who []string
	for _, a := range ask.Approvers {
		who = append(who, mention(a))
	}
	line := fmt.Sprintf(":raised_hand: *Waiting for a decision* from %s", strings.Join(who, " or "))
	if !ask.Deadline.IsZero() {
		line += fmt.Sprintf(" until %s", date(ask.Deadline))
	}
	switch {
	case ask.FourEyes && len(ask.Batch) > 0:
		line += "\nFour eyes: no author or committer of a change in the batch can approve it."
	case ask.FourEyes:
		line += "\nFour eyes: the commit's author cannot approve it."
	}
	for _, r := range ask.Requirements {
		line += "\n:busts_in_silhouette: needs " + esc(r)
	}
	yes, no := orElse(ask.ApproveLabel, "Approve"), orElse(ask.RejectLabel, "Reject")
	title := "Apply this change?"
	confirm := fmt.Sprintf("%s %s will be applied to %s.", contract.ShortSHA(e.Commit), e.Subject, strings.Join(e.Stacks, ", "))
	if ask.Question != "" {
		line += "\n" + esc(ask.Question)
		title, confirm = yes+"?", ask.Question
	}
	var covers []slack.Block
	if len(ask.Batch) > 0 {
		// One decision covers every change of a batch: each is named.
		title = "Apply this batch?"
		confirm = fmt.Sprintf("%d changes will be applied together to %s.", len(ask.Batch), strings.Join(e.Stacks, ", "))
		text := fmt.Sprintf(":package: *This decision covers the batch of %d changes*, applied together in one up:", len(ask.Batch))
		for _, c := range ask.Batch {
			text += "\n• " + esc(c)
		}
		covers = append(covers, section(truncate(text, maxSectionText)))
	}
	value := Button{Workflow: e.RunID, Execution: ask.Execution, Plan: ask.Plan}.Value()
	approve := slack.NewButtonBlockElement(ActionApprove, value, plain(yes)).WithStyle(slack.StylePrimary)
	approve.Confirm = slack.NewConfirmationBlockObject(plain(truncate(title, 100)), plain(truncate(confirm, 300)), plain(yes), plain("Cancel"))
	reject := slack.NewButtonBlockElement(ActionReject, value, plain(no)).WithStyle(slack.StyleDanger)
	return append(append([]slack.Block{section(line)}, covers...), slack.NewActionBlock(decisionBlockID, approve, reject))
}

func checks(e notify.Event) []slack.Block {
	var b strings.Builder
	fmt.Fprintf(&b, ":stethoscope: *%s*", esc(capitalise(e.Step)))
	for _, c := range e.Checks {
		mark := ":white_check_mark:"
		if !c.Passed {
			mark = ":x:"
		}
		fmt.Fprintf(&b, "\n%s %s: %s", mark, code(c.Name), esc(c.Detail))
	}
	if len(e.Checks) == 0 && e.Detail != "" {
		b.WriteString("\n" + esc(e.Detail))
	}
	return []slack.Block{section(truncate(b.String(), maxSectionText))}
}

func generic(e notify.Event) []slack.Block {
	icon := map[notify.Kind]string{
		notify.KindApplying:    ":gear:",
		notify.KindApplied:     ":white_check_mark:",
		notify.KindRollingBack: ":rewind:",
		notify.KindRestored:    ":leftwards_arrow_with_hook:",
		notify.KindPlanChanged: ":arrows_counterclockwise:",
		notify.KindRetrying:    ":hourglass_flowing_sand:",
	}[e.Kind]
	if icon == "" {
		icon = Emoji(e.State)
	}
	blocks := []slack.Block{section(fmt.Sprintf("%s *%s*", icon, esc(capitalise(e.Step))))}
	if e.Detail != "" {
		detail, _ := codeBlock(e.Detail, maxSectionText)
		blocks = append(blocks, section(detail))
	}
	return blocks
}

func decided(d *notify.Decision) string {
	if d == nil {
		return ""
	}
	if d.Auto {
		return ":robot_face: *Approved by policy*: no person needed to decide"
	}
	verb, icon := "Rejected", ":no_entry_sign:"
	if d.Approve {
		verb, icon = "Approved", ":white_check_mark:"
	}
	line := fmt.Sprintf("%s *%s* by %s", icon, verb, mention(d.User))
	if !d.At.IsZero() {
		line += " " + date(d.At)
	}
	if d.Comment != "" {
		line += ": " + esc(d.Comment)
	}
	return line
}

// mention renders an approver: Slack user IDs (U…, W…) and user group IDs
// (S…) as mentions, anything else as plain text.
func mention(id string) string {
	switch {
	case IsUserID(id):
		return "<@" + id + ">"
	case IsGroupID(id):
		return "<!subteam^" + id + ">"
	}
	return esc(id)
}

// IsUserID says whether s looks like a Slack user ID (U… or W…).
func IsUserID(s string) bool { return config.IsSlackUser(s) }

// IsGroupID says whether s looks like a Slack user group ID (S…).
func IsGroupID(s string) bool { return config.IsSlackGroup(s) }

func commitRef(e notify.Event) string {
	if e.URL != "" {
		return fmt.Sprintf("<%s|`%s`>", e.URL, contract.ShortSHA(e.Commit))
	}
	return code(contract.ShortSHA(e.Commit))
}

// date renders t in each reader's own time zone, with a fallback.
func date(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format(time.RFC3339))
}

func section(text string) *slack.SectionBlock {
	return slack.NewSectionBlock(mrkdwn(truncate(text, maxSectionText)), nil, nil)
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + esc(strings.ReplaceAll(s, "`", "'")) + "`"
}

// codeBlock fences s, cut so that the whole block stays within limit; cut
// says whether it was.
func codeBlock(s string, limit int) (block string, cut bool) {
	const fence = "```"
	body := esc(strings.TrimRight(s, "\n"))
	if room := limit - 2*len(fence) - 2; utf8.RuneCountInString(body) > room {
		body, cut = truncate(body, room), true
	}
	return fence + "\n" + body + "\n" + fence, cut
}

// Escape escapes what Slack's mrkdwn treats as markup (&, <, >), for text
// from people and commits in a message composed elsewhere.
func Escape(s string) string { return esc(s) }

// Truncate cuts s to at most n characters, marking the cut with "…".
func Truncate(s string, n int) string { return truncate(s, n) }

// esc escapes what Slack's mrkdwn treats as markup (&, <, >), so that text
// from commits and people cannot forge links or mentions.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// truncate cuts s to at most n characters, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func orElse(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return strings.ToUpper(string(r)) + s[n:]
}
