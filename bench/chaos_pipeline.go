package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

type pipelineResult struct {
	outcome
	Replicas       int         `json:"replicas"`
	FaultRate      float64     `json:"fault_rate"`
	Clicks         int         `json:"clicks"`
	WebhookPOSTs   int64       `json:"webhook_posts"`
	WebhookAnswers map[int]int `json:"webhook_answers"`
	Failovers      int64       `json:"balancer_failovers"`
	Refused        int64       `json:"balancer_503"`
	DeadLetters    int64       `json:"dead_letters"`
	QueueLeft      int64       `json:"queue_left"`
	Requests       int         `json:"emulator_requests"`
	Throttled      int         `json:"emulator_429"`
	Faults         int         `json:"emulator_faults"`
	Events         []string    `json:"events"`
	Elapsed        string      `json:"elapsed"`
	ByStatus       map[int]int `json:"emulator_by_status"`
	StartExits     int         `json:"replica_exits_at_startup"`
	// Counters sums the /metrics series of the replicas alive at the end.
	Counters map[string]float64 `json:"replica_counters"`
	// Orphans are the per-contact invite locks left behind by a crash.
	Orphans []*orphans `json:"orphaned_invite_locks"`

	mu      sync.Mutex
	watches sync.WaitGroup // orphan checks still running
}

// orphans are the per-contact invite locks held when an event happened
// that their holder did not release: they stayed until their TTL ran out
// (a live holder releases its lock, or refreshes it).
type orphans struct {
	Event    string    `json:"event"`
	Held     int       `json:"held_at_event"`
	Keys     []string  `json:"orphaned"`
	HeldFor  []float64 `json:"orphan_expired_after_s"` // from the event to expiry
	Delays   []float64 `json:"sent_after_event_s"`     // when their contacts were sent
	at       time.Time
	snapshot time.Duration
}

// watchOrphans snapshots the invite locks `after` an event and follows each
// until it is released, refreshed (a live holder) or expires (an orphan).
func (res *pipelineResult) watchOrphans(ctx context.Context, rs *redisServer, event string, after time.Duration) {
	o := &orphans{Event: event, at: time.Now(), snapshot: after}
	res.mu.Lock()
	res.Orphans = append(res.Orphans, o)
	res.mu.Unlock()
	res.watches.Add(1)
	go func() {
		defer res.watches.Done()
		time.Sleep(after)
		rdb := rs.client()
		defer rdb.Close()
		type state struct {
			token   string
			expires time.Time
			ttl     time.Duration
		}
		locks := map[string]*state{}
		for k, v := range inviteLocks(ctx, rs) {
			if ttl, err := rdb.PTTL(ctx, k).Result(); err == nil && ttl > 0 {
				locks[k] = &state{token: v, expires: time.Now().Add(ttl), ttl: ttl}
			}
		}
		res.mu.Lock()
		o.Held = len(locks)
		res.mu.Unlock()
		deadline := time.Now().Add(5 * time.Minute)
		for len(locks) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			for k, st := range locks {
				v, err := rdb.Get(ctx, k).Result()
				if err == nil && v == st.token {
					if ttl, err := rdb.PTTL(ctx, k).Result(); err == nil && ttl > st.ttl+200*time.Millisecond {
						delete(locks, k) // refreshed: its holder is alive
					} else if err == nil {
						st.ttl = ttl
					}
					continue
				}
				if time.Now().After(st.expires.Add(-300 * time.Millisecond)) {
					res.mu.Lock()
					o.Keys = append(o.Keys, k)
					o.HeldFor = append(o.HeldFor, math.Round(time.Since(o.at).Seconds()*10)/10)
					res.mu.Unlock()
				}
				delete(locks, k) // released (or expired)
			}
		}
	}()
}

