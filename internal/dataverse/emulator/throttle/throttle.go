// Package throttle models Dataverse's service protection API limits: per
// caller, a sliding window of request count, a sliding window of combined
// execution time, and a cap on concurrent requests. Over a limit a request is
// refused with the Dataverse error code, message and an exact Retry-After.
//
// Choices where the real service is not specified or not worth copying:
//
//   - A refused request counts toward nothing: not the request window, not
//     execution time, not concurrency. Counting it would push the window
//     forward with every retry, so a client could never get in by honouring
//     Retry-After, and the Retry-After reported would be a guess. Dataverse
//     lengthens Retry-After for clients that keep hammering; that penalty is
//     not modelled.
//   - The request that reaches a limit is admitted and the next one is
//     refused, so the limit is the number of requests (or the amount of
//     execution) a window can hold. Execution time is only known when a
//     request ends, so like Dataverse the execution limit is noticed after it
//     is exceeded.
//   - Execution time is attributed to the moment a request ends.
//   - When several limits are exceeded at once the rejection reports the one
//     that clears last, so a client that waits exactly that long is not
//     refused again by another window (unless requests still in flight end
//     meanwhile and add execution time).
//   - The concurrency limit has no window. Its Retry-After is one second, the
//     smallest whole-second value the Retry-After header can carry.
package throttle

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Dataverse error codes for the three service protection limits (Web API
// error.code, reference §5.1).
const (
	CodeRequests      = "0x80072322" // number of requests
	CodeExecutionTime = "0x80072321" // combined execution time
	CodeConcurrency   = "0x80072326" // concurrent requests
)

// Response headers Dataverse sends on every response.
const (
	HeaderBurstRemaining = "x-ms-ratelimit-burst-remaining-xrm-requests"
	HeaderTimeRemaining  = "x-ms-ratelimit-time-remaining-xrm-requests"
	HeaderDOPHint        = "x-ms-dop-hint"
)

// Limits sizes the limits. A zero field turns its facet off, so the zero
// value is no throttling at all.
type Limits struct {
	Window        time.Duration // sliding window for request count and execution time
	MaxRequests   int           // requests admitted per caller per window
	MaxExecution  time.Duration // combined execution time per caller per window
	MaxConcurrent int           // requests in flight per caller
	DOPHint       int           // value of x-ms-dop-hint; 0 omits the header
}

// Default returns Dataverse's documented defaults: 6000 requests and 20
// minutes of execution time per 5-minute window, 52 concurrent requests, and
// a degree-of-parallelism hint of 4.
func Default() Limits {
	return Limits{
		Window:        300 * time.Second,
		MaxRequests:   6000,
		MaxExecution:  20 * time.Minute,
		MaxConcurrent: 52,
		DOPHint:       4,
	}
}

// Scaled shrinks (or grows) the window and the per-window budgets by f,
// keeping their ratio, so benchmarks can hit the limits in seconds rather
// than minutes. Concurrency and the DOP hint are instantaneous and stay as
// they are. A budget that is on never scales below one.
func (l Limits) Scaled(f float64) Limits {
	if l.Window > 0 {
		l.Window = max(1, time.Duration(math.Round(float64(l.Window)*f)))
	}
	if l.MaxRequests > 0 {
		l.MaxRequests = max(1, int(math.Round(float64(l.MaxRequests)*f)))
	}
	if l.MaxExecution > 0 {
		l.MaxExecution = max(1, time.Duration(math.Round(float64(l.MaxExecution)*f)))
	}
	return l
}

// windowed reports whether the request-count and execution limits apply.
func (l Limits) windowed() bool { return l.Window > 0 }

// Rejection explains why a request was refused: the Dataverse error code,
// its message, and how long until the request would be admitted.
type Rejection struct {
	Code, Message string
	RetryAfter    time.Duration
}

func (r *Rejection) Error() string { return r.Code + ": " + r.Message }

// RetryAfterSeconds is RetryAfter rounded up to whole seconds, the form the
// Retry-After header takes. Rounding up keeps the promise that waiting that
// long is enough.
func (r *Rejection) RetryAfterSeconds() int {
	return int((r.RetryAfter + time.Second - 1) / time.Second)
}

// Limiter enforces Limits per caller. Safe for concurrent use.
type Limiter struct {
	limits  Limits
	now     func() time.Time
	callers sync.Map // caller -> *callerState; read-mostly, one entry per identity
}

// callerState is one caller's windows. Timestamps are appended in clock
// order, so the oldest entries are always at the front.
type callerState struct {
	mu      sync.Mutex
	starts  queue[time.Time] // start times of admitted requests in the window
	execs   queue[execEntry] // execution of finished requests in the window
	execSum time.Duration
	active  int
}

type execEntry struct {
	at time.Time // when the request ended
	d  time.Duration
}

// New returns a Limiter for l; now is its clock (nil means time.Now).
func New(l Limits, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{limits: l, now: now}
}

func (l *Limiter) state(caller string) *callerState {
	if c, ok := l.callers.Load(caller); ok {
		return c.(*callerState)
	}
	c, _ := l.callers.LoadOrStore(caller, &callerState{})
	return c.(*callerState)
}

// prune drops entries that have left the window (now-Window, now].
func (c *callerState) prune(now time.Time, window time.Duration) {
	cut := now.Add(-window)
	for c.starts.len() > 0 && !c.starts.front().After(cut) {
		c.starts.pop()
	}
	for c.execs.len() > 0 && !c.execs.front().at.After(cut) {
		c.execSum -= c.execs.pop().d
	}
}

// Ticket is an admitted request; call End exactly once when it finishes.
type Ticket struct {
	l     *Limiter
	c     *callerState
	ended atomic.Bool
}

// Begin admits a request for caller, or refuses it with the limit it would
// break. A refused request leaves no trace in the caller's windows.
func (l *Limiter) Begin(caller string) (*Ticket, *Rejection) {
	c := l.state(caller)
	now := l.now()
	c.mu.Lock()
	defer c.mu.Unlock()

	var rej *Rejection
	if l.limits.windowed() {
		c.prune(now, l.limits.Window)
		if l.limits.MaxRequests > 0 && c.starts.len() >= l.limits.MaxRequests {
			// The window holds at most MaxRequests entries because refusals
			// are not recorded, so the oldest one expiring makes room.
			k := c.starts.len() - l.limits.MaxRequests
			rej = worse(rej, &Rejection{
				Code: CodeRequests,
				Message: fmt.Sprintf("Number of requests exceeded the limit of %d over time window of %d seconds.",
					l.limits.MaxRequests, seconds(l.limits.Window)),
				RetryAfter: c.starts.at(k).Add(l.limits.Window).Sub(now),
			})
		}
		if l.limits.MaxExecution > 0 && c.execSum >= l.limits.MaxExecution {
			rej = worse(rej, &Rejection{
				Code: CodeExecutionTime,
				Message: fmt.Sprintf("Combined execution time of incoming requests exceeded limit of %s milliseconds over time window of %d seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
					groupThousands(l.limits.MaxExecution.Milliseconds()), seconds(l.limits.Window)),
				RetryAfter: c.execClearsAt(l.limits.MaxExecution).Add(l.limits.Window).Sub(now),
			})
		}
	}
	if l.limits.MaxConcurrent > 0 && c.active >= l.limits.MaxConcurrent {
		rej = worse(rej, &Rejection{
			Code:       CodeConcurrency,
			Message:    fmt.Sprintf("Number of concurrent requests exceeded the limit of %d.", l.limits.MaxConcurrent),
			RetryAfter: time.Second,
		})
	}
	if rej != nil {
		return nil, rej
	}
	if l.limits.windowed() && l.limits.MaxRequests > 0 {
		c.starts.push(now)
	}
	c.active++
	return &Ticket{l: l, c: c}, nil
}

// execClearsAt returns the end time of the entry whose expiry brings the
// combined execution back under max.
func (c *callerState) execClearsAt(limit time.Duration) time.Time {
	sum := c.execSum
	for i := range c.execs.len() {
		e := c.execs.at(i)
		sum -= e.d
		if sum < limit {
			return e.at
		}
	}
	// Unreachable while execSum is the sum of the entries; fall back to the newest.
	return c.execs.at(c.execs.len() - 1).at
}

func worse(a, b *Rejection) *Rejection {
	if a == nil || b.RetryAfter > a.RetryAfter {
		return b
	}
	return a
}

// End records the request's execution time and releases its concurrency
// slot. Calls after the first are ignored.
func (t *Ticket) End(execution time.Duration) {
	if !t.ended.CompareAndSwap(false, true) {
		return
	}

	l, c := t.l, t.c
	now := l.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active--
	if l.limits.windowed() && l.limits.MaxExecution > 0 && execution > 0 {
		c.prune(now, l.limits.Window)
		c.execs.push(execEntry{at: now, d: execution})
		c.execSum += execution
	}
}

// Headers sets the rate-limit headers Dataverse adds to every response:
// requests left in the window, execution time left in the window, and the
// degree-of-parallelism hint. Facets that are off are omitted. Call it after
// Begin so the current request is already counted, as Dataverse does.
func (l *Limiter) Headers(caller string, h http.Header) {
	if l.limits.DOPHint > 0 {
		h.Set(HeaderDOPHint, strconv.Itoa(l.limits.DOPHint))
	}
	if !l.limits.windowed() || (l.limits.MaxRequests <= 0 && l.limits.MaxExecution <= 0) {
		return
	}
	c := l.state(caller)
	now := l.now()
	c.mu.Lock()
	c.prune(now, l.limits.Window)
	count, used := c.starts.len(), c.execSum
	c.mu.Unlock()
	if l.limits.MaxRequests > 0 {
		h.Set(HeaderBurstRemaining, strconv.Itoa(max(0, l.limits.MaxRequests-count)))
	}
	if l.limits.MaxExecution > 0 {
		h.Set(HeaderTimeRemaining, formatRemaining(max(0, l.limits.MaxExecution-used)))
	}
}

// formatRemaining renders remaining execution time the way observed
// responses do: seconds with a thousands separator and two decimals, e.g.
// "1,200.00" for an untouched 20-minute budget.
func formatRemaining(d time.Duration) string {
	cs := int64(d / (10 * time.Millisecond)) // centiseconds, truncated
	return groupThousands(cs/100) + "." + fmt.Sprintf("%02d", cs%100)
}

func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + groupThousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func seconds(d time.Duration) int64 { return int64(math.Round(d.Seconds())) }

// queue is a FIFO over a slice that reuses its backing array, so a caller at
// a steady rate does not allocate per request.
type queue[T any] struct {
	buf  []T
	head int
}

func (q *queue[T]) len() int   { return len(q.buf) - q.head }
func (q *queue[T]) front() T   { return q.buf[q.head] }
func (q *queue[T]) at(i int) T { return q.buf[q.head+i] }

func (q *queue[T]) push(v T) {
	if q.head > 0 && len(q.buf) == cap(q.buf) && q.head >= len(q.buf)/2 {
		// Slide live entries to the front instead of growing.
		n := copy(q.buf, q.buf[q.head:])
		q.buf = q.buf[:n]
		q.head = 0
	}
	q.buf = append(q.buf, v)
}

func (q *queue[T]) pop() T {
	v := q.buf[q.head]
	var zero T
	q.buf[q.head] = zero
	q.head++
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	}
	return v
}
