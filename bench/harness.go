package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// harness owns the work directory and the connector binary shared by every
// part of a run.
type harness struct {
	ctx     context.Context
	root    string // module root
	dir     string // work directory
	bin     string // connector binary
	out     io.Writer
	keep    bool
	verbose bool
	t0      time.Time

	mu sync.Mutex
}

// newHarness finds the module, makes the work directory and builds the
// connector once.
func newHarness(ctx context.Context, out io.Writer, keep, verbose bool) (*harness, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "connector-bench-")
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	h := &harness{ctx: ctx, root: root, dir: dir, out: out, keep: keep, verbose: verbose, t0: time.Now()}
	if _, err := exec.LookPath("redis-server"); err != nil {
		h.close()
		return nil, fmt.Errorf("redis-server is not on PATH; run scripts/install-test-deps (or apt-get install redis-server)")
	}
	h.bin = filepath.Join(dir, "connector")
	h.logf("building the connector binary")
	if err := buildConnector(ctx, root, h.bin); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// buildConnector compiles cmd/connector into bin.
func buildConnector(ctx context.Context, root, bin string) error {
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/connector")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/connector: %w\n%s", err, out)
	}
	return nil
}

// moduleRoot is the directory of go.mod (the current directory's module).
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the benchmarks from inside the module (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}

func (h *harness) cores() int { return runtime.NumCPU() }

func (h *harness) close() {
	if h.keep {
		fmt.Fprintf(h.out, "bench: work directory kept at %s\n", h.dir)
		return
	}
	_ = os.RemoveAll(h.dir)
}

// logf prints a progress line with the time since the start.
func (h *harness) logf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(h.out, "[%6.1fs] %s\n", time.Since(h.t0).Seconds(), fmt.Sprintf(format, args...))
}

func (h *harness) debugf(format string, args ...any) {
	if h.verbose {
		h.logf(format, args...)
	}
}

// stage is one part's resources, released in reverse order by close.
type stage struct {
	h       *harness
	name    string
	dir     string
	closers []func()
}

func (h *harness) stage(name string) (*stage, error) {
	dir := filepath.Join(h.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stage %s: %w", name, err)
	}
	return &stage{h: h, name: name, dir: dir}, nil
}

func (s *stage) onClose(f func()) { s.closers = append(s.closers, f) }

func (s *stage) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

func (s *stage) logf(format string, args ...any) { s.h.logf(s.name+": "+format, args...) }
