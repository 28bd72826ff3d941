package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/telemetry/telemetrytest"
)

type tracingRun struct {
	Mode         string     `json:"mode"` // off, on, endpoint down
	Clicks       int        `json:"clicks"`
	ClickToSent  dist       `json:"click_to_sent"`
	Portal       loadResult `json:"portal"`
	SpansArrived int        `json:"spans_received"`
}

// benchTracing measures what OpenTelemetry tracing costs the pipeline and
// the portal, in one run: one `connector serve` replica with tracing off,
// with tracing on to an OTLP/HTTP receiver in this process, and with
// tracing on to an endpoint that refuses connections. Each mode times
// click → email sent for a series of clicks, then loads the invitation page.
func benchTracing(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "tracing", Title: "OpenTelemetry tracing: off, on, endpoint down"}
	clicks, every, workers, warm, dur := 200, 50*time.Millisecond, 16, 2*time.Second, 8*time.Second
	if o.quick {
		clicks, warm, dur = 50, time.Second, 3*time.Second
	}
	recv, err := telemetrytest.StartCounter()
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	defer recv.Close()
	down, err := closedPortURL()
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	modes := []struct{ mode, endpoint string }{
		{"off", ""}, {"on (receiver in this process)", recv.URL()}, {"on, endpoint down (connection refused)", down},
	}
	// Two rounds in mirrored order (off, on, down, down, on, off), so a
	// change in the machine's load during the run weighs on every mode alike.
	runs := make([]tracingRun, len(modes))
	clickLat := make([][]time.Duration, len(modes))
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}} {
		for _, i := range order {
			m := modes[i]
			before := recv.Count()
			r, lat, err := tracingOnce(ctx, h, m.mode, m.endpoint, clicks, every, workers, warm, dur)
			if err != nil {
				sec.Error = fmt.Sprintf("%s: %v", m.mode, err)
				return sec
			}
			if m.endpoint == recv.URL() {
				r.SpansArrived = recv.Count() - before
				sec.check(r.SpansArrived > 0, "tracing on: the receiver got no spans")
			}
			sec.check(r.Portal.Errors == 0, "%s: %d of %d portal requests failed (statuses %v)", m.mode, r.Portal.Errors, r.Portal.Requests, r.Portal.Statuses)
			clickLat[i] = append(clickLat[i], lat...)
			runs[i] = mergeTracingRuns(runs[i], r)
		}
	}
	for i := range runs {
		runs[i].ClickToSent = summarize(clickLat[i])
	}
	off := runs[0]
	sec.Columns = []string{"tracing", "click → sent p50", "p95", "p50 vs off", "p95 vs off", "portal requests/s", "p99", "requests/s vs off", "p99 vs off", "spans received"}
	for _, r := range runs {
		spans := "–"
		if r.SpansArrived > 0 {
			spans = fmt.Sprint(r.SpansArrived)
		}
		sec.row(r.Mode, r.ClickToSent.P50, r.ClickToSent.P95,
			durRatio(r.ClickToSent.P50, off.ClickToSent.P50), durRatio(r.ClickToSent.P95, off.ClickToSent.P95),
			r.Portal.RPS, r.Portal.Latency.P99, fmt.Sprintf("%.2f", r.Portal.RPS/off.Portal.RPS),
			durRatio(r.Portal.Latency.P99, off.Portal.Latency.P99), spans)
	}
	sec.note("Each mode runs twice, in mirrored order (off, on, down, down, on, off), each time on a fresh `connector serve` replica (4 workers), in the same run on this %d-core machine; the Dataverse emulator, the load generator and the OTLP/HTTP receiver share this process. Clicks: %d Web API updates by a CRM user per run, %d per second (open loop), latencies of both runs pooled; sent = the email's SentAt in the emulator's outbox. Portal: GET /invitation?code=… with %d concurrent clients for %s after a %s warm-up; requests/s and p99 are the mean of the two runs.", h.cores(), clicks, int(time.Second/every), workers, dur, warm)
	sec.note("With tracing on, each invitation is a trace of about a dozen spans (webhook, enqueue, worker, each Dataverse request, the follow-up) and each portal request one span with its Dataverse request; spans leave through the bounded batch queue (default 5 s schedule, 2048 spans). Endpoint down: the exporter's connections are refused, the spans are dropped with a warning at most once a minute, and requests are not held up.")
	sec.Data = runs
	return sec
}

