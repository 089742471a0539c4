package slackui

import (
	"encoding/json"
	"errors"
	"strings"
)

// Button is what an approval button carries: the run's workflow ID, and
// the Temporal run and the plan digest the message asked about. A click
// decides on exactly these: a message left over from an earlier run of
// the same change, or from a plan that has changed since, cannot decide
// the run or plan that came after it.
type Button struct {
	Workflow  string `json:"w"`
	Execution string `json:"r,omitempty"`
	Plan      string `json:"p,omitempty"`
}

// maxButtonValue is Slack's limit on a button's value.
const maxButtonValue = 2000

// Value is the button's value as Slack carries it.
func (b Button) Value() string {
	v, _ := json.Marshal(b)
	return string(v)
}

// ParseButton reads a button's value. A bare workflow ID is a button of a
// message posted before buttons carried the run and plan: it decides the
// run and plan the workflow has now, as it did then.
func ParseButton(v string) (Button, error) {
	if len(v) > maxButtonValue {
		return Button{}, errors.New("button value too long")
	}
	if !strings.HasPrefix(v, "{") {
		return Button{Workflow: v}, nil
	}
	var b Button
	if err := json.Unmarshal([]byte(v), &b); err != nil {
		return Button{}, errors.New("unreadable button value")
	}
	return b, nil
}

// Action IDs of the break-glass buttons: Unfreeze on a freeze's
// announcement, Override window on a run's waiting-for-window message.
// Each needs a reason, so a click opens ReasonModal; its submission
// (CallbackReason) does what the slash command would.
const (
	ActionUnfreeze = "changeops_unfreeze"
	ActionOverride = "changeops_override"
	CallbackReason = "changeops_reason"
	// ReasonBlock and ReasonAction name the modal's reason input.
	ReasonBlock  = "changeops_reason"
	ReasonAction = "reason"
)

// Target is what an Unfreeze or Override window button acts on, and
// the modal carries (private_metadata): the verb of the slash command, its
// target (a stack, all, or a run) and the channel to answer in. Like a
// button's value it is not trusted: the submission is checked like a
// typed command.
type Target struct {
	Verb    string `json:"v"`
	Target  string `json:"t"`
	Channel string `json:"c,omitempty"`
}

// Value is the target as a button or modal carries it.
func (t Target) Value() string {
	v, _ := json.Marshal(t)
	return string(v)
}

// ParseTarget reads a target.
func ParseTarget(v string) (Target, error) {
	var t Target
	if len(v) > maxButtonValue || json.Unmarshal([]byte(v), &t) != nil || t.Verb == "" || t.Target == "" {
		return Target{}, errors.New("unreadable target")
	}
	return t, nil
}
