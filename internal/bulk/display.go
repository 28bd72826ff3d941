package bulk

import (
	"io"
	"sync"
	"time"

	"github.com/cheggaaa/pb/v3"
)

// Bar templates. On a terminal pb redraws the line in place; elsewhere
// (logs, CI) the line template is printed as a new line every interval, since
// carriage-return redraws turn into one unreadable line in a log file.
const (
	terminalTemplate = `{{counters . }} {{bar . "[" "#" "#" "." "]"}} {{percent . "%.0f%%"}}{{string . "finish"}}`
	lineTemplate     = `progress: {{counters . "%s/%s"}} ({{percent . "%.0f%%"}}){{string . "finish"}}`
)

// display shows a run's progress and expected finish time on w.
type display struct {
	bar      *pb.ProgressBar
	w        io.Writer
	terminal bool
	total    int
	est      Estimator
	now      func() time.Time
	start    time.Time

	mu   sync.Mutex // serialises printed lines and Estimator calls in line mode
	stop chan struct{}
	done chan struct{}
}

// displayOptions configure newDisplay.
type displayOptions struct {
	est      Estimator
	now      func() time.Time
	interval time.Duration // between lines when w is not a terminal
	// terminal overrides pb's own detection (a *os.File that is a tty).
	terminal *bool
}

// newDisplay starts showing progress towards total on w.
func newDisplay(w io.Writer, total int, o displayOptions) *display {
	d := &display{w: w, total: total, est: o.est, now: o.now, start: o.now(), bar: pb.New(total)}
	if o.terminal != nil {
		d.bar.Set(pb.Terminal, *o.terminal)
	}
	d.bar.SetWriter(w) // detects a terminal unless told
	d.terminal = d.bar.GetBool(pb.Terminal)
	d.bar.Set("finish", finishElement{d})
	if d.terminal {
		d.bar.SetTemplateString(terminalTemplate).Start()
		return d
	}
	d.bar.SetTemplateString(lineTemplate).Set(pb.Static, true).Start()
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	go d.printEvery(o.interval)
	return d
}

func (d *display) printEvery(interval time.Duration) {
	defer close(d.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			d.printLine()
		case <-d.stop:
			return
		}
	}
}

// printLine prints the current state as one line (line mode).
func (d *display) printLine() {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, _ = io.WriteString(d.w, d.bar.String()+"\n")
}

// add counts n finished rows.
func (d *display) add(n int) {
	if d != nil {
		d.bar.Add(n)
	}
}

// finish draws the final state and stops.
func (d *display) finish() {
	if d == nil {
		return
	}
	if d.terminal {
		d.bar.Finish()
		return
	}
	close(d.stop)
	<-d.done
	d.bar.Finish()
	d.printLine()
}

// finishText is the expected finish time, or how long the run took.
func (d *display) finishText() string {
	now := d.now()
	remaining := d.total - int(d.bar.Current())
	if remaining <= 0 {
		return "done in " + span(now.Sub(d.start))
	}
	t, ok := d.est.Finish(now, remaining)
	if !ok {
		return "finish: estimating"
	}
	if t.Sub(now) < time.Second {
		return "finish: any moment"
	}
	return "finish ~" + when(now, t)
}

// finishElement puts finishText into the bar's template ({{string . "finish"}}):
// pb prints the value with fmt, which calls String at every redraw.
type finishElement struct{ d *display }

func (f finishElement) String() string { return ", " + f.d.finishText() }
