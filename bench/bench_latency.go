package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

type latencyResult struct {
	EmulatorLatency string `json:"emulator_latency"`
	Samples         int    `json:"samples"`
	HookToSent      dist   `json:"webhook_to_sent"`
	ClickToSent     dist   `json:"click_to_sent"`
}

// benchLatency measures, through one `connector serve` replica, the time from
// the webhook POST reaching the connector (and from the click before it) to
// the email being sent, with the emulator answering at once and with 50 ms
// added to every request.
func benchLatency(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "latency", Title: "3. Latency from click to email sent"}
	samples, every := 200, 100*time.Millisecond
	if o.quick {
		samples = 50
	}
	var results []latencyResult
	for _, lat := range []time.Duration{0, 50 * time.Millisecond} {
		r, err := latencyRun(ctx, h, lat, samples, every)
		if err != nil {
			sec.Error = err.Error()
			return sec
		}
		results = append(results, r)
	}
	sec.Columns = []string{"emulator latency per request", "samples", "webhook → sent p50", "p95", "p99", "click → sent p50", "p95", "p99"}
	for _, r := range results {
		sec.row(r.EmulatorLatency, r.Samples, r.HookToSent.P50, r.HookToSent.P95, r.HookToSent.P99,
			r.ClickToSent.P50, r.ClickToSent.P95, r.ClickToSent.P99)
	}
	sec.note("One `connector serve` replica (4 workers) behind the loopback balancer; clicks are Web API updates of the contact's invite columns by a CRM user, %d per second (open loop), which fire the registered webhook. Webhook = when the POST reached the balancer; sent = the email's SentAt in the emulator's outbox (SendEmail inside the invitation's change set); click = when the update was sent.", int(time.Second/every))
	sec.note("The emulator posts webhooks as soon as the update commits; Dataverse's asynchronous service adds its own delay (typically seconds) before the webhook, which is not included.")
	sec.Data = results
	return sec
}

func latencyRun(ctx context.Context, h *harness, lat time.Duration, samples int, every time.Duration) (latencyResult, error) {
	res := latencyResult{EmulatorLatency: fmtDur(lat), Samples: samples}
	if lat == 0 {
		res.EmulatorLatency = "0 ms"
	}
	st, err := h.stage(fmt.Sprintf("latency-%dms", lat.Milliseconds()))
	if err != nil {
		return res, err
	}
	defer st.close()
	c, err := st.startCluster(ctx, clusterOptions{Emulator: emulator.Options{Latency: lat}})
	if err != nil {
		return res, err
	}
	cs, err := c.org.insertContacts("lat", samples, nil)
	if err != nil {
		return res, err
	}
	st.logf("%d clicks at %d/s, emulator latency %s", samples, int(time.Second/every), res.EmulatorLatency)
	clicked, err := c.org.clickAll(ctx, cs, 8, every)
	if err != nil {
		return res, err
	}
	if _, err := c.org.waitSent(ctx, cs, 2*time.Minute, nil); err != nil {
		return res, err
	}
	arrivals := c.lb.hookArrivals()
	sent := c.org.sentTo()
	var hook, click []time.Duration
	for _, ct := range cs {
		s := sent[strings.ToLower(ct.Email)]
		if len(s) == 0 {
			continue
		}
		if a, ok := arrivals[ct.ID]; ok {
			hook = append(hook, s[0].Sub(a))
		}
		click = append(click, s[0].Sub(clicked[ct.ID]))
	}
	res.HookToSent, res.ClickToSent = summarize(hook), summarize(click)
	if res.HookToSent.N != samples {
		return res, fmt.Errorf("webhook arrival seen for %d of %d contacts", res.HookToSent.N, samples)
	}
	return res, nil
}
