package workflows

import (
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplayRecordedHistories replays histories recorded from real runs
// (tests/, with CHANGEOPS_RECORD_HISTORIES=1) against today's workflow code.
// A change that breaks determinism for runs already in flight fails here;
// such a change needs workflow.GetVersion, not a re-recording. It also
// checks that every versioned change (versions.go) is reached by at least
// one history, and that every GetVersion call names one of them.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 16 {
		t.Fatalf("found %d recorded histories in testdata, want each shape of the change run, the watcher, a stack queue and a drift run, before and after each versioned change", len(files))
	}
	seen := &versionsSeen{byID: map[string][]string{}}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			seen.file = filepath.Base(f)
			r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{
				Interceptors: []interceptor.WorkerInterceptor{seen},
			})
			if err != nil {
				t.Fatal(err)
			}
			// Validators do not run in replay: no gate is needed.
			Workflows{}.Register(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
	for id, reached := range seen.byID {
		if !slices.Contains(versionedChanges, changeID(id)) {
			t.Errorf("GetVersion(%q) in %v is not listed in versions.go: give it a constant there", id, reached)
		}
	}
	for _, id := range versionedChanges {
		var reached []string
		for got, files := range seen.byID {
			if changeID(got) == id {
				reached = append(reached, files...)
			}
		}
		if len(reached) == 0 {
			t.Errorf("no recorded history reaches versioned change %q: record one (CHANGEOPS_RECORD_HISTORIES=1) that passes it", id)
			continue
		}
		slices.Sort(reached)
		t.Logf("%s: %s", id, strings.Join(slices.Compact(reached), ", "))
	}
}

// changeID maps a numbered change ID (signed-decisions-3) to its prefix.
func changeID(id string) string {
	if strings.HasPrefix(id, VersionSignedDecisionPrefix) {
		return VersionSignedDecisionPrefix
	}
	return id
}

// versionsSeen records which change IDs each replayed history reaches, and
// with which version ("old" for workflow.DefaultVersion, "new" otherwise).
type versionsSeen struct {
	interceptor.WorkerInterceptorBase
	mu   sync.Mutex
	file string
	byID map[string][]string
}

func (v *versionsSeen) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &versionsInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, seen: v}
}

type versionsInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	seen *versionsSeen
}

func (i *versionsInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&versionsOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: outbound}, seen: i.seen})
}

type versionsOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	seen *versionsSeen
}

func (o *versionsOutbound) GetVersion(ctx workflow.Context, changeID string, minSupported, maxSupported workflow.Version) workflow.Version {
	v := o.Next.GetVersion(ctx, changeID, minSupported, maxSupported)
	branch := "new"
	if v == workflow.DefaultVersion {
		branch = "old"
	}
	o.seen.mu.Lock()
	o.seen.byID[changeID] = append(o.seen.byID[changeID], o.seen.file+" ("+branch+")")
	o.seen.mu.Unlock()
	return v
}
