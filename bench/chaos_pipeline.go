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
	// Counters sums the /metrics series of the replicas alive at the end.
	Counters map[string]float64 `json:"replica_counters"`
	// OrphanedLocks are the per-contact invite locks the killed replica
	// held; OrphanDelays how long after the kill those contacts were sent.
	OrphanedLocks []string  `json:"orphaned_invite_locks"`
	OrphanDelays  []float64 `json:"orphaned_sent_after_kill_s"`

	mu         sync.Mutex
	killedAt   time.Time
	orphanDone chan struct{} // closed when OrphanedLocks is known
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
	sec.row("invitations (adx_invitation rows)", n, res.Invitations)
	sec.row("most invitations for one contact", 1, res.MaxPerContact)
	sec.row("emails sent", n, res.Emails)
	sec.row("most emails to one contact", 1, res.MaxEmailsPerOne)
	sec.row("contacts with status Sent", n, res.StatusSent)
	sec.row("contacts Failed / other", "0 / 0", fmt.Sprintf("%d / %d", res.StatusFailed, res.StatusOther))
	sec.row("dead-letter stream", 0, res.DeadLetters)
	sec.row("left in the queue at the end", 0, res.QueueLeft)
	sec.check(res.Invitations == n && res.MaxPerContact <= 1, "invitations: want %d (one per contact), got %d (max %d per contact)", n, res.Invitations, res.MaxPerContact)
	sec.check(res.Emails == n && res.MaxEmailsPerOne <= 1, "emails: want %d (one per contact), got %d (max %d per contact)", n, res.Emails, res.MaxEmailsPerOne)
	sec.check(res.StatusSent == n, "contacts Sent: want %d, got %d (%d Failed, %d other)", n, res.StatusSent, res.StatusFailed, res.StatusOther)
	sec.check(res.DeadLetters == 0, "dead letters: %d", res.DeadLetters)
	sec.check(res.QueueLeft == 0, "queue not drained: %d", res.QueueLeft)
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
	if len(res.OrphanedLocks) > 0 {
		sec.note("The killed replica died holding %d per-contact invite locks; those contacts were sent %s s after the kill: a reclaimed request waits for the lock's fixed two-minute TTL (invite.Config.LockTTL, not tied to intake.lease).", len(res.OrphanedLocks), floats(res.OrphanDelays))
	} else if !res.killedAt.IsZero() {
		sec.note("The killed replica held no per-contact invite lock when it died.")
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
	if quick {
		// Short pass: the replica dies before the clicks (webhooks fail over
		// to the others) and comes back halfway; Redis restarts at a third.
		// A replica killed mid-invitation would hold its per-contact invite
		// lock for the lock's two-minute TTL, too long for CI.
		victim.kill()
		event("SIGKILL %s", victim.Name)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		chaosErr = chaosSchedule(chaosCtx, c, victim, n, quick, sentCount, event, res)
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
	res.mu.Lock()
	done := res.orphanDone
	res.mu.Unlock()
	if done != nil {
		<-done
	}
	res.mu.Lock()
	if !res.killedAt.IsZero() {
		sent := c.org.sentTo()
		for _, k := range res.OrphanedLocks {
			id := strings.Split(strings.TrimPrefix(k, "pinv:lock:invite:"), ":")[0]
			for _, ct := range cs {
				if ct.ID == id {
					if at := sent[strings.ToLower(ct.Email)]; len(at) > 0 {
						res.OrphanDelays = append(res.OrphanDelays, math.Round(at[0].Sub(res.killedAt).Seconds()*10)/10)
					}
				}
			}
		}
	}
	res.mu.Unlock()
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
func chaosSchedule(ctx context.Context, c *cluster, victim *replica, n int, quick bool, sent func() int, event func(string, ...any), res *pipelineResult) error {
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
	if quick {
		if !waitFor(sentAtLeast(n / 3)) {
			return nil
		}
		if err := restartRedis(c, event); err != nil {
			return err
		}
		if !waitFor(sentAtLeast(n / 2)) {
			return nil
		}
		if err := victim.start(ctx); err != nil {
			return fmt.Errorf("restart %s: %w", victim.Name, err)
		}
		event("%s restarted", victim.Name)
		return nil
	}
	if !waitFor(sentAtLeast(n * 3 / 10)) {
		return nil
	}
	victim.kill()
	event("SIGKILL %s", victim.Name)
	res.mu.Lock()
	res.killedAt, res.orphanDone = time.Now(), make(chan struct{})
	res.mu.Unlock()
	held := inviteLocks(ctx, c.redis)
	go func() {
		defer close(res.orphanDone)
		// A live Invite holds its lock for well under 30 s; one still held
		// by the same token then was the killed replica's.
		time.Sleep(30 * time.Second)
		now := inviteLocks(ctx, c.redis)
		var orphaned []string
		for k, v := range held {
			if now[k] == v {
				orphaned = append(orphaned, k)
			}
		}
		res.mu.Lock()
		res.OrphanedLocks = orphaned
		res.mu.Unlock()
	}()
	time.Sleep(3 * time.Second)
	if err := victim.start(ctx); err != nil {
		return fmt.Errorf("restart %s: %w", victim.Name, err)
	}
	event("%s restarted", victim.Name)
	if !waitFor(func() bool { return c.org.clicks.Load() >= int64(n*85/100) || sent() >= n/2 }) {
		return nil
	}
	return restartRedis(c, event)
}

func restartRedis(c *cluster, event func(string, ...any)) error {
	c.redis.kill()
	event("SIGKILL redis-server")
	time.Sleep(2 * time.Second)
	if err := c.redis.restart(); err != nil {
		return err
	}
	event("redis-server restarted (AOF replayed)")
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
