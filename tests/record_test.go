package tests

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
)

// recordHistory writes a run's history to workflows/testdata for the replay
// tests when CHANGEOPS_RECORD_HISTORIES is set, unless the file exists.
// Recorded histories are committed, and an old one is what proves that
// runs of an older build replay (it took the old branches): it is
// replaced only with CHANGEOPS_RECORD_HISTORIES=overwrite.
func recordHistory(t *testing.T, c client.Client, id, name string) {
	t.Helper()
	mode := os.Getenv("CHANGEOPS_RECORD_HISTORIES")
	if mode == "" {
		return
	}
	path := filepath.Join("..", "workflows", "testdata", name)
	if _, err := os.Stat(path); err == nil && mode != "overwrite" {
		t.Logf("%s is recorded already; not replaced (CHANGEOPS_RECORD_HISTORIES=overwrite replaces it)", name)
		return
	}
	if err := os.WriteFile(path, historyJSON(t, c, id), 0o644); err != nil {
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

// payloadData matches payload bodies, which protojson writes as base64.
var payloadData = regexp.MustCompile(`"data":\s*"([A-Za-z0-9+/=]+)"`)

// historyContains returns the first of needles found in a run's history,
// in its event fields or inside any payload.
func historyContains(t *testing.T, c client.Client, id string, needles ...string) string {
	t.Helper()
	raw := historyJSON(t, c, id)
	var payloads strings.Builder
	for _, m := range payloadData.FindAllSubmatch(raw, -1) {
		if b, err := base64.StdEncoding.DecodeString(string(m[1])); err == nil {
			payloads.Write(b)
		}
	}
	h := string(raw) + payloads.String()
	if !strings.Contains(payloads.String(), `"Branch":`) {
		t.Fatalf("history of %s decoded without its payloads: the secret scan would see nothing", id)
	}
	for _, n := range needles {
		if strings.Contains(h, n) {
			return n
		}
	}
	return ""
}
