package bulk

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// SenderSource supplies the senders' current budgets and queues (from the
// pacing counters).
type SenderSource interface {
	Senders(ctx context.Context) ([]Sender, error)
}

// Schedule is where each sender stands: what waits for it, what it sent in
// its current 24-hour window, and when it can take a new message.
type Schedule struct {
	At      time.Time        `json:"at"`
	Senders []SenderSchedule `json:"senders"`
}

// SenderSchedule is one sender's line of a Schedule.
type SenderSchedule struct {
	Sender    string `json:"sender"`
	Queued    int    `json:"queued"`
	SentToday int    `json:"sent_today"`
	PerDay    int    `json:"per_day"`
	// NextFree is the first slot in which the sender can send a message
	// queued now (after its queue); zero when it has no budget at all.
	NextFree time.Time `json:"next_free,omitzero"`
}

// NewSchedule computes each sender's next free slot at now.
func NewSchedule(now time.Time, senders []Sender) Schedule {
	s := Schedule{At: now, Senders: make([]SenderSchedule, 0, len(senders))}
	for _, x := range senders {
		next, ok := BudgetFinish(now, []Sender{x}, 1)
		if !ok {
			next = time.Time{}
		}
		s.Senders = append(s.Senders, SenderSchedule{Sender: x.Name, Queued: x.Queued, SentToday: x.SentToday,
			PerDay: x.PerDay, NextFree: next})
	}
	return s
}

// Print writes the schedule as a table.
func (s Schedule) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SENDER\tQUEUED\tSENT TODAY\tNEXT FREE SLOT")
	for _, x := range s.Senders {
		next := "no budget"
		if !x.NextFree.IsZero() {
			next = when(s.At, x.NextFree)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\n", x.Sender, x.Queued, x.SentToday, x.PerDay, next)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print schedule: %w", err)
	}
	return nil
}

// when says t relative to now for people: "now" (within a second), "14:05 (in 12m)",
// "Tue 3 Jun 09:00 (in 1d2h)".
func when(now, t time.Time) string {
	d := t.Sub(now)
	if d < time.Second {
		return "now"
	}
	layout := "15:04"
	if d >= 24*time.Hour || t.YearDay() != now.YearDay() || t.Year() != now.Year() {
		layout = "Mon 2 Jan 15:04"
	}
	return t.Format(layout) + " (in " + span(d) + ")"
}

// span is a short duration: 45s, 12m, 3h05m, 2d4h.
func span(d time.Duration) string {
	if s := d.Round(time.Second); s < time.Minute {
		return fmt.Sprintf("%ds", s/time.Second)
	}
	if m := d.Round(time.Minute); m < time.Hour {
		return fmt.Sprintf("%dm", m/time.Minute)
	} else if m < 24*time.Hour {
		return fmt.Sprintf("%dh%02dm", m/time.Hour, m%time.Hour/time.Minute)
	}
	h := d.Round(time.Hour)
	return fmt.Sprintf("%dd%dh", h/(24*time.Hour), h%(24*time.Hour)/time.Hour)
}