// chaosPipeline: three replicas, every webhook delivered twice, 20% of the
// connector's Dataverse requests failing (429, 503, 500, reset), one replica
// SIGKILLed and restarted, Redis SIGKILLed and restarted. Every click must
// end as exactly one invitation and one email, the contact Sent, and
// nothing dead-lettered.
func chaosPipeline(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "pipeline", Title: "Exactly once under faults: replicas, duplicates, injected errors, crashes"}
	n := 1000
	if o.quick {
		n = 100
	}
	if o.contacts > 0 {
		n = o.contacts
	}
	res, err := runPipelineChaos(ctx, h, n, o.quick)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	sec.Columns = []string{"check", "expected", "got"}
	res.report(sec, n, res.DeadLetters, res.QueueLeft)
	sec.note("%d replicas of `connector serve` behind the loopback balancer, one redis-server with `appendonly yes`, `appendfsync always`; intake.lease 10s, poll every 5s. Emulator: `UniformFaults(%.2f)` on every Web API request (40%% 429 with Retry-After 1s, 30%% 503, 10%% 500, 20%% connection reset), `Webhooks.Duplicate = 1` (every delivery sent twice).", res.Replicas, res.FaultRate)
	sec.note("Clicks: %d. Webhook POSTs at the balancer: %d, answers %v; %d attempts found a replica gone and went to the next, %d answered 503 with none left.", res.Clicks, res.WebhookPOSTs, res.WebhookAnswers, res.Failovers, res.Refused)
	sec.note("Emulator: %d requests (the clicks included), %d × 429, %d injected faults; by status %v.", res.Requests, res.Throttled, res.Faults, res.ByStatus)
	k := res.Counters
	sec.note("Replica counters (`/metrics` of the three replicas at the end; the killed one's counts from before its crash are lost with it): webhook deliveries accepted %.0f, duplicate %.0f, ignored %.0f, unavailable %.0f; enqueued from webhooks %.0f (+%.0f dropped as duplicates), from the poller %.0f (+%.0f); worker outcomes sent %.0f, skipped %.0f (contact no longer Requested: a duplicate), retried %.0f, failed %.0f.",
		k[`connector_webhook_deliveries_total{outcome="accepted"}`], k[`connector_webhook_deliveries_total{outcome="duplicate"}`],
		k[`connector_webhook_deliveries_total{outcome="ignored"}`], k[`connector_webhook_deliveries_total{outcome="unavailable"}`],
		k[`connector_queue_enqueued_total{duplicate="false",source="webhook"}`], k[`connector_queue_enqueued_total{duplicate="true",source="webhook"}`],
		k[`connector_queue_enqueued_total{duplicate="false",source="poll"}`], k[`connector_queue_enqueued_total{duplicate="true",source="poll"}`],
		k[`connector_queue_processed_seconds_count{outcome="sent"}`], k[`connector_queue_processed_seconds_count{outcome="skipped"}`],
		k[`connector_queue_processed_seconds_count{outcome="retry"}`], k[`connector_queue_processed_seconds_count{outcome="failed"}`])
	sec.note("Timeline: %s. All sent after %s.", strings.Join(res.Events, "; "), res.Elapsed)
	if res.StartExits > 0 {
		sec.note("%d replica start(s) exited at once (the startup WhoAmI met an injected 500, which the client does not retry) and were started again, as a supervisor would.", res.StartExits)
	}
	for _, o := range res.Orphans {
		switch {
		case len(o.Keys) == 0:
			sec.note("%s: %d per-contact invite lock(s) held at the time, all released by their holders.", o.Event, o.Held)
		default:
			sec.note("%s: %d per-contact invite lock(s) held at the time, %d left behind by holders that could not release them; those expired %s s after it (the lock's TTL follows intake.lease) and their contacts were sent at %s s relative to it (negative: before it, by the holder that then lost its release).",
				o.Event, o.Held, len(o.Keys), floats(o.HeldFor), floats(o.Delays))
		}
	}
	sec.Data = res
	return sec
}

