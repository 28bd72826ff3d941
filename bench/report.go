package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Report is one run's results, written as JSON and printed as Markdown.
type Report struct {
	Kind      string     `json:"kind"` // bench | chaos
	Date      time.Time  `json:"date"`
	Cores     int        `json:"cores"`
	CPU       string     `json:"cpu,omitempty"`
	GoVersion string     `json:"go_version"`
	Commit    string     `json:"commit,omitempty"`
	Command   string     `json:"command"`
	Quick     bool       `json:"quick"`
	Elapsed   string     `json:"elapsed"`
	Passed    bool       `json:"passed"`
	Sections  []*Section `json:"sections"`
}

// Section is one benchmark or one part of the fault suite.
type Section struct {
	Name     string     `json:"name"`
	Title    string     `json:"title"`
	Columns  []string   `json:"columns,omitempty"`
	Rows     [][]string `json:"rows,omitempty"`
	Notes    []string   `json:"notes,omitempty"`
	Data     any        `json:"data,omitempty"`
	Failures []string   `json:"failures,omitempty"` // checks that did not hold
	Error    string     `json:"error,omitempty"`    // the part could not run
	Elapsed  string     `json:"elapsed,omitempty"`
}

func (s *Section) row(cells ...any) {
	r := make([]string, len(cells))
	for i, c := range cells {
		r[i] = cellString(c)
	}
	s.Rows = append(s.Rows, r)
}

func (s *Section) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// check records a failure when ok is false.
func (s *Section) check(ok bool, format string, args ...any) bool {
	if !ok {
		s.Failures = append(s.Failures, fmt.Sprintf(format, args...))
	}
	return ok
}

func cellString(c any) string {
	switch v := c.(type) {
	case string:
		return v
	case float64:
		switch {
		case v == math.Trunc(v) && math.Abs(v) < 1e9:
			return fmt.Sprintf("%.0f", v)
		case v >= 100:
			return fmt.Sprintf("%.0f", v)
		case v >= 10:
			return fmt.Sprintf("%.1f", v)
		default:
			return fmt.Sprintf("%.2f", v)
		}
	case time.Duration:
		return fmtDur(v)
	case bool:
		if v {
			return "yes"
		}
		return "no"
	default:
		return fmt.Sprint(v)
	}
}

// fmtDur prints a latency with a precision that suits its size.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

func newReport(o options, args []string) *Report {
	kind := "bench"
	if o.chaos {
		kind = "chaos"
	}
	cmd := "go run ./bench"
	if len(args) > 0 {
		cmd += " " + strings.Join(args, " ")
	}
	r := &Report{
		Kind: kind, Date: time.Now().UTC().Truncate(time.Second), Cores: runtime.NumCPU(), CPU: cpuModel(),
		GoVersion: runtime.Version(), Command: cmd, Quick: o.quick, Passed: true,
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		r.Commit = strings.TrimSpace(string(out))
		// Uncommitted changes to the code measured (results excepted).
		if st, err := exec.Command("git", "status", "--porcelain", "--", ".", ":!bench/results", ":!docs").Output(); err == nil && len(st) > 0 {
			r.Commit += "-dirty"
		}
	}
	return r
}

// add appends a finished section; a failure or error fails the run.
func (r *Report) add(s *Section) {
	r.Sections = append(r.Sections, s)
	if s.Error != "" || len(s.Failures) > 0 {
		r.Passed = false
	}
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// markdown renders the report as the tables docs/ carries.
func (r *Report) markdown() string {
	var b strings.Builder
	title := "Benchmarks"
	if r.Kind == "chaos" {
		title = "Fault suite"
	}
	fmt.Fprintf(&b, "\n## %s — %s\n\n", title, r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "`%s` · %d cores (`nproc`) · %s · %s", r.Command, r.Cores, r.CPU, r.GoVersion)
	if r.Commit != "" {
		fmt.Fprintf(&b, " · commit %s", r.Commit)
	}
	fmt.Fprintf(&b, " · took %s\n", r.Elapsed)
	for _, s := range r.Sections {
		b.WriteString(s.markdown(r.Kind == "chaos"))
	}
	if r.Kind == "chaos" {
		if r.Passed {
			b.WriteString("\n**All checks passed.**\n")
		} else {
			b.WriteString("\n**Some checks FAILED.**\n")
		}
	}
	return b.String()
}

// markdown renders one section; checks says whether a pass is stated.
func (s *Section) markdown(checks bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s\n\n", s.Title)
	if s.Error != "" {
		fmt.Fprintf(&b, "**Could not run:** %s\n", s.Error)
	}
	if len(s.Columns) > 0 && len(s.Rows) > 0 {
		b.WriteString(mdTable(s.Columns, s.Rows))
	}
	if len(s.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	switch {
	case len(s.Failures) > 0:
		b.WriteString("\n**FAILED:**\n")
		for _, f := range s.Failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	case checks && s.Error == "":
		b.WriteString("\n**Passed.**\n")
	}
	return b.String()
}

func mdTable(cols []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(cols, " | ") + " |\n")
	sep := make([]string, len(cols))
	for i := range sep {
		sep[i] = "---"
	}
	b.WriteString("|" + strings.Join(sep, "|") + "|\n")
	for _, r := range rows {
		cells := make([]string, len(cols))
		copy(cells, r)
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

// write saves the JSON next to a Markdown copy under bench/results/.
func (r *Report) write(root, out, md string) error {
	if out == "" {
		out = filepath.Join(root, "bench", "results", r.Kind+"-latest.json")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	mdPath := strings.TrimSuffix(out, filepath.Ext(out)) + ".md"
	if err := os.WriteFile(mdPath, []byte(strings.TrimLeft(md, "\n")), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
