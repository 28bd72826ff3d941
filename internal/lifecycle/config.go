package lifecycle

import (
	"fmt"
	"time"
)

// Portal is one portal's reminder and expiry settings.
type Portal struct {
	Name string
	// ExpiresAfter is how long invitations stay open (0: they never
	// expire, and then there can be no reminders).
	ExpiresAfter time.Duration
	// Reminders are durations before expiry at which a reminder is sent,
	// for example 7 days and 1 day. The index of a reminder in this list is
	// the index passed to Reminder.Send.
	Reminders []time.Duration
}

// Problem is one invalid setting of a Portal. Key is relative to the
// portal's invitation block ("reminders[1]", "expires_after"), so the
// configuration loader can name the full key and its line.
type Problem struct {
	Key     string
	Message string
}

func (p Problem) Error() string { return p.Key + ": " + p.Message }

// CheckPortal returns the problems of p's settings: a negative
// expires_after; reminders without an expiry; a reminder that is not
// positive, not shorter than expires_after (it would fall on or before the
// invitation's creation), or listed twice.
func CheckPortal(p Portal) []Problem {
	var out []Problem
	if p.ExpiresAfter < 0 {
		out = append(out, Problem{"expires_after", fmt.Sprintf("%s must not be negative", FormatDuration(p.ExpiresAfter))})
	}
	if len(p.Reminders) > 0 && p.ExpiresAfter == 0 {
		out = append(out, Problem{"reminders", "need expires_after: invitations that never expire get no reminders"})
	}
	seen := make(map[time.Duration]int, len(p.Reminders))
	for i, d := range p.Reminders {
		key := fmt.Sprintf("reminders[%d]", i)
		switch first, dup := seen[d]; {
		case d <= 0:
			out = append(out, Problem{key, fmt.Sprintf("%s must be positive (a duration before expiry)", FormatDuration(d))})
		case p.ExpiresAfter > 0 && d >= p.ExpiresAfter:
			out = append(out, Problem{key, fmt.Sprintf("%s is not shorter than expires_after (%s)", FormatDuration(d), FormatDuration(p.ExpiresAfter))})
		case dup:
			out = append(out, Problem{key, fmt.Sprintf("%s is listed twice (also reminders[%d])", FormatDuration(d), first)})
		default:
			seen[d] = i
		}
	}
	return out
}

// FormatDuration writes d as the configuration does: whole days as "7d",
// anything else as Go writes it ("36h0m0s").
func FormatDuration(d time.Duration) string {
	if d != 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// dueReminder returns the index of the latest reminder due for an
// invitation with left until it expires: the shortest reminder not shorter
// than left. ok is false when none is due yet.
func (p Portal) dueReminder(left time.Duration) (index int, ok bool) {
	index = -1
	for i, d := range p.Reminders {
		if left <= d && (index < 0 || d < p.Reminders[index]) {
			index = i
		}
	}
	return index, index >= 0
}

// horizon is how far ahead of now an invitation's expiry may lie for a
// reminder to be due.
func (p Portal) horizon() time.Duration {
	var h time.Duration
	for _, d := range p.Reminders {
		h = max(h, d)
	}
	return h
}
