package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
)

// recordHistory writes a run's history to workflows/testdata for the replay
// tests when CHANGEOPS_RECORD_HISTORIES is set. Recorded histories are
// committed; re-record only for a deliberate, versioned workflow change.
func recordHistory(t *testing.T, c client.Client, id, name string) {
	t.Helper()
	if os.Getenv("CHANGEOPS_RECORD_HISTORIES") == "" {
		return
	}
	if err := os.WriteFile(filepath.Join("..", "workflows", "testdata", name), historyJSON(t, c, id), 0o644); err != nil {
		t.Fatal(err)
	}
}

// historyJSON reads a run's whole history as the replayer's JSON.
func historyJSON(t *testing.T, c client.Client, id string) []byte {
	t.Helper()
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			t.Fatalf("read history of %s: %v", id, err)
		}
		h.Events = append(h.Events, e)
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// historyContains returns the first of needles found in a run's history.
func historyContains(t *testing.T, c client.Client, id string, needles ...string) string {
	t.Helper()
	h := string(historyJSON(t, c, id))
	for _, n := range needles {
		if strings.Contains(h, n) {
			return n
		}
	}
	return ""
}
