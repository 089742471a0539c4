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
