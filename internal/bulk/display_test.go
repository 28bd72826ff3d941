package bulk

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dvtest"
)

// fixedEstimator answers a set finish time and records what it was asked.
type fixedEstimator struct {
	mu        sync.Mutex
	at        time.Time
	ok        bool
	remaining []int
}

func (e *fixedEstimator) Finish(_ time.Time, remaining int) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.remaining = append(e.remaining, remaining)
	return e.at, e.ok
}

func (e *fixedEstimator) asked() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int(nil), e.remaining...)
}

// lineWriter collects output and signals every write.
type lineWriter struct {
	mu    sync.Mutex
	b     strings.Builder
	wrote chan struct{}
}

func newLineWriter() *lineWriter { return &lineWriter{wrote: make(chan struct{}, 1000)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func clockAt(t time.Time) *dvtest.Clock {
	c := dvtest.NewClock()
	c.Add(t.Sub(c.Now()))
	return c
}

func TestDisplayLinesWhenNotATerminal(t *testing.T) {
	clock := clockAt(t0)
	est := &fixedEstimator{}
	w := newLineWriter()
	d := newDisplay(w, 10, displayOptions{est: est, now: clock.Now, interval: time.Hour})
	if d.terminal {
		t.Fatal("a strings.Builder taken for a terminal")
	}
	d.printLine()
	d.add(3)
	clock.Add(30 * time.Second)
	d.printLine()
	est.at, est.ok = t0.Add(2*time.Hour+5*time.Minute), true
	d.add(1)
	d.printLine()
	clock.Add(4*time.Minute + 30*time.Second)
	d.add(6)
	d.finish()
	want := "progress: 0/10 (0%), finish: estimating\n" +
		"progress: 3/10 (30%), finish: estimating\n" +
		"progress: 4/10 (40%), finish ~11:05 (in 2h05m)\n" +
		"progress: 10/10 (100%), done in 5m\n"
	if got := w.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
	if got := est.asked(); len(got) != 3 || got[0] != 10 || got[1] != 7 || got[2] != 6 {
		t.Errorf("estimator asked for %v remaining, want [10 7 6]", got)
	}
}

func TestDisplayPrintsEveryInterval(t *testing.T) {
	w := newLineWriter()
	d := newDisplay(w, 4, displayOptions{est: RateEstimator{Start: time.Now(), Total: 4}, now: time.Now, interval: time.Millisecond})
	d.add(1)
	for range 2 {
		select {
		case <-w.wrote:
		case <-time.After(10 * time.Second):
			t.Fatalf("no periodic line; output so far:\n%s", w.String())
		}
	}
	d.add(3)
	d.finish()
	lines := strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "progress: 1/4 (25%)") ||
		!strings.HasPrefix(lines[len(lines)-1], "progress: 4/4 (100%), done in ") {
		t.Errorf("output:\n%s", w.String())
	}
	for _, l := range lines {
		if strings.Contains(l, "\r") {
			t.Errorf("carriage return in a log line: %q", l)
		}
	}
}

func TestDisplayDrawsOnATerminal(t *testing.T) {
	clock := clockAt(t0)
	est := &fixedEstimator{at: t0.Add(12 * time.Minute), ok: true}
	w := newLineWriter()
	on := true
	d := newDisplay(w, 8, displayOptions{est: est, now: clock.Now, interval: time.Hour, terminal: &on})
	d.add(2)
	<-w.wrote // the bar redraws on its own
	out := w.String()
	if !strings.HasPrefix(out, "\r") || !strings.Contains(out, "/ 8 [") || !strings.Contains(out, "finish ~09:12 (in 12m)") {
		t.Errorf("first frames: %q", out)
	}
	clock.Add(90 * time.Second)
	d.add(6)
	d.finish()
	out = w.String()
	last := out[strings.LastIndex(out, "\r")+1:]
	if !strings.HasPrefix(last, "8 / 8 [########") || !strings.Contains(last, "] 100%, done in 2m") || !strings.HasSuffix(last, "\n") {
		t.Errorf("final frame: %q", last)
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("a terminal bar redraws in place, got %d newlines", strings.Count(out, "\n"))
	}
}
