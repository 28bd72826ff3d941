package main

import (
	"context"
	"time"
)

// Parts of each suite, in the order they run.
var (
	benchParts = []string{"requests", "throughput", "latency", "site", "polling", "delivered", "smtp", "pacing", "tracing"}
	chaosParts = []string{"pipeline", "race", "external", "delivery", "smtp", "bruteforce", "malformed", "fuzz", "lifecycle", "failover"}
)

type part struct {
	name string
	run  func(context.Context, *harness, options) *Section
}

func runBenchmarks(ctx context.Context, h *harness, o options, rep *Report) {
	runParts(ctx, h, o, rep, []part{
		{"requests", benchRequests},
		{"throughput", benchThroughput},
		{"latency", benchLatency},
		{"site", benchSite},
		{"polling", benchPolling},
		{"delivered", benchDelivered},
		{"smtp", benchSMTP},
		{"pacing", benchPacing},
		{"tracing", benchTracing},
	})
}

func runChaos(ctx context.Context, h *harness, o options, rep *Report) {
	runParts(ctx, h, o, rep, []part{
		{"pipeline", chaosPipeline},
		{"race", chaosRace},
		{"external", chaosExternal},
		{"delivery", chaosDelivery},
		{"smtp", chaosSMTP},
		{"bruteforce", chaosBruteForce},
		{"malformed", chaosMalformed},
		{"fuzz", chaosFuzz},
		{"lifecycle", chaosLifecycle},
		{"failover", chaosFailover},
	})
}

func runParts(ctx context.Context, h *harness, o options, rep *Report, parts []part) {
	for _, p := range parts {
		if !o.wanted(p.name) || ctx.Err() != nil {
			continue
		}
		h.logf("== %s", p.name)
		start := time.Now()
		s := p.run(ctx, h, o)
		s.Elapsed = time.Since(start).Round(100 * time.Millisecond).String()
		switch {
		case s.Error != "":
			h.logf("== %s: could not run: %s", p.name, s.Error)
		case len(s.Failures) > 0:
			h.logf("== %s: FAILED (%d checks) in %s", p.name, len(s.Failures), s.Elapsed)
		default:
			h.logf("== %s: done in %s", p.name, s.Elapsed)
		}
		rep.add(s)
	}
}
