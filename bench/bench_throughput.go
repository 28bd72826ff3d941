package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dataverse/emulator/throttle"
	intake "github.com/d365portal/connector/internal/sync"
)

type throughputResult struct {
	Contacts           int     `json:"contacts"`
	Window             string  `json:"window"`
	MaxRequests        int     `json:"max_requests_per_window"`
	RequestsPerInvite  float64 `json:"requests_per_invitation"`
	CeilingPerSecond   float64 `json:"ceiling_invitations_per_s"`
	AchievedPerSecond  float64 `json:"achieved_invitations_per_s"`
	Fraction           float64 `json:"fraction_of_ceiling"`
	LongRunCeiling     float64 `json:"long_run_ceiling_invitations_per_s"`
	Elapsed            float64 `json:"elapsed_s"`
	MinElapsed         float64 `json:"min_elapsed_s"`
	Throttled          int     `json:"throttled_429"`
	Admitted           int     `json:"admitted_requests"`
	Sent               int     `json:"sent"`
	Invitations        int     `json:"invitations"`
	Lost               int     `json:"lost"`
	Duplicated         int     `json:"duplicated"`
	DeadLetters        int64   `json:"dead_letters"`
	PeakWindowRequests int     `json:"peak_requests_in_any_window"`
	// Lag[m-1] is how much later than the ideal (first request + m windows)
	// request m·budget+1 started: the time the pacer lost by window m.
	Lag    []float64 `json:"lag_s_by_window"`
	MaxLag float64   `json:"max_lag_s"`
}

