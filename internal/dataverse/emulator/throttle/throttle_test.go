package throttle

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func mustBegin(t *testing.T, l *Limiter, caller string) *Ticket {
	t.Helper()
	tk, rej := l.Begin(caller)
	if rej != nil {
		t.Fatalf("Begin(%q) refused: %v (retry after %v)", caller, rej, rej.RetryAfter)
	}
	return tk
}

func mustRefuse(t *testing.T, l *Limiter, caller, code string) *Rejection {
	t.Helper()
	tk, rej := l.Begin(caller)
	if rej == nil {
		tk.End(0)
		t.Fatalf("Begin(%q) admitted, want %s", caller, code)
	}
	if rej.Code != code {
		t.Fatalf("Begin(%q) refused with %s (%s), want %s", caller, rej.Code, rej.Message, code)
	}
	if rej.RetryAfter <= 0 {
		t.Fatalf("RetryAfter = %v, want > 0", rej.RetryAfter)
	}
	return rej
}

func TestDefaultAndScaled(t *testing.T) {
	d := Default()
	want := Limits{Window: 300 * time.Second, MaxRequests: 6000, MaxExecution: 20 * time.Minute, MaxConcurrent: 52, DOPHint: 4}
	if d != want {
		t.Fatalf("Default() = %+v, want %+v", d, want)
	}
	s := d.Scaled(0.1)
	want = Limits{Window: 30 * time.Second, MaxRequests: 600, MaxExecution: 2 * time.Minute, MaxConcurrent: 52, DOPHint: 4}
	if s != want {
		t.Fatalf("Scaled(0.1) = %+v, want %+v", s, want)
	}
	if z := (Limits{}).Scaled(0.5); z != (Limits{}) {
		t.Errorf("zero Limits scaled = %+v, want still off", z)
	}
	if tiny := d.Scaled(1e-9); tiny.MaxRequests != 1 || tiny.MaxExecution <= 0 || tiny.Window <= 0 {
		t.Errorf("Scaled(1e-9) = %+v, want budgets that stay on", tiny)
	}
}

func TestRequestCountLimit(t *testing.T) {
	clock := newClock()
	l := New(Limits{Window: 10 * time.Second, MaxRequests: 3}, clock.Now)

	first := clock.Now()
	for range 3 {
		mustBegin(t, l, "app").End(10 * time.Millisecond)
		clock.Advance(time.Second)
	}
	// Three requests at t=0,1,2; now t=3. The window frees up when the first
	// one is 10s old, at t=10.
	rej := mustRefuse(t, l, "app", CodeRequests)
	if want := first.Add(10 * time.Second).Sub(clock.Now()); rej.RetryAfter != want {
		t.Fatalf("RetryAfter = %v, want %v", rej.RetryAfter, want)
	}
	if rej.Message != "Number of requests exceeded the limit of 3 over time window of 10 seconds." {
		t.Errorf("message = %q", rej.Message)
	}
	if rej.RetryAfterSeconds() != 7 {
		t.Errorf("RetryAfterSeconds = %d, want 7", rej.RetryAfterSeconds())
	}

	// Hammering while refused changes nothing: refusals are not counted.
	for range 100 {
		clock.Advance(10 * time.Millisecond)
		mustRefuse(t, l, "app", CodeRequests)
	}
	clock.Advance(first.Add(10*time.Second).Sub(clock.Now()) - time.Nanosecond)
	mustRefuse(t, l, "app", CodeRequests)
	clock.Advance(time.Nanosecond)
	mustBegin(t, l, "app").End(0)

	// Other callers have their own windows.
	mustBegin(t, l, "someone-else").End(0)
}

func TestExecutionTimeLimit(t *testing.T) {
	clock := newClock()
	l := New(Limits{Window: 60 * time.Second, MaxExecution: 10 * time.Second}, clock.Now)

	var ends []time.Time
	for range 3 {
		tk := mustBegin(t, l, "app")
		clock.Advance(time.Second)
		tk.End(4 * time.Second) // simulated server cost, not wall time
		ends = append(ends, clock.Now())
	}
	// 12s used of 10s: the request that crossed the limit was admitted, the
	// next is refused until the first 4s leave the window (12-4 = 8 < 10).
	rej := mustRefuse(t, l, "app", CodeExecutionTime)
	if want := ends[0].Add(60 * time.Second).Sub(clock.Now()); rej.RetryAfter != want {
		t.Fatalf("RetryAfter = %v, want %v", rej.RetryAfter, want)
	}
	if rej.Message != "Combined execution time of incoming requests exceeded limit of 10,000 milliseconds over time window of 60 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later." {
		t.Errorf("message = %q", rej.Message)
	}
	clock.Advance(rej.RetryAfter)
	mustBegin(t, l, "app").End(0)
}

