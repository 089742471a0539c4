// Package localfile implements the changeops:index:File resource: a file on
// the local disk whose content Pulumi owns.
package localfile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
)

// File is the resource controller.
type File struct{}

// FileArgs are the inputs of a File.
type FileArgs struct {
	Path    string `pulumi:"path"`
	Content string `pulumi:"content"`
}

// FileState is what Pulumi records for a File.
type FileState struct {
	FileArgs
	SHA256 string `pulumi:"sha256"`
}

func (f *File) Annotate(a infer.Annotator) {
	a.SetToken("index", "File")
	a.Describe(&f, "A file on the local disk. Replaced when its path changes, updated in place when its content changes.")
}

func (a *FileArgs) Annotate(an infer.Annotator) {
	an.Describe(&a.Path, "Absolute path of the file. Parent folders are created.")
	an.Describe(&a.Content, "Content of the file.")
}

func (s *FileState) Annotate(an infer.Annotator) {
	an.Describe(&s.SHA256, "Hex SHA-256 of the content as written.")
}

func digest(content string) string {
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])
}

func check(in FileArgs) error {
	if !filepath.IsAbs(in.Path) {
		return fmt.Errorf("path %q must be absolute", in.Path)
	}
	return nil
}

// write replaces the file atomically, so a crash mid-write never leaves a
// half-written file that a later read would take for the real content.
func write(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create folder for %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// pause is a fault-injection hook for changeops' end-to-end tests: when
// CHANGEOPS_FILE_PAUSE is set and a file's path contains it, creating or
// updating that file (in a preview too) first appends "<op> <path>" to the
// file CHANGEOPS_FILE_MARKS names, then waits until ctx ends, so a test
// can kill the worker in the middle of a preview or an up. Unset, it does
// nothing. CHANGEOPS_FILE_PAUSE_OP, when set, limits it to one operation
// (create, update, preview-create, preview-update).
func pause(ctx context.Context, op, path string) {
	match := os.Getenv("CHANGEOPS_FILE_PAUSE")
	if match == "" || !strings.Contains(path, match) {
		return
	}
	if only := os.Getenv("CHANGEOPS_FILE_PAUSE_OP"); only != "" && only != op {
		return
	}
	if marks := os.Getenv("CHANGEOPS_FILE_MARKS"); marks != "" {
		if f, err := os.OpenFile(marks, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(f, "%s %s\n", op, path)
			f.Close()
		}
	}
	<-ctx.Done()
}

// throttle is a fault-injection hook for changeops' end-to-end tests:
// when CHANGEOPS_FILE_THROTTLE is set and a file's path contains it, the
// first CHANGEOPS_FILE_THROTTLE_TIMES real (not preview) creates or updates
// of that file fail as a cloud API that throttles would, counting in the
// file CHANGEOPS_FILE_THROTTLE_COUNT names. Unset, it does nothing.
func throttle(dryRun bool, path string) error {
	match, counter := os.Getenv("CHANGEOPS_FILE_THROTTLE"), os.Getenv("CHANGEOPS_FILE_THROTTLE_COUNT")
	if dryRun || match == "" || counter == "" || !strings.Contains(path, match) {
		return nil
	}
	var times int
	fmt.Sscan(os.Getenv("CHANGEOPS_FILE_THROTTLE_TIMES"), &times)
	b, _ := os.ReadFile(counter)
	if n := strings.Count(string(b), "\n"); n >= times {
		return nil
	}
	f, err := os.OpenFile(counter, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintln(f, path)
	f.Close()
	return fmt.Errorf("ThrottlingException: Rate exceeded for %s (status code: 429, changeops test hook)", path)
}

func (File) Create(ctx context.Context, req infer.CreateRequest[FileArgs]) (infer.CreateResponse[FileState], error) {
	in := req.Inputs
	if err := check(in); err != nil {
		return infer.CreateResponse[FileState]{}, err
	}
	pause(ctx, opName("create", req.DryRun), in.Path)
	if err := throttle(req.DryRun, in.Path); err != nil {
		return infer.CreateResponse[FileState]{}, err
	}
	state := FileState{FileArgs: in, SHA256: digest(in.Content)}
	if req.DryRun {
		return infer.CreateResponse[FileState]{ID: in.Path, Output: state}, nil
	}
	// Create converges: if a retried deployment already wrote this file, the
	// write below simply rewrites the same bytes.
	if err := write(in.Path, in.Content); err != nil {
		return infer.CreateResponse[FileState]{}, err
	}
	return infer.CreateResponse[FileState]{ID: in.Path, Output: state}, nil
}

func (File) Diff(ctx context.Context, req infer.DiffRequest[FileArgs, FileState]) (infer.DiffResponse, error) {
	diff := map[string]p.PropertyDiff{}
	if req.Inputs.Path != req.State.Path {
		diff["path"] = p.PropertyDiff{Kind: p.UpdateReplace}
	}
	if req.Inputs.Content != req.State.Content {
		diff["content"] = p.PropertyDiff{Kind: p.Update}
	}
	return infer.DiffResponse{
		DeleteBeforeReplace: true,
		HasChanges:          len(diff) > 0,
		DetailedDiff:        diff,
	}, nil
}

func (File) Update(ctx context.Context, req infer.UpdateRequest[FileArgs, FileState]) (infer.UpdateResponse[FileState], error) {
	in := req.Inputs
	if err := check(in); err != nil {
		return infer.UpdateResponse[FileState]{}, err
	}
	pause(ctx, opName("update", req.DryRun), in.Path)
	if err := throttle(req.DryRun, in.Path); err != nil {
		return infer.UpdateResponse[FileState]{}, err
	}
	state := FileState{FileArgs: in, SHA256: digest(in.Content)}
	if req.DryRun {
		return infer.UpdateResponse[FileState]{Output: state}, nil
	}
	if err := write(in.Path, in.Content); err != nil {
		return infer.UpdateResponse[FileState]{}, err
	}
	return infer.UpdateResponse[FileState]{Output: state}, nil
}

func opName(op string, dryRun bool) string {
	if dryRun {
		return "preview-" + op
	}
	return op
}

func (File) Delete(ctx context.Context, req infer.DeleteRequest[FileState]) (infer.DeleteResponse, error) {
	err := os.Remove(req.State.Path)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil // already gone: deleting converges
	}
	if err != nil {
		return infer.DeleteResponse{}, fmt.Errorf("delete %s: %w", req.State.Path, err)
	}
	return infer.DeleteResponse{}, nil
}

// Read reports what is on disk, so `pulumi refresh` sees a file edited or
// removed out of band (drift).
func (File) Read(ctx context.Context, req infer.ReadRequest[FileArgs, FileState]) (infer.ReadResponse[FileArgs, FileState], error) {
	content, err := os.ReadFile(req.ID)
	if errors.Is(err, fs.ErrNotExist) {
		return infer.ReadResponse[FileArgs, FileState]{}, nil // empty ID: the resource is gone
	}
	if err != nil {
		return infer.ReadResponse[FileArgs, FileState]{}, fmt.Errorf("read %s: %w", req.ID, err)
	}
	state := FileState{FileArgs: FileArgs{Path: req.ID, Content: string(content)}, SHA256: digest(string(content))}
	return infer.ReadResponse[FileArgs, FileState]{ID: req.ID, Inputs: req.Inputs, State: state}, nil
}