// mergeTracingRuns adds run b to the totals of a: clicks, portal requests
// and errors summed, requests per second and p50/p99 averaged.
func mergeTracingRuns(a, b tracingRun) tracingRun {
	if a.Mode == "" {
		return b
	}
	a.Clicks += b.Clicks
	a.SpansArrived += b.SpansArrived
	p := &a.Portal
	p.Requests += b.Portal.Requests
	p.Errors += b.Portal.Errors
	p.Bytes += b.Portal.Bytes
	p.RPS = (p.RPS + b.Portal.RPS) / 2
	p.Latency.N += b.Portal.Latency.N
	p.Latency.P50 = (p.Latency.P50 + b.Portal.Latency.P50) / 2
	p.Latency.P95 = (p.Latency.P95 + b.Portal.Latency.P95) / 2
	p.Latency.P99 = (p.Latency.P99 + b.Portal.Latency.P99) / 2
	p.Latency.Max = max(p.Latency.Max, b.Portal.Latency.Max)
	for k, v := range b.Portal.Statuses {
		if p.Statuses == nil {
			p.Statuses = map[int]int{}
		}
		p.Statuses[k] += v
	}
	return a
}

func tracingOnce(ctx context.Context, h *harness, mode, endpoint string, clicks int, every time.Duration, workers int, warm, dur time.Duration) (tracingRun, []time.Duration, error) {
	res := tracingRun{Mode: mode, Clicks: clicks}
	name := "tracing-off"
	switch {
	case strings.Contains(mode, "down"):
		name = "tracing-down"
	case endpoint != "":
		name = "tracing-on"
	}
	st, err := h.stage(name)
	if err != nil {
		return res, nil, err
	}
	defer st.close()
	cfg := connectorConfig{CodeLookups: 100_000_000}
	if endpoint != "" {
		cfg.TopLevel = fmt.Sprintf("telemetry:\n  traces:\n    enabled: true\n    endpoint: %q\n", endpoint)
	}
	c, err := st.startCluster(ctx, clusterOptions{Emulator: emulator.Options{}, Config: cfg})
	if err != nil {
		return res, nil, err
	}
	cs, err := c.org.insertContacts("trace", clicks, nil)
	if err != nil {
		return res, nil, err
	}
	st.logf("%d clicks at %d/s", clicks, int(time.Second/every))
	clicked, err := c.org.clickAll(ctx, cs, 8, every)
	if err != nil {
		return res, nil, err
	}
	if _, err := c.org.waitSent(ctx, cs, 2*time.Minute, nil); err != nil {
		return res, nil, err
	}
	sent := c.org.sentTo()
	var lat []time.Duration
	for _, ct := range cs {
		if s := sent[strings.ToLower(ct.Email)]; len(s) > 0 {
			lat = append(lat, s[0].Sub(clicked[ct.ID]))
		}
	}
	res.ClickToSent = summarize(lat)
	codes := invitationCodes(c.org.Outbox())
	invURL := c.replicas[0].URL + "/invitation?code=" + url.QueryEscape(codes[strings.ToLower(cs[0].Email)])
	st.logf("portal: %d clients for %s", workers, dur)
	res.Portal = loadGen(ctx, workers, warm, dur, http.StatusOK, func() (*http.Request, error) {
		return http.NewRequest(http.MethodGet, invURL, nil)
	})
	return res, lat, nil
}

// closedPortURL is an http URL on loopback where nothing listens.
func closedPortURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", err
	}
	return "http://" + addr, nil
}

// durRatio is a/b as "1.03×".
func durRatio(a, b time.Duration) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}
