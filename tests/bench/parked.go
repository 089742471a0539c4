package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/changeops/changeops/config"
	"github.com/changeops/changeops/contract"
	"github.com/changeops/changeops/internal/gate/gatetest"
	"github.com/changeops/changeops/starter"
	"github.com/changeops/changeops/worker"
	"github.com/changeops/changeops/workflows"
)

// parkedResult is what holding many runs at their approval costs the
// worker process.
type parkedResult struct {
	runs                 int
	rssBefore, rssAfter  float64 // MiB
	goroutinesBefore     int
	goroutinesAfter      int
	parkedIn, approvedIn time.Duration
}

// parkedApprovals pushes count commits, each to a stack of its own (a
// stack's queue lets one run wait for approval at a time, so count runs
// waiting at once need count stacks), waits until every run awaits
// approval on one in-process worker, and reads the process's RSS and
// goroutines before and after; then approves the last run and waits for
// it to succeed.
func parkedApprovals(ctx context.Context, dir, tools, temporal string, count int) (parkedResult, error) {
	res := parkedResult{runs: count}
	base := filepath.Join(dir, "parked")
	repo, remote := filepath.Join(base, "clone"), filepath.Join(base, "remote.git")
	const branch = "bench-parked"
	if err := os.MkdirAll(base, 0o755); err != nil {
		return res, err
	}
	for _, args := range [][]string{{"init", "-q", "--bare", "-b", branch, remote}, {"init", "-q", "-b", branch, repo}} {
		if err := git(base, args...); err != nil {
			return res, err
		}
	}
	var stacks []config.Stack
	off := config.Duration(0)
	for i := range count {
		name := fmt.Sprintf("p%03d", i)
		folder := filepath.Join(repo, "stacks", name)
		if err := os.MkdirAll(folder, 0o755); err != nil {
			return res, err
		}
		// A program with no resources: its plan creates only the stack.
		if err := os.WriteFile(filepath.Join(folder, "Pulumi.yaml"), []byte("name: "+name+"\nruntime: yaml\n"), 0o644); err != nil {
			return res, err
		}
		stacks = append(stacks, config.Stack{Name: "parked-" + name, Path: "stacks/" + name, Stack: "bench",
			Approval: config.ApprovalManual, Approvers: []string{"bench"}, ApprovalTimeout: config.Duration(time.Hour),
			VerifyTimeout: config.Duration(time.Minute), DriftInterval: &off})
	}
	if err := git(repo, "remote", "add", "origin", remote); err != nil {
		return res, err
	}
	if err := commitPush(repo, "stacks"); err != nil {
		return res, err
	}
	data := filepath.Join(base, "data")
	cfg := &config.Config{
		Repo:     config.Repo{URL: remote, Branch: branch, PollInterval: config.Duration(time.Second)},
		Temporal: config.Temporal{Address: temporal, Namespace: "default", TaskQueue: "bench-parked"},
		Pulumi: config.Pulumi{BackendURL: "file://" + filepath.Join(data, "state"), Home: filepath.Join(dir, "pulumi-home"), Root: tools,
			PulumiCLI: config.PulumiCLI{Offline: true}},
		Stacks: stacks, HTTP: config.HTTP{Listen: "127.0.0.1:0"}, DataDir: data,
		People:  []config.Person{gatetest.Person("bench")},
		Secrets: config.Secrets{PulumiPassphrase: "bench"},
	}
	cfg.ApplyDefaults(base)
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	w, err := worker.Start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return res, err
	}
	defer w.Stop()
	c := w.Client()
	// The watcher's first poll takes the baseline; commits after it are runs.
	for {
		v, err := c.QueryWorkflow(ctx, contract.WatcherWorkflowID(branch), "", contract.WatcherStatusQuery)
		var st workflows.WatcherStatus
		if err == nil && v.Get(&st) == nil && st.LastSeen != "" {
			break
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	runtime.GC()
	debug.FreeOSMemory()
	res.rssBefore, res.goroutinesBefore = rss(), runtime.NumGoroutine()

	start := time.Now()
	for i := range count {
		name := fmt.Sprintf("p%03d", i)
		if err := os.WriteFile(filepath.Join(repo, "stacks", name, "README"), []byte("change\n"), 0o644); err != nil {
			return res, err
		}
		if err := git(repo, "add", "-A"); err != nil {
			return res, err
		}
		if err := git(repo, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q", "-m", "change "+name); err != nil {
			return res, err
		}
	}
	if err := git(repo, "push", "-q", "origin", "HEAD"); err != nil {
		return res, err
	}
	last, err := gitOut(repo, "rev-parse", "HEAD")
	if err != nil {
		return res, err
	}
	deadline := time.Now().Add(8 * time.Minute)
	for {
		runs, err := starter.List(ctx, c, starter.Filter{State: contract.StateAwaitingApproval, Kind: starter.KindChange, Limit: count + 10})
		if err != nil {
			return res, err
		}
		n := 0
		for _, r := range runs {
			if strings.HasPrefix(r.ID, "change/"+branch+"/") {
				n++
			}
		}
		if n == count {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%d of %d runs awaiting approval after %s", n, count, time.Since(start).Round(time.Second))
		}
		time.Sleep(time.Second)
	}
	res.parkedIn = time.Since(start)
	runtime.GC()
	debug.FreeOSMemory()
	res.rssAfter, res.goroutinesAfter = rss(), runtime.NumGoroutine()

	id := contract.ChangeWorkflowID(branch, last)
	approved := time.Now()
	if _, err := starter.Decide(ctx, c, id, starter.Decision{Approve: true, Person: "bench", Signer: gatetest.Signer("bench")}); err != nil {
		return res, err
	}
	var out workflows.ChangeResult
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &out); err != nil {
		return res, err
	}
	if out.State != contract.StateSucceeded {
		return res, fmt.Errorf("the last parked run ended %s: %s", out.State, out.Reason)
	}
	res.approvedIn = time.Since(approved)
	return res, nil
}

// rss is this process's resident set size in MiB.
func rss() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	return 0
}
