package bulk

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func TestBudgetFinish(t *testing.T) {
	exchange := func(name string) Sender { return Sender{Name: name, PerMinute: 30, PerDay: 10000} }
	small := Sender{Name: "small", PerMinute: 30, PerDay: 100}
	tests := []struct {
		name    string
		senders []Sender
		n       int
		want    time.Duration // after t0
		never   bool
	}{
		{"nothing to send", []Sender{exchange("a")}, 0, 0, false},
		{"one minute's worth goes now", []Sender{exchange("a")}, 30, 0, false},
		{"the 31st waits a minute", []Sender{exchange("a")}, 31, time.Minute, false},
		{"300 over one sender", []Sender{exchange("a")}, 300, 9 * time.Minute, false},
		{"two senders share the work", []Sender{exchange("a"), exchange("b")}, 60, 0, false},
		{"two senders, 61", []Sender{exchange("a"), exchange("b")}, 61, time.Minute, false},
		{"two senders, 600", []Sender{exchange("a"), exchange("b")}, 600, 9 * time.Minute, false},
		{"own queue first", []Sender{{Name: "a", PerMinute: 30, PerDay: 10000, Queued: 60}}, 1, 2 * time.Minute, false},
		{"day cap fits", []Sender{small}, 100, 3 * time.Minute, false},
		{"day cap spills into the next window", []Sender{small}, 101, 24 * time.Hour, false},
		{"three windows", []Sender{small}, 250, 48*time.Hour + time.Minute, false},
		{"window frees when the oldest sends leave it", []Sender{{Name: "a", PerMinute: 30, PerDay: 100, SentToday: 95,
			WindowStart: t0.Add(-20 * time.Hour)}}, 6, 4 * time.Hour, false},
		{"left in the current window", []Sender{{Name: "a", PerMinute: 30, PerDay: 100, SentToday: 95,
			WindowStart: t0.Add(-20 * time.Hour)}}, 5, 0, false},
		{"window end between slots rounds up to the next slot", []Sender{{Name: "a", PerMinute: 30, PerDay: 100, SentToday: 100,
			WindowStart: t0.Add(-24*time.Hour + 30*time.Second)}}, 1, time.Minute, false},
		{"an old window is over", []Sender{{Name: "a", PerMinute: 30, PerDay: 100, SentToday: 100,
			WindowStart: t0.Add(-25 * time.Hour)}}, 1, 0, false},
		{"unknown window start is read as now", []Sender{{Name: "a", PerMinute: 30, PerDay: 100, SentToday: 100}}, 1, 24 * time.Hour, false},
		{"queue larger than today's budget", []Sender{{Name: "a", PerMinute: 30, PerDay: 100, Queued: 100}}, 1, 24 * time.Hour, false},
		{"an exhausted sender leaves it to the other", []Sender{
			{Name: "a", PerMinute: 30, PerDay: 100, SentToday: 100, WindowStart: t0.Add(-time.Hour)},
			{Name: "b", PerMinute: 10, PerDay: 1000}}, 25, 2 * time.Minute, false},
		{"per-minute limit above the day's share", []Sender{{Name: "a", PerMinute: 1000, PerDay: 10}}, 25, 48 * time.Hour, false},
		{"no senders", nil, 1, 0, true},
		{"senders without budget", []Sender{{Name: "a", PerMinute: 0, PerDay: 100}, {Name: "b", PerMinute: 30}}, 1, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := BudgetFinish(t0, tc.senders, tc.n)
			if tc.never {
				if ok {
					t.Fatalf("finish %v, want none", got)
				}
				return
			}
			if !ok || !got.Equal(t0.Add(tc.want)) {
				t.Fatalf("finish %v (ok %v), want %v", got.Sub(t0), ok, tc.want)
			}
		})
	}
}

// The 30,000-partner rollout from the issue: two Exchange mailboxes at 30 a
// minute and 10,000 a day send 20,000 in the first window and the rest when
// it frees up.
func TestBudgetFinishRollout(t *testing.T) {
	s := []Sender{{Name: "a", PerMinute: 30, PerDay: 10000}, {Name: "b", PerMinute: 30, PerDay: 10000}}
	got, ok := BudgetFinish(t0, s, 30000)
	// 10,000 each at 30 a minute take 334 slots (0..333); the next window
	// opens at slot 1440 and the last 5,000 each take slots 1440..1606.
	want := t0.Add(1606 * time.Minute)
	if !ok || !got.Equal(want) {
		t.Fatalf("finish %v, want %v", got, want)
	}
	if b, _ := (Budget{Senders: s}).Finish(t0, 30000); !b.Equal(got) {
		t.Fatalf("Budget.Finish %v, BudgetFinish %v", b, got)
	}
}

func TestRateEstimator(t *testing.T) {
	e := RateEstimator{Start: t0, Total: 100}
	if _, ok := e.Finish(t0.Add(time.Minute), 100); ok {
		t.Error("estimate with nothing done")
	}
	if _, ok := e.Finish(t0, 50); ok {
		t.Error("estimate with no time elapsed")
	}
	got, ok := e.Finish(t0.Add(10*time.Second), 90) // 10 rows in 10s
	if want := t0.Add(100 * time.Second); !ok || !got.Equal(want) {
		t.Errorf("finish %v, want %v", got, want)
	}
	if got, ok := e.Finish(t0.Add(time.Hour), 0); !ok || !got.Equal(t0.Add(time.Hour)) {
		t.Errorf("finished run: %v %v", got, ok)
	}
}
