package bulk

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
)

// resumeFile is the record of done rows (FILE.progress): one "key<TAB>outcome"
// line per row that needs no second attempt. Failed rows are not recorded,
// so the next run tries them again.
type resumeFile struct {
	path string
	done map[string]bool
	f    *os.File
	err  error // first failed append
}

// openResume reads the rows an earlier run finished and opens the file for
// appending. A missing file is an empty record.
func openResume(path string) (*resumeFile, error) {
	done, err := readResume(path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open resume file: %w", err)
	}
	return &resumeFile{path: path, done: done, f: f}, nil
}

func readResume(path string) (map[string]bool, error) {
	done := map[string]bool{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return done, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read resume file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if key, _, ok := strings.Cut(sc.Text(), "\t"); ok {
			done[key] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read resume file %s: %w", path, err)
	}
	return done, nil
}

// record appends a done row. The caller serialises calls. A failed write is
// kept and reported by close: the run goes on, but the next one would redo
// the row.
func (r *resumeFile) record(row Row, outcome string) {
	if r == nil || r.err != nil {
		return
	}
	if _, err := fmt.Fprintf(r.f, "%s\t%s\n", row.Key(), outcome); err != nil {
		r.err = fmt.Errorf("write resume file %s: %w", r.path, err)
	}
}

func (r *resumeFile) close() error {
	if r == nil {
		return nil
	}
	err := r.f.Close()
	if r.err != nil {
		return r.err
	}
	if err != nil {
		return fmt.Errorf("close resume file %s: %w", r.path, err)
	}
	return nil
}