func runPipelineChaos(ctx context.Context, h *harness, n int, quick bool) (*pipelineResult, error) {
	const faultRate = 0.2
	st, err := h.stage("chaos-pipeline")
	if err != nil {
		return nil, err
	}
	defer st.close()
	c, err := st.startCluster(ctx, clusterOptions{
		Emulator: emulator.Options{
			Faults:         emulator.UniformFaults(faultRate, uint64(time.Now().UnixNano())),
			Webhooks:       emulator.WebhookOptions{Duplicate: 1},
			RequestLogSize: 1 << 16,
		},
		Replicas: 3, PersistRedis: true,
		Config: connectorConfig{PollSchedule: "@every 5s", Lease: 10 * time.Second},
	})
	if err != nil {
		return nil, err
	}
	cs, err := c.org.insertContacts("chaos", n, nil)
	if err != nil {
		return nil, err
	}
	res := &pipelineResult{Replicas: len(c.replicas), FaultRate: faultRate, Clicks: n}
	start := time.Now()
	var evMu sync.Mutex
	event := func(format string, args ...any) {
		msg := fmt.Sprintf("%.1fs ", time.Since(start).Seconds()) + fmt.Sprintf(format, args...)
		evMu.Lock()
		res.Events = append(res.Events, msg)
		evMu.Unlock()
		st.logf("%s", msg)
	}
	victim := c.replicas[1]
	sentCount := func() int {
		sent := c.org.sentTo()
		k := 0
		for _, ct := range cs {
			if len(sent[strings.ToLower(ct.Email)]) > 0 {
				k++
			}
		}
		return k
	}

	chaosCtx, stopChaos := context.WithCancel(ctx)
	defer stopChaos()
	var wg sync.WaitGroup
	var chaosErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		chaosErr = chaosSchedule(chaosCtx, c, victim, n, sentCount, event, res)
	}()

	clicked, err := c.org.clickAll(ctx, cs, 8, 0)
	if err != nil {
		return nil, err
	}
	event("all %d clicks done", len(clicked))
	timeout := 8 * time.Minute
	if quick {
		timeout = 2 * time.Minute
	}
	_, werr := c.org.waitSent(ctx, cs, timeout-time.Since(start), func(k int) { st.logf("%d/%d sent", k, n) })
	wg.Wait()
	if werr == nil {
		event("all %d sent", n)
	}
	res.Elapsed = time.Since(start).Round(100 * time.Millisecond).String()
	// Let duplicates still queued (poller, webhook copies) drain: they find
	// the contact Sent and are acknowledged without a write.
	left, dead, derr := drainQueue(ctx, c.redis, 60*time.Second)
	res.QueueLeft, res.DeadLetters = left, dead
	res.outcome = c.org.outcome(cs)
	stats := c.org.Stats()
	res.Requests, res.Throttled, res.Faults, res.ByStatus = stats.Total, stats.Throttled, stats.Faults, stats.ByStatus
	res.WebhookPOSTs, res.Failovers, res.Refused = c.lb.hooks.Load(), c.lb.failovers.Load(), c.lb.refused.Load()
	res.WebhookAnswers = c.lb.hookStatuses()
	res.watches.Wait()
	sent := c.org.sentTo()
	byID := map[string]contact{}
	for _, ct := range cs {
		byID[ct.ID] = ct
	}
	for _, o := range res.Orphans {
		for _, k := range o.Keys {
			id := strings.Split(strings.TrimPrefix(k, "pinv:lock:invite:"), ":")[0]
			if at := sent[strings.ToLower(byID[id].Email)]; len(at) > 0 {
				o.Delays = append(o.Delays, math.Round(at[0].Sub(o.at).Seconds()*10)/10)
			}
		}
	}
	for _, r := range c.replicas {
		res.StartExits += int(r.startExits.Load())
	}
	res.Counters = scrapeCounters(c.replicas, "connector_webhook_deliveries_total", "connector_queue_enqueued_total", "connector_queue_processed_seconds_count")
	if chaosErr != nil {
		return res, chaosErr
	}
	if derr != nil {
		return res, derr
	}
	if werr != nil {
		for _, r := range c.replicas {
			st.logf("%s log tail:\n%s", r.Name, r.logTail(15))
		}
	}
	return res, nil
}

