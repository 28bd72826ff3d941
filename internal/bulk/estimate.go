package bulk

import (
	"time"
)

// Estimator predicts when a run finishes. The progress bar asks it on every
// redraw, so it must be cheap; it is called from one goroutine at a time.
type Estimator interface {
	// Finish returns the expected finish time of the remaining rows as seen
	// at now; ok is false when there is nothing to base an estimate on yet.
	Finish(now time.Time, remaining int) (t time.Time, ok bool)
}

// RateEstimator extrapolates the rate observed since Start: Total rows were
// to do at Start, Total-remaining are done.
type RateEstimator struct {
	Start time.Time
	Total int
}

// Finish implements Estimator.
func (e RateEstimator) Finish(now time.Time, remaining int) (time.Time, bool) {
	if remaining <= 0 {
		return now, true
	}
	done, elapsed := e.Total-remaining, now.Sub(e.Start)
	if done <= 0 || elapsed <= 0 {
		return time.Time{}, false
	}
	perRow := float64(elapsed) / float64(done)
	return now.Add(time.Duration(perRow * float64(remaining))), true
}

// Sender is one mailbox's sending budget and how much of it is spoken for,
// as the pacing counters see it.
type Sender struct {
	Name      string `json:"sender"` // systemuser:<id> or queue:<id>
	PerMinute int    `json:"per_minute"`
	PerDay    int    `json:"per_day"` // a rolling 24-hour cap
	// SentToday counts the messages in the current 24-hour window, which
	// began with the first of them at WindowStart. A zero WindowStart with
	// SentToday > 0 is read as "the window began now", the cautious reading.
	SentToday   int       `json:"sent_today"`
	WindowStart time.Time `json:"window_start,omitzero"`
	// Queued messages wait for this sender ahead of any new ones.
	Queued int `json:"queued"`
}

// Budget estimates from the senders' limits: the finish time of the
// remaining rows, each one message, over Senders. Refresh Senders from the
// pacing counters as they change; the arithmetic is BudgetFinish.
type Budget struct {
	Senders []Sender
}

// Finish implements Estimator.
func (b Budget) Finish(now time.Time, remaining int) (time.Time, bool) {
	return BudgetFinish(now, b.Senders, remaining)
}

const (
	slot     = time.Minute // the per-minute cap's window
	daySlots = 24 * 60     // slots in the per-day cap's window
	// maxSlots bounds the search: a run that cannot finish within a century
	// with the given senders is reported as never.
	maxSlots = 100 * 365 * daySlots
)

// BudgetFinish returns when the last of n more messages can be sent over
// senders, each sending at most PerMinute messages a minute and PerDay in
// any 24 hours, after its own Queued messages. ok is false when the senders
// have no budget at all (none, or zero limits).
//
// Time is cut into one-minute slots from now; a message sent in slot i goes
// at now+i minutes, and each slot carries up to PerMinute messages per
// sender. A sender's day budget is PerDay-SentToday until its window ends
// (WindowStart+24h); after that a fresh window opens at the next slot with
// the whole PerDay. This is exact for the rolling window when the earlier
// messages were themselves paced per minute, which the connector does: they
// leave the window at the pace they entered it. New messages go to whichever
// sender can send them first, so the answer is the first slot by which the
// senders together have sent n messages beyond their queues.
func BudgetFinish(now time.Time, senders []Sender, n int) (time.Time, bool) {
	if n <= 0 {
		return now, true
	}
	plans := make([]senderPlan, 0, len(senders))
	for _, s := range senders {
		if p, ok := planSender(now, s); ok {
			plans = append(plans, p)
		}
	}
	if len(plans) == 0 {
		return time.Time{}, false
	}
	free := func(m int64) int64 {
		var sum int64
		for _, p := range plans {
			sum += max(0, p.capacity(m)-p.queued)
		}
		return sum
	}
	need := int64(n)
	// Find a slot that is late enough by doubling, then the first one by
	// bisection: free is non-decreasing in the slot.
	hi := int64(0)
	for free(hi) < need {
		if hi >= maxSlots {
			return time.Time{}, false
		}
		hi = max(1, hi*2)
	}
	lo := int64(0)
	for lo < hi {
		mid := lo + (hi-lo)/2
		if free(mid) >= need {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return now.Add(time.Duration(lo) * slot), true
}

// senderPlan is a Sender reduced to slot arithmetic.
type senderPlan struct {
	perMinute, perDay int64
	left              int64 // day budget left in the current window
	nextWindow        int64 // first slot of the next window
	queued            int64
}

func planSender(now time.Time, s Sender) (senderPlan, bool) {
	if s.PerMinute <= 0 || s.PerDay <= 0 {
		return senderPlan{}, false
	}
	p := senderPlan{perMinute: int64(s.PerMinute), perDay: int64(s.PerDay), queued: max(0, int64(s.Queued))}
	used, start := int64(s.SentToday), s.WindowStart
	if used <= 0 || start.IsZero() || start.After(now) {
		// No window yet (it opens with the first send, now), or one whose
		// start is unknown: take it as opening now.
		start = now
	}
	end := start.Add(24 * time.Hour)
	if !end.After(now) {
		used, end = 0, now.Add(24*time.Hour) // the old window is over
	}
	p.left = max(0, p.perDay-max(0, used))
	p.nextWindow = int64((end.Sub(now) + slot - 1) / slot)
	return p, true
}

// capacity is how many messages the sender can send in slots 0..m.
func (p senderPlan) capacity(m int64) int64 {
	slots := m + 1
	c := min(p.left, min(slots, p.nextWindow)*p.perMinute)
	if slots > p.nextWindow {
		rest := slots - p.nextWindow
		perWindow := min(p.perDay, daySlots*p.perMinute)
		c += rest/daySlots*perWindow + min(p.perDay, rest%daySlots*p.perMinute)
	}
	return c
}