func TestExecutionTimeNeedsSeveralEntriesToExpire(t *testing.T) {
	clock := newClock()
	l := New(Limits{Window: 60 * time.Second, MaxExecution: 10 * time.Second}, clock.Now)
	var ends []time.Time
	for _, d := range []time.Duration{time.Second, time.Second, 20 * time.Second} {
		mustBegin(t, l, "app").End(d)
		ends = append(ends, clock.Now())
		clock.Advance(time.Second)
	}
	// 22s used; the two 1s entries expiring leaves 20s, still over: only the
	// third entry leaving brings it under.
	rej := mustRefuse(t, l, "app", CodeExecutionTime)
	if want := ends[2].Add(60 * time.Second).Sub(clock.Now()); rej.RetryAfter != want {
		t.Fatalf("RetryAfter = %v, want %v", rej.RetryAfter, want)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	clock := newClock()
	l := New(Limits{MaxConcurrent: 2}, clock.Now)
	a := mustBegin(t, l, "app")
	b := mustBegin(t, l, "app")
	rej := mustRefuse(t, l, "app", CodeConcurrency)
	if rej.Message != "Number of concurrent requests exceeded the limit of 2." || rej.RetryAfter != time.Second {
		t.Errorf("rejection = %+v", rej)
	}
	mustBegin(t, l, "other").End(0)
	a.End(0)
	a.End(0) // a second End must not free another slot
	c := mustBegin(t, l, "app")
	mustRefuse(t, l, "app", CodeConcurrency)
	b.End(0)
	c.End(0)
}

func TestLongestRetryAfterWins(t *testing.T) {
	clock := newClock()
	l := New(Limits{Window: 100 * time.Second, MaxRequests: 2, MaxExecution: 5 * time.Second}, clock.Now)
	mustBegin(t, l, "app").End(time.Second)
	clock.Advance(50 * time.Second)
	mustBegin(t, l, "app").End(10 * time.Second)
	// Count clears at t=100 (50s away); execution only at t=150 (100s away).
	rej := mustRefuse(t, l, "app", CodeExecutionTime)
	if rej.RetryAfter != 100*time.Second {
		t.Fatalf("RetryAfter = %v, want 100s", rej.RetryAfter)
	}
}

// TestHonouringRetryAfterIsEnough drives one sequential client through random
// work: whenever it is refused it waits exactly RetryAfter, and the next
// attempt must be admitted.
func TestHonouringRetryAfterIsEnough(t *testing.T) {
	for _, rounded := range []bool{false, true} {
		t.Run(fmt.Sprintf("seconds=%v", rounded), func(t *testing.T) {
			clock := newClock()
			l := New(Limits{Window: 30 * time.Second, MaxRequests: 50, MaxExecution: 20 * time.Second, MaxConcurrent: 4}, clock.Now)
			rng := rand.New(rand.NewPCG(1, 2))
			refusals := 0
			for i := range 5000 {
				tk, rej := l.Begin("app")
				if rej != nil {
					refusals++
					wait := rej.RetryAfter
					if rounded {
						wait = time.Duration(rej.RetryAfterSeconds()) * time.Second
					}
					clock.Advance(wait)
					if tk, rej = l.Begin("app"); rej != nil {
						t.Fatalf("request %d refused twice in a row: %v after waiting %v", i, rej, wait)
					}
				}
				cost := time.Duration(rng.IntN(2000)) * time.Millisecond
				clock.Advance(time.Duration(rng.IntN(300)) * time.Millisecond)
				tk.End(cost)
			}
			if refusals == 0 {
				t.Fatal("the workload never hit a limit; the test proves nothing")
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	clock := newClock()
	l := New(Default(), clock.Now)
	tk := mustBegin(t, l, "app")
	h := http.Header{}
	l.Headers("app", h)
	// Values as seen on a real response for a fresh caller.
	if got := h.Get(HeaderBurstRemaining); got != "5999" {
		t.Errorf("%s = %q, want 5999", HeaderBurstRemaining, got)
	}
	if got := h.Get(HeaderTimeRemaining); got != "1,200.00" {
		t.Errorf("%s = %q, want 1,200.00", HeaderTimeRemaining, got)
	}
	if got := h.Get(HeaderDOPHint); got != "4" {
		t.Errorf("%s = %q, want 4", HeaderDOPHint, got)
	}
	tk.End(1500 * time.Millisecond)
	l.Headers("app", h)
	if got := h.Get(HeaderTimeRemaining); got != "1,198.50" {
		t.Errorf("%s after 1.5s = %q, want 1,198.50", HeaderTimeRemaining, got)
	}
	clock.Advance(300 * time.Second)
	l.Headers("app", h)
	if h.Get(HeaderBurstRemaining) != "6000" || h.Get(HeaderTimeRemaining) != "1,200.00" {
		t.Errorf("after the window: %v", h)
	}

	off := http.Header{}
	New(Limits{}, clock.Now).Headers("app", off)
	if len(off) != 0 {
		t.Errorf("limits off set headers %v", off)
	}
}

func TestFormatRemaining(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                             "0.00",
		999 * time.Millisecond:        "0.99",
		2 * time.Minute:               "120.00",
		20 * time.Minute:              "1,200.00",
		1234567890 * time.Millisecond: "1,234,567.89",
	} {
		if got := formatRemaining(d); got != want {
			t.Errorf("formatRemaining(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestZeroLimitsNeverRefuse(t *testing.T) {
	l := New(Limits{}, nil)
	var open []*Ticket
	for range 10000 {
		open = append(open, mustBegin(t, l, "app"))
	}
	for _, tk := range open {
		tk.End(time.Hour)
	}
	mustBegin(t, l, "app").End(0)
}

func TestConcurrentCallers(t *testing.T) {
	const limit = 5
	l := New(Limits{Window: time.Minute, MaxRequests: 1 << 30, MaxExecution: time.Hour, MaxConcurrent: limit}, nil)
	var wg sync.WaitGroup
	for c := range 4 {
		caller := "app" + strconv.Itoa(c)
		var inFlight, peak atomic.Int32
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 300 {
					tk, rej := l.Begin(caller)
					if rej != nil {
						continue
					}
					n := inFlight.Add(1)
					for {
						p := peak.Load()
						if n <= p || peak.CompareAndSwap(p, n) {
							break
						}
					}
					h := http.Header{}
					l.Headers(caller, h)
					inFlight.Add(-1)
					tk.End(time.Millisecond)
				}
			}()
		}
		t.Cleanup(func() {
			if p := peak.Load(); p > limit {
				t.Errorf("%s: %d requests in flight, limit %d", caller, p, limit)
			}
		})
	}
	wg.Wait()
}

// tickingClock advances a fixed step on every reading, so a benchmark runs at
// a steady simulated request rate instead of piling millions of requests into
// one window.
func tickingClock(step time.Duration) func() time.Time {
	base := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	var n atomic.Int64
	return func() time.Time { return base.Add(time.Duration(n.Add(1)) * step) }
}

// BenchmarkBeginEnd measures one admitted request under the default limits
// at just below the 6000-per-5-minutes rate, so the windows stay full.
func BenchmarkBeginEnd(b *testing.B) {
	l := New(Default(), tickingClock(30*time.Millisecond)) // two readings per request: 60ms
	b.ReportAllocs()
	for b.Loop() {
		tk, rej := l.Begin("app")
		if rej != nil {
			b.Fatal(rej)
		}
		tk.End(time.Millisecond)
	}
}

func BenchmarkBeginEndParallel(b *testing.B) {
	// Four callers sharing one clock: each sees about a quarter of the ticks.
	l := New(Default(), tickingClock(10*time.Millisecond))
	var next atomic.Int32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		caller := "app" + strconv.Itoa(int(next.Add(1))%4)
		for pb.Next() {
			tk, rej := l.Begin(caller)
			if rej != nil {
				continue // a caller can briefly outpace its share; refusals are cheap too
			}
			tk.End(time.Millisecond)
		}
	})
}