// chaosSchedule kills and restarts a replica and Redis at points of the run:
// the replica once a third of the invitations are out, Redis while the
// last clicks' webhooks are still arriving.
func chaosSchedule(ctx context.Context, c *cluster, victim *replica, n int, sent func() int, event func(string, ...any), res *pipelineResult) error {
	waitFor := func(done func() bool) bool {
		for !done() {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(100 * time.Millisecond):
			}
		}
		return true
	}
	sentAtLeast := func(k int) func() bool { return func() bool { return sent() >= k } }
	if !waitFor(sentAtLeast(n * 3 / 10)) {
		return nil
	}
	victim.kill()
	event("SIGKILL %s", victim.Name)
	res.watchOrphans(ctx, c.redis, "SIGKILL "+victim.Name, 0)
	time.Sleep(3 * time.Second)
	if err := victim.start(ctx); err != nil {
		return fmt.Errorf("restart %s: %w", victim.Name, err)
	}
	event("%s restarted", victim.Name)
	if !waitFor(func() bool { return c.org.clicks.Load() >= int64(n*85/100) || sent() >= n/2 }) {
		return nil
	}
	return restartRedis(ctx, c, event, res, 2*time.Second)
}

// restartRedis kills Redis, leaves it down for `down`, restarts it on the
// same files and watches for invite locks whose release the outage made
// fail.
func restartRedis(ctx context.Context, c *cluster, event func(string, ...any), res *pipelineResult, down time.Duration) error {
	c.redis.kill()
	event("SIGKILL redis-server")
	time.Sleep(down)
	if err := c.redis.restart(); err != nil {
		return err
	}
	event("redis-server restarted (AOF replayed)")
	// Locks taken just before the outage and released during it are the
	// ones at risk; snapshot once the holders had a moment to retry.
	res.watchOrphans(ctx, c.redis, fmt.Sprintf("Redis down for %s", down), 500*time.Millisecond)
	return nil
}

// drainQueue waits until the intake stream and retry set are empty and
// returns what is left and the dead-letter count.
func drainQueue(ctx context.Context, rs *redisServer, timeout time.Duration) (left, dead int64, err error) {
	rdb := rs.client()
	defer rdb.Close()
	deadline := time.Now().Add(timeout)
	for {
		pipe := rdb.Pipeline()
		s := pipe.XLen(ctx, "pinv:intake:stream")
		r := pipe.ZCard(ctx, "pinv:intake:retry")
		d := pipe.XLen(ctx, "pinv:intake:dead")
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return 0, 0, fmt.Errorf("inspect queue: %w", err)
		}
		left, dead = s.Val()+r.Val(), d.Val()
		if left == 0 || time.Now().After(deadline) {
			return left, dead, nil
		}
		select {
		case <-ctx.Done():
			return left, dead, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// scrapeCounters sums the named series over the replicas' /metrics, keyed
// by the series as printed (name{labels}).
func scrapeCounters(rs []*replica, names ...string) map[string]float64 {
	out := map[string]float64{}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, r := range rs {
		resp, err := client.Get(r.URL + "/metrics")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			series, val, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(series, "{")
			if !slices.Contains(names, name) {
				continue
			}
			if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				out[series] += v
			}
		}
		resp.Body.Close()
	}
	return out
}

// inviteLocks returns the per-contact invite locks in Redis (key -> token).
func inviteLocks(ctx context.Context, rs *redisServer) map[string]string {
	rdb := rs.client()
	defer rdb.Close()
	out := map[string]string{}
	iter := rdb.Scan(ctx, 0, "pinv:lock:invite:*", 1000).Iterator()
	for iter.Next(ctx) {
		if v, err := rdb.Get(ctx, iter.Val()).Result(); err == nil {
			out[iter.Val()] = v
		}
	}
	return out
}
