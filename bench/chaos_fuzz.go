package main

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

type fuzzTarget struct {
	Package string `json:"package"`
	Name    string `json:"name"`
	Time    string `json:"time"`
	Execs   string `json:"execs"`
	Passed  bool   `json:"passed"`
	Output  string `json:"output,omitempty"` // on failure
}

var (
	fuzzFuncRe = regexp.MustCompile(`(?m)^func (Fuzz\w+)\(\w+ \*testing\.F\)`)
	execsRe    = regexp.MustCompile(`execs: (\d+)`)
)

// fuzzAreas are the inputs the fault suite wants fuzzed, by package: the
// webhook parser, OData decoding and code normalisation.
var fuzzAreas = []struct{ pkg, what string }{
	{"internal/sync", "webhook body parser (RemoteExecutionContext)"},
	{"internal/dataverse", "OData response decoding (records, pages, errors, $batch responses)"},
	{"internal/invite", "invitation code normalisation"},
}

// chaosFuzz runs every fuzz target in the module for a bounded time.
func chaosFuzz(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "fuzz", Title: "Fuzz targets"}
	targets, err := findFuzzTargets(h.root)
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	for i := range targets {
		t := &targets[i]
		h.logf("fuzz: %s %s for %s", t.Package, t.Name, o.fuzzTime)
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-fuzz", "^"+t.Name+"$", "-fuzztime", o.fuzzTime.String(), "./"+t.Package)
		cmd.Dir = h.root
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Time = time.Since(start).Round(time.Second).String()
		t.Passed = err == nil
		if m := execsRe.FindAllStringSubmatch(string(out), -1); len(m) > 0 {
			t.Execs = m[len(m)-1][1]
		}
		if !t.Passed {
			t.Output = tail(string(out), 30)
		}
		sec.check(t.Passed, "%s %s failed:\n%s", t.Package, t.Name, t.Output)
	}
	sec.Columns = []string{"package", "target", "ran for", "executions", "result"}
	for _, t := range targets {
		sec.row(t.Package, t.Name, t.Time, t.Execs, okMark(t.Passed))
	}
	covered := map[string]bool{}
	for _, t := range targets {
		covered[t.Package] = true
	}
	var missing []string
	for _, a := range fuzzAreas {
		if !covered[a.pkg] {
			missing = append(missing, fmt.Sprintf("%s (%s)", a.what, a.pkg))
		}
	}
	sec.note("`go test -run ^$ -fuzz ^<target>$ -fuzztime %s` for every `func Fuzz…` in the module's tests (found by scanning them, so new targets run without changing this program). A failure leaves its input under the package's testdata/fuzz.", o.fuzzTime)
	if len(missing) > 0 {
		sec.note("No fuzz target yet for: %s.", strings.Join(missing, "; "))
	}
	sec.Data = targets
	return sec
}

func findFuzzTargets(root string) ([]fuzzTarget, error) {
	var out []fuzzTarget
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bench" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if m := fuzzFuncRe.FindStringSubmatch(sc.Text()); m != nil {
				out = append(out, fuzzTarget{Package: filepath.ToSlash(rel), Name: m[1]})
			}
		}
		return sc.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("find fuzz targets: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Package+out[i].Name < out[j].Package+out[j].Name })
	return out, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
