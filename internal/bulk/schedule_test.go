package bulk

import (
	"strings"
	"testing"
	"time"
)

func TestSchedulePrint(t *testing.T) {
	senders := []Sender{
		{Name: "systemuser:aaaa", PerMinute: 30, PerDay: 10000, SentToday: 120, WindowStart: t0.Add(-time.Hour), Queued: 45},
		{Name: "queue:bbbb", PerMinute: 30, PerDay: 100, SentToday: 100, WindowStart: t0.Add(-2 * time.Hour)},
		{Name: "queue:cccc", PerMinute: 30, PerDay: 10000},
		{Name: "queue:dddd", PerMinute: 0, PerDay: 10000},
	}
	s := NewSchedule(t0, senders)
	if got := s.Senders[0].NextFree; !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("next free after a queue of 45 at 30/min: %v", got)
	}
	var b strings.Builder
	if err := s.Print(&b); err != nil {
		t.Fatal(err)
	}
	want := `SENDER           QUEUED  SENT TODAY  NEXT FREE SLOT
systemuser:aaaa  45      120/10000   09:01 (in 1m)
queue:bbbb       0       100/100     Tue 3 Mar 07:00 (in 22h00m)
queue:cccc       0       0/10000     now
queue:dddd       0       0/10000     no budget
`
	if b.String() != want {
		t.Errorf("schedule:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWhen(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "now"},
		{0, "now"},
		{400 * time.Millisecond, "now"},
		{45 * time.Second, "09:00 (in 45s)"},
		{59*time.Second + 600*time.Millisecond, "09:00 (in 1m)"},
		{12 * time.Minute, "09:12 (in 12m)"},
		{3*time.Hour + 5*time.Minute, "12:05 (in 3h05m)"},
		{15 * time.Hour, "Tue 3 Mar 00:00 (in 15h00m)"},
		{52 * time.Hour, "Wed 4 Mar 13:00 (in 2d4h)"},
	} {
		if got := when(t0, t0.Add(tc.d)); got != tc.want {
			t.Errorf("when(+%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