// benchThroughput runs the intake pipeline against the emulator enforcing
// Dataverse's service protection limits scaled down in time (same shape,
// same 20 requests/s) and reports how close it gets to the ceiling.
func benchThroughput(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "throughput", Title: "2. Throughput at the service-protection limit"}
	n, scale := 2000, 0.1 // 600 requests per 30 s
	if o.quick {
		n, scale = 300, 0.02 // 120 requests per 6 s
	}
	if o.contacts > 0 {
		n = o.contacts
	}
	limits := throttle.Default().Scaled(scale)
	st, err := h.stage("throughput")
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	defer st.close()
	g, err := startOrg(emulator.Options{Limits: limits, RequestLogSize: 1 << 20})
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	st.onClose(g.close)
	rs, err := startRedis(filepath.Join(st.dir, "redis"), false)
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	st.onClose(rs.kill)

	cs, err := g.insertContacts("tp", n, map[string]any{
		emulator.ColInviteStatus: emulator.InviteRequested, emulator.ColInvitePortal: partnerPortal,
		emulator.ColInviteRoles: strings.Join(clickRoles, ", "),
	})
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	var sent, throttled atomic.Int64
	p, err := newInProcess(inProcessOptions{
		Org: g, Redis: rs, Window: limits.Window,
		Hooks: intake.Hooks{Processed: func(outcome string, _ time.Duration) {
			if outcome == intake.OutcomeSent {
				sent.Add(1)
			}
		}},
		DVHooks: dataverse.Hooks{OnThrottle: func(dataverse.RequestInfo, time.Duration) { throttled.Add(1) }},
	})
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	defer p.rdb.Close()
	// The requests arrive the way webhooks deliver them (queued without a
	// Dataverse read), so every Dataverse request counted is the workers'.
	for _, c := range cs {
		if _, err := p.intake.Enqueue(ctx, intake.Request{ContactID: c.ID, Source: "bench"}); err != nil {
			sec.Error = err.Error()
			return sec
		}
	}
	st.logf("%d requests queued; limit %d requests per %s (ceiling %.0f requests/s)", n, limits.MaxRequests, limits.Window, float64(limits.MaxRequests)/limits.Window.Seconds())
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	if err := p.intake.Start(runCtx); err != nil {
		sec.Error = err.Error()
		return sec
	}
	timeout := 10 * time.Minute
	lastLog := start
	for {
		done := int(sent.Load())
		if done >= n {
			break
		}
		if time.Since(start) > timeout || ctx.Err() != nil {
			sec.check(false, "only %d of %d invitations sent after %s", done, n, timeout)
			break
		}
		if time.Since(lastLog) >= 15*time.Second {
			lastLog = time.Now()
			st.logf("%d/%d sent, %d × 429", done, n, throttled.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	_ = p.intake.Shutdown(sctx)
	scancel()
	cancel()

	qs, _ := p.intake.Stats(context.Background())
	out := g.outcome(cs)
	log := g.RequestLog()
	rc := countRequests(log, emulator.AppUserID, start, time.Time{})
	res := throughputResult{
		Contacts: n, Window: limits.Window.String(), MaxRequests: limits.MaxRequests,
		Elapsed: elapsed.Seconds(), Throttled: rc.Throttled, Admitted: rc.Requests - rc.Throttled,
		Sent: out.StatusSent, Invitations: out.Invitations, Lost: n - out.StatusSent,
		Duplicated: max(0, out.Invitations-n) + max(0, out.Emails-n), DeadLetters: qs.DeadLetters,
	}
	res.RequestsPerInvite = float64(res.Admitted) / float64(n)
	w, b := limits.Window, limits.MaxRequests
	rate := float64(b) / w.Seconds() // what the limit allows in the long run
	res.LongRunCeiling = rate / res.RequestsPerInvite
	// The fastest the admitted requests can go: no window-long interval may
	// hold more than the budget, so request i+budget starts at least a
	// window after request i, and the last one no sooner than
	// floor((R-1)/budget) windows after the first.
	res.MinElapsed = float64((res.Admitted-1)/b) * w.Seconds()
	res.CeilingPerSecond = float64(n) / res.MinElapsed
	res.AchievedPerSecond = float64(n) / res.Elapsed
	res.Fraction = res.MinElapsed / res.Elapsed
	res.PeakWindowRequests = peakWindow(log, emulator.AppUserID, w)
	res.Lag = scheduleLag(log, emulator.AppUserID, b, w)
	for _, l := range res.Lag {
		res.MaxLag = max(res.MaxLag, l)
	}

	sec.Columns = []string{"contacts", "limit", "requests / invitation", "ceiling (inv/s)", "achieved (inv/s)", "fraction of ceiling", "run time (shortest possible)", "429s", "lost", "duplicated", "dead letters"}
	sec.row(n, fmt.Sprintf("%d req / %s", b, w), res.RequestsPerInvite, res.CeilingPerSecond,
		res.AchievedPerSecond, fmt.Sprintf("%.3f", res.Fraction),
		fmt.Sprintf("%.1f s (%.0f s)", res.Elapsed, res.MinElapsed),
		res.Throttled, res.Lost, res.Duplicated, res.DeadLetters)
	sec.note("Emulator limits: `throttle.Default().Scaled(%g)`: %d requests and %s of execution per %s sliding window, %d concurrent — Dataverse's shape (6000 per 300 s) at the same 20 requests/s.", scale, b, limits.MaxExecution, w, limits.MaxConcurrent)
	sec.note("Ceiling: no %s interval may hold more than %d requests, so the %d requests admitted cannot finish sooner than ⌊(%d−1)/%d⌋ × %s = %.0f s after the first; ceiling = invitations ÷ that time, fraction = that time ÷ the measured run (from the first worker start to the last email). In the long run the ceiling tends to %.2f invitations/s (%.0f requests/s ÷ %.2f requests per invitation).",
		w, b, res.Admitted, res.Admitted, b, w, res.MinElapsed, res.LongRunCeiling, rate, res.RequestsPerInvite)
	sec.note("Peak requests admitted in any %s window: %d (limit %d). Every 429 made the client hold all requests for its Retry-After (whole seconds). Time lost against the ideal schedule (request m×%d+1 starting m windows after the first), by window: %s s.", w, res.PeakWindowRequests, b, b, floats(res.Lag))
	sec.note("Pipeline in-process (the same sync, invite and dataverse packages and defaults as `connector serve`, 4 workers) because the binary has no setting for the pacer's window: it assumes Dataverse's 300 s, and against a window scaled to %s it would wait up to 300 s for budget that is already free. The requests were queued without Dataverse reads, as webhooks deliver them.", w)
	sec.check(res.Lost == 0, "%d invitations lost", res.Lost)
	sec.check(res.Duplicated == 0, "%d duplicate invitations or emails", res.Duplicated)
	sec.check(res.DeadLetters == 0, "%d dead letters", res.DeadLetters)
	sec.Data = res
	return sec
}

// peakWindow is the most admitted requests of caller in any window-long
// interval, from the request log.
func peakWindow(log []emulator.LoggedRequest, caller string, w time.Duration) int {
	var ts []time.Time
	for _, l := range log {
		if l.Caller == caller && !l.InBatch && l.Route != "sts" && l.Status != http.StatusTooManyRequests {
			ts = append(ts, l.Time)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// scheduleLag compares, for each window m, when request m·budget+1 started
// with the earliest the limit allows (m windows after the first request).
func scheduleLag(log []emulator.LoggedRequest, caller string, budget int, w time.Duration) []float64 {
	var starts []time.Time
	for _, l := range log {
		if l.Caller == caller && !l.InBatch && l.Route != "sts" && l.Status != http.StatusTooManyRequests {
			starts = append(starts, l.Time.Add(-l.Duration))
		}
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	var lag []float64
	for m := 1; m*budget < len(starts); m++ {
		ideal := starts[0].Add(time.Duration(m) * w)
		lag = append(lag, math.Round(starts[m*budget].Sub(ideal).Seconds()*10)/10)
	}
	return lag
}

func floats(v []float64) string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = fmt.Sprintf("%.1f", f)
	}
	return strings.Join(parts, ", ")
}
