package emulator

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// FaultOptions injects failures so retries and idempotency can be tested. Rules are
// matched in order; the first rule whose Method and Set match a request applies.
type FaultOptions struct {
	Seed  uint64 // RNG seed (0 = 1); the same seed gives the same fault sequence
	Rules []FaultRule
}

// FaultRule is a per-route fault profile. Probabilities are per request and are checked
// in the order Throttle, Unavailable, InternalError, Reset.
type FaultRule struct {
	Method string // HTTP method, "" or "*" = any
	Set    string // entity set name, "$batch", "WhoAmI"; "" or "*" = any

	Throttle      float64       // 429 with Retry-After and code 0x80072322
	Unavailable   float64       // 503
	InternalError float64       // 500
	Reset         float64       // the connection is closed without a response
	RetryAfter    time.Duration // Retry-After of injected 429s; default 1s

	Latency  time.Duration // fixed delay added before the request is handled
	Jitter   time.Duration // uniform random extra delay in [0, Jitter)
	SlowBody time.Duration // the response body is written in chunks spread over this time
}

// UniformFaults spreads rate over every route: 40% 429s, 30% 503s, 10% 500s, 20% resets.
func UniformFaults(rate float64, seed uint64) FaultOptions {
	return FaultOptions{Seed: seed, Rules: []FaultRule{{
		Throttle: rate * 0.4, Unavailable: rate * 0.3, InternalError: rate * 0.1, Reset: rate * 0.2,
	}}}
}

type faultInjector struct {
	mu    sync.Mutex
	rng   *rand.Rand
	rules []FaultRule
}

func newFaultInjector(o FaultOptions) *faultInjector {
	seed := o.Seed
	if seed == 0 {
		seed = 1
	}
	return &faultInjector{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), rules: o.Rules}
}

type faultKind int

const (
	faultNone faultKind = iota
	faultThrottle
	faultUnavailable
	faultInternal
	faultReset
)

type faultDecision struct {
	kind       faultKind
	delay      time.Duration
	retryAfter time.Duration
}

func (f *faultInjector) match(method, set string) *FaultRule {
	for i := range f.rules {
		r := &f.rules[i]
		if (r.Method == "" || r.Method == "*" || r.Method == method) && (r.Set == "" || r.Set == "*" || r.Set == set) {
			return r
		}
	}
	return nil
}

// pick rolls the dice for a request; nil means no rule applies.
func (f *faultInjector) pick(method, set string) *faultDecision {
	if len(f.rules) == 0 {
		return nil
	}
	r := f.match(method, set)
	if r == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d := &faultDecision{delay: r.Latency, retryAfter: r.RetryAfter}
	if r.Jitter > 0 {
		d.delay += time.Duration(f.rng.Int64N(int64(r.Jitter)))
	}
	if d.retryAfter <= 0 {
		d.retryAfter = time.Second
	}
	x := f.rng.Float64()
	for _, c := range []struct {
		p float64
		k faultKind
	}{{r.Throttle, faultThrottle}, {r.Unavailable, faultUnavailable}, {r.InternalError, faultInternal}, {r.Reset, faultReset}} {
		if x < c.p {
			d.kind = c.k
			break
		}
		x -= c.p
	}
	return d
}

func (f *faultInjector) slowBody(method, set string) time.Duration {
	if len(f.rules) == 0 {
		return 0
	}
	if r := f.match(method, set); r != nil {
		return r.SlowBody
	}
	return 0
}

// applyFault delays the request and, for an injected failure, answers it. It reports
// whether the request was fully handled.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *faultDecision, reqID, route, set string, start time.Time) bool {
	if f.delay > 0 {
		sleepCtx(r.Context(), f.delay)
	}
	var resp *response
	switch f.kind {
	case faultNone:
		return false
	case faultThrottle:
		secs := max(1, int((f.retryAfter+time.Second-1)/time.Second))
		e := newErr(http.StatusTooManyRequests, codeRequestsExceeded, "Number of requests exceeded the limit of 6000 over time window of 300 seconds.")
		e.retryAfter = secs
		resp = errorResponse(e)
	case faultUnavailable:
		resp = errorResponse(newErr(http.StatusServiceUnavailable, codeUnspecified, "The service is temporarily unavailable. Please retry."))
	case faultInternal:
		resp = errorResponse(newErr(http.StatusInternalServerError, codeUnspecified, "An unexpected error occurred."))
	case faultReset:
		s.record(LoggedRequest{Time: s.now(), Method: r.Method, Path: r.URL.RequestURI(), Route: route, Set: set, Status: 0, RequestID: reqID, Duration: time.Since(start), Fault: true})
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler)
	}
	writeResponse(w, resp)
	s.record(LoggedRequest{Time: s.now(), Method: r.Method, Path: r.URL.RequestURI(), Route: route, Set: set, Status: resp.status, RequestID: reqID,
		Duration: time.Since(start), Fault: true, Throttled: resp.status == http.StatusTooManyRequests})
	return true
}

// writeSlow writes the body in ten chunks spread over d.
func writeSlow(w http.ResponseWriter, resp *response, d time.Duration) {
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)
	fl, _ := w.(http.Flusher)
	const chunks = 10
	size := (len(resp.body) + chunks - 1) / chunks
	for i := 0; i < len(resp.body); i += max(size, 1) {
		end := min(i+max(size, 1), len(resp.body))
		if _, err := w.Write(resp.body[i:end]); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		time.Sleep(d / chunks)
	}
}
