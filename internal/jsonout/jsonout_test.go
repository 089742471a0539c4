package jsonout

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"ID": "id", "RunID": "run_id", "PlanDigest": "plan_digest", "UIURL": "uiurl", "HTTPStatus": "http_status",
		"SHA": "sha", "FourEyes": "four_eyes", "Create": "create", "A1B": "a1_b",
	} {
		if got := Snake(in); got != want {
			t.Errorf("Snake(%q) = %q, want %q", in, got, want)
		}
	}
}

type duration time.Duration

func (d duration) String() string { return "never used" }

type Duration int64

type inner struct{ DeepField string }

type sample struct {
	Tagged   string `json:"tagged_name"`
	Untagged string
	Omitted  string `json:",omitempty"`
	Skipped  string `json:"-"`
	Wait     time.Duration
	Config   Duration
	Other    duration
	At       time.Time
	Never    time.Time `json:",omitzero"`
	Ptr      *inner
	Nil      *inner
	List     []inner
	Map      map[string]inner
	inner
}

func TestEncodeStyle(t *testing.T) {
	var b bytes.Buffer
	at := time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC)
	err := Encode(&b, sample{Tagged: "a", Untagged: "b", Skipped: "secret", Wait: 90 * time.Second, Config: Duration(24 * time.Hour),
		Other: duration(5), At: at, Ptr: &inner{"p"}, List: []inner{{"l"}}, Map: map[string]inner{"k": {"m"}}, inner: inner{"promoted"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"at":"2026-12-02T10:30:00Z","config":"24h0m0s","deep_field":"promoted","list":[{"deep_field":"l"}],"map":{"k":{"deep_field":"m"}},"nil":null,"other":5,"ptr":{"deep_field":"p"},"tagged_name":"a","untagged":"b","wait":"1m30s"}`
	if got := strings.TrimSpace(b.String()); got != want {
		t.Errorf("Encode =\n%s\nwant\n%s", got, want)
	}
}
