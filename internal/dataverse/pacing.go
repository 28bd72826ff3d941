package dataverse

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// limiter is a counting semaphore whose size can change while requests wait:
// with Config.MaxConcurrency 0 it follows the x-ms-dop-hint header, the
// environment's recommended degree of parallelism. Waiters are served FIFO.
type limiter struct {
	mu       sync.Mutex
	limit    int
	inUse    int
	fixed    bool
	waiters  []chan struct{}
	lastHint int
}

func newLimiter(n int, fixed bool) *limiter { return &limiter{limit: n, fixed: fixed} }

func (l *limiter) acquire(ctx context.Context) error {
	l.mu.Lock()
	if l.inUse < l.limit && len(l.waiters) == 0 {
		l.inUse++
		l.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		for i, w := range l.waiters {
			if w == ch {
				l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
				l.mu.Unlock()
				return ctx.Err()
			}
		}
		// Granted between Done and Lock: hand the slot on.
		l.mu.Unlock()
		l.release()
		return ctx.Err()
	}
}

func (l *limiter) release() {
	l.mu.Lock()
	l.inUse--
	l.grantLocked()
	l.mu.Unlock()
}

func (l *limiter) grantLocked() {
	for l.inUse < l.limit && len(l.waiters) > 0 {
		ch := l.waiters[0]
		l.waiters = l.waiters[1:]
		l.inUse++
		close(ch)
	}
}

// hint applies an x-ms-dop-hint value.
func (l *limiter) hint(v string) {
	if l.fixed || v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return
	}
	n = min(n, maxDOP)
	l.mu.Lock()
	if n != l.lastHint {
		l.lastHint = n
		l.limit = n
		l.grantLocked()
	}
	l.mu.Unlock()
}

func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// pacer slows the client down before service protection says no. Dataverse
// reports the requests left in the current window on every response
// (x-ms-ratelimit-burst-remaining-xrm-requests). While that stays above a low
// watermark requests go out freely; below it, request starts are spaced so
// that the window's budget refills about as fast as it is spent, which keeps
// throughput near the limit with almost no 429s. At zero remaining the spacing
// doubles until the server reports headroom again.
type pacer struct {
	now    func() time.Time
	window time.Duration // the service's sliding window (300s in Dataverse)
	off    bool

	mu        sync.Mutex
	remaining int // last reported, -1 = unknown
	max       int // largest remaining seen: the window's budget estimate
	next      time.Time
	until     time.Time // a 429's Retry-After holds every request until then
}

const (
	rateWindow        = 300 * time.Second
	burstHeader       = "x-ms-ratelimit-burst-remaining-xrm-requests"
	dopHeader         = "x-ms-dop-hint"
	lowWaterFraction  = 10 // pace below max/10 remaining
	minLowWater       = 8
	maxPaceInterval   = 5 * time.Second
	defaultPaceBudget = 6000
)

func newPacer(now func() time.Time) *pacer {
	return &pacer{now: now, window: rateWindow, remaining: -1}
}

func (p *pacer) observe(h http.Header) {
	v := h.Get(burstHeader)
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.remaining = n
	// The header already counts the request it answers, so the largest value
	// seen is one under the budget; pacing against it leaves that request as
	// a margin, which keeps the client off the window's exact edge.
	p.max = max(p.max, n)
	p.mu.Unlock()
}

// pause holds all requests for d: a 429 applies to the caller (the
// application user), not to one goroutine, so the others would only collect
// 429s of their own.
func (p *pacer) pause(d time.Duration) {
	if d <= 0 {
		return
	}
	p.mu.Lock()
	if u := p.now().Add(d); u.After(p.until) {
		p.until = u
	}
	p.mu.Unlock()
}

// delay reserves the next start slot and returns how long to wait for it.
func (p *pacer) delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var hold time.Duration
	if !p.until.IsZero() {
		hold = max(p.until.Sub(p.now()), 0)
	}
	if p.off || p.remaining < 0 {
		return hold
	}
	budget := p.max
	if budget <= 0 {
		budget = defaultPaceBudget
	}
	low := max(budget/lowWaterFraction, minLowWater)
	if p.remaining >= low {
		return hold
	}
	interval := p.window / time.Duration(budget)
	if p.remaining <= 0 {
		interval *= 2
	}
	interval = min(interval, maxPaceInterval)
	now := p.now()
	start := now
	if p.next.After(now) {
		start = p.next
	}
	p.next = start.Add(interval)
	return max(start.Sub(now), hold)
}
