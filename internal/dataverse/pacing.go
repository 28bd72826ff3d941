package dataverse

import (
	"context"
	"net/http"
	"strconv"
	"strings"
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
// reports on every response the requests left in the current window
// (x-ms-ratelimit-burst-remaining-xrm-requests) and the execution time left
// (x-ms-ratelimit-time-remaining-xrm-requests). While both stay above a tenth
// of their budget requests go out freely; below it, request starts are
// spaced so the budget refills as fast as it is spent (window/budget, or
// window·cost/time budget). Once a budget is spent, spacing cannot help (a
// burst earlier in the window still counts), so the next start waits until
// the window lets go of this client's oldest attempt in it. The result runs
// close to the limit with almost no 429s. A 429 that happens anyway holds
// every request until its Retry-After (pause).
type pacer struct {
	now    func() time.Time
	window time.Duration // the service's sliding window (300s in Dataverse)
	off    bool

	mu        sync.Mutex
	remaining int           // requests left, last reported; -1 = unknown
	max       int           // largest remaining seen: the window's budget estimate
	timeLeft  time.Duration // execution time left, last reported; -1 = unknown
	timeMax   time.Duration // largest execution time left seen
	avgDur    time.Duration // moving average of attempt durations, a stand-in for execution time
	next      time.Time
	until     time.Time // a 429's Retry-After holds every request until then
	ends      ring      // when this client's recent attempts ended, within one window
}

// ring is a fixed-size queue of times, oldest first.
type ring struct {
	buf     []time.Time
	head, n int
}

func (r *ring) push(t time.Time) {
	if r.buf == nil {
		r.buf = make([]time.Time, maxLog)
	}
	if r.n == len(r.buf) {
		r.pop()
	}
	r.buf[(r.head+r.n)%len(r.buf)] = t
	r.n++
}

func (r *ring) pop() {
	r.head = (r.head + 1) % len(r.buf)
	r.n--
}

func (r *ring) oldest() (time.Time, bool) {
	if r.n == 0 {
		return time.Time{}, false
	}
	return r.buf[r.head], true
}

const (
	rateWindow        = 300 * time.Second
	burstHeader       = "x-ms-ratelimit-burst-remaining-xrm-requests"
	timeHeader        = "x-ms-ratelimit-time-remaining-xrm-requests"
	dopHeader         = "x-ms-dop-hint"
	lowWaterFraction  = 10 // pace below a tenth of the budget
	minLowWater       = 8
	maxPaceInterval   = 5 * time.Second
	defaultPaceBudget = 6000
)

func newPacer(now func() time.Time) *pacer {
	return &pacer{now: now, window: rateWindow, remaining: -1, timeLeft: -1}
}

// maxLog bounds the attempt log (Dataverse's budget is 6000 per window).
const maxLog = 8192

// record notes that an attempt ended at t, for working out when the
// service's window will free room again.
func (p *pacer) record(t time.Time) {
	if p.off {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.remaining < 0 && p.timeLeft < 0 {
		return // the service reports no limits: nothing to plan for
	}
	p.prune(t)
	p.ends.push(t)
}

// prune drops attempts that have left the window.
func (p *pacer) prune(now time.Time) {
	for {
		e, ok := p.ends.oldest()
		if !ok || now.Sub(e) < p.window {
			return
		}
		p.ends.pop()
	}
}

// freedAt is when the oldest of this client's attempts still inside the
// window leaves it, which is when an exhausted budget gets room again
// (exact when this client is the only caller; never later than a window).
func (p *pacer) freedAt(now time.Time) time.Time {
	p.prune(now)
	if e, ok := p.ends.oldest(); ok {
		return e.Add(p.window)
	}
	return now
}

// observe reads the rate-limit headers of a response that took d.
func (p *pacer) observe(h http.Header, d time.Duration) {
	n, nerr := strconv.Atoi(h.Get(burstHeader))
	t, terr := parseTimeRemaining(h.Get(timeHeader))
	if nerr != nil && terr != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if nerr == nil {
		p.remaining = n
		// The header already counts the request it answers.
		p.max = max(p.max, n+1)
	}
	if terr == nil {
		p.timeLeft = t
		p.timeMax = max(p.timeMax, t)
		if p.avgDur == 0 {
			p.avgDur = d
		} else {
			p.avgDur += (d - p.avgDur) / 8
		}
	}
}

// parseTimeRemaining reads the execution time left, sent as seconds with a
// thousands separator and decimals ("1,200.00").
func parseTimeRemaining(v string) (time.Duration, error) {
	if v == "" {
		return 0, strconv.ErrSyntax
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(v, ",", ""), 64)
	if err != nil || f < 0 {
		return 0, strconv.ErrSyntax
	}
	return time.Duration(f * float64(time.Second)), nil
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
	if p.off {
		return hold
	}
	interval := max(p.countInterval(), p.timeInterval())
	if interval <= 0 {
		return hold
	}
	interval = min(interval, maxPaceInterval)
	now := p.now()
	start := now
	if p.next.After(now) {
		start = p.next
	}
	if p.exhausted() {
		// Spacing alone cannot help once the budget is gone (a burst earlier
		// in the window still counts): wait for the window to let go of the
		// oldest attempt, then go on at the refill rate.
		if f := p.freedAt(now); f.After(start) {
			start = f
		}
	}
	p.next = start.Add(interval)
	return max(start.Sub(now), hold)
}

// exhausted reports a budget with no room for another request; the last
// report is kept until the next response, so only one caller per freed slot
// goes ahead (the others queue behind p.next).
func (p *pacer) exhausted() bool {
	if p.remaining == 0 {
		return true
	}
	return p.timeLeft >= 0 && p.timeMax > 0 && p.timeLeft < p.cost()
}

// cost is the average execution time of a request: time used in the window
// over the requests counted in it when both headers are there, else the
// average attempt duration (an upper bound).
func (p *pacer) cost() time.Duration {
	if p.remaining >= 0 && p.max > p.remaining && p.timeMax > p.timeLeft {
		return (p.timeMax - p.timeLeft) / time.Duration(p.max-p.remaining)
	}
	return p.avgDur
}

// countInterval spaces starts so the request budget refills as fast as it
// is spent, once fewer than a tenth of it remain; 0 = no pacing needed.
func (p *pacer) countInterval() time.Duration {
	if p.remaining < 0 {
		return 0
	}
	budget := p.max
	if budget <= 0 {
		budget = defaultPaceBudget
	}
	if p.remaining >= max(budget/lowWaterFraction, minLowWater) {
		return 0
	}
	return p.window / time.Duration(budget)
}

// timeInterval does the same for the execution-time budget: a request of the
// average cost may start every window·cost/budget.
func (p *pacer) timeInterval() time.Duration {
	if p.timeLeft < 0 || p.timeMax <= 0 || p.timeLeft >= p.timeMax/lowWaterFraction {
		return 0
	}
	return time.Duration(float64(p.window) * float64(p.cost()) / float64(p.timeMax))
}
