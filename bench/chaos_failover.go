package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/redisconn"
)

// failoverMaster is the name the sentinels monitor.
const failoverMaster = "connector"

type failoverResult struct {
	outcome
	Replicas     int         `json:"replicas"`
	DataReplicas int         `json:"redis_replicas"`
	Clicks       int         `json:"clicks"`
	WebhookPOSTs int64       `json:"webhook_posts"`
	Answers      map[int]int `json:"webhook_answers"`
	// Answers503 are the webhook deliveries answered 503 from the SIGKILL
	// until the end of the run (before it there were AnswersBefore503).
	AnswersBefore503 int `json:"webhook_503_before_kill"`
	Answers503       int `json:"webhook_503_after_kill"`
	// PromotedAfter is from the SIGKILL until the sentinels name the
	// replica primary; WritableAfter until an enqueue acknowledged by a
	// replica (WAIT 1) succeeds again: the killed node must be back as the
	// new primary's replica first (min-replicas-to-write 1).
	PromotedAfter float64 `json:"promoted_after_s"`
	WritableAfter float64 `json:"writable_after_s"`
	// FailedProbes are the probe writes (one every 100 ms) that failed
	// meanwhile.
	FailedProbes int      `json:"failed_probes"`
	DeadLetters  int64    `json:"dead_letters"`
	QueueLeft    int64    `json:"queue_left"`
	Events       []string `json:"events"`
	Elapsed      string   `json:"elapsed"`
	StartExits   int      `json:"replica_exits_at_startup"`
	// Counters sums the /metrics series of the replicas at the end.
	Counters map[string]float64 `json:"replica_counters"`
}

// chaosFailover: a Redis primary and its replica, both with
// min-replicas-to-write 1, watched by three redis-sentinel processes;
// several `connector serve` replicas configured with redis.sentinel and
// redis.min_acked_replicas 1; every webhook delivered twice. The primary is
// SIGKILLed while the clicks' webhooks arrive and restarted a few seconds
// later, as a supervisor would. Every contact must end with exactly one
// invitation and one email, nothing Requested.
func chaosFailover(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "failover", Title: "Redis Sentinel failover: SIGKILL of the primary during the clicks"}
	n := 1000
	if o.quick {
		n = 100
	}
	if o.contacts > 0 {
		n = o.contacts
	}
	res, err := runFailoverChaos(ctx, h, n, o.quick, 1)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	// The same with two Redis replicas: one is left to acknowledge writes
	// as soon as the other is promoted.
	var two *failoverResult
	if !o.quick {
		k := max(n/5, 100)
		var err2 error
		if two, err2 = runFailoverChaos(ctx, h, k, o.quick, 2); err2 != nil && sec.Error == "" {
			sec.Error = "with two Redis replicas: " + err2.Error()
		}
	}
	sec.Columns = []string{"check", "expected", "got"}
	res.report(sec, n, res.DeadLetters, res.QueueLeft)
	sec.row("s from SIGKILL to a promoted replica", "", res.PromotedAfter)
	sec.row("s from SIGKILL to an acknowledged write", "", res.WritableAfter)
	sec.row("webhooks answered 503 after the SIGKILL", "", res.Answers503)
	sec.check(res.AnswersBefore503 == 0, "%d webhooks answered 503 before the SIGKILL", res.AnswersBefore503)
	sec.note("%d replicas of `connector serve` behind the loopback balancer with `redis.sentinel` (three sentinels, quorum 2, down-after-milliseconds 1000, failover-timeout 4000) and `redis.min_acked_replicas: 1` (`ack_timeout` 500ms); a Redis primary and one replica, both `appendonly yes`, `appendfsync always`, `min-replicas-to-write 1`; intake.lease 10s, poll every 5s. Emulator: `Webhooks.Duplicate = 1` (every delivery sent twice); it does not retry a webhook answered 503 (Dataverse does), so the poller alone brings those contacts back.", res.Replicas)
	sec.note("Clicks: %d. Webhook POSTs at the balancer: %d, answers %v. Probe writes (WAIT 1, one per 100 ms) failed %d times during the outage.", res.Clicks, res.WebhookPOSTs, res.Answers, res.FailedProbes)
	k := res.Counters
	sec.note("Replica counters (`/metrics` at the end): webhook deliveries accepted %.0f, duplicate %.0f, unavailable %.0f; enqueued from webhooks %.0f (+%.0f dropped as duplicates), from the poller %.0f (+%.0f); worker outcomes sent %.0f, skipped %.0f (contact no longer Requested: a duplicate), retried %.0f, failed %.0f.",
		k[`connector_webhook_deliveries_total{outcome="accepted"}`], k[`connector_webhook_deliveries_total{outcome="duplicate"}`],
		k[`connector_webhook_deliveries_total{outcome="unavailable"}`],
		k[`connector_queue_enqueued_total{duplicate="false",source="webhook"}`], k[`connector_queue_enqueued_total{duplicate="true",source="webhook"}`],
		k[`connector_queue_enqueued_total{duplicate="false",source="poll"}`], k[`connector_queue_enqueued_total{duplicate="true",source="poll"}`],
		k[`connector_queue_processed_seconds_count{outcome="sent"}`], k[`connector_queue_processed_seconds_count{outcome="skipped"}`],
		k[`connector_queue_processed_seconds_count{outcome="retry"}`], k[`connector_queue_processed_seconds_count{outcome="failed"}`])
	sec.note("Timeline: %s. All sent after %s.", strings.Join(res.Events, "; "), res.Elapsed)
	if res.StartExits > 0 {
		sec.note("%d replica start(s) exited at once and were started again, as a supervisor would.", res.StartExits)
	}
	data := map[string]*failoverResult{"one_redis_replica": res}
	if two != nil {
		data["two_redis_replicas"] = two
		m := two.Contacts
		sec.note("With two Redis replicas (%d contacts, the rest alike): promotion after %.1f s, acknowledged writes again after %.1f s (the other replica acknowledges them at once), %d webhooks answered 503; %d invitations (max %d per contact), %d emails (max %d per contact), %d contacts Sent or Delivered, %d other.",
			m, two.PromotedAfter, two.WritableAfter, two.Answers503, two.Invitations, two.MaxPerContact, two.Emails, two.MaxEmailsPerOne, two.StatusSent+two.StatusDelivered, two.StatusOther)
		sec.check(two.Invitations == m && two.MaxPerContact <= 1 && two.Emails == m && two.MaxEmailsPerOne <= 1,
			"two Redis replicas: want %d invitations and emails, one per contact; got %d (max %d) and %d (max %d)", m, two.Invitations, two.MaxPerContact, two.Emails, two.MaxEmailsPerOne)
		sec.check(two.StatusSent+two.StatusDelivered == m && two.DeadLetters == 0 && two.QueueLeft == 0,
			"two Redis replicas: %d of %d Sent or Delivered, %d dead letters, %d left", two.StatusSent+two.StatusDelivered, m, two.DeadLetters, two.QueueLeft)
	}
	sec.Data = data
	return sec
}

// sentinelGroup is a primary, one replica and three sentinels on loopback.
type sentinelGroup struct {
	nodes     []*redisServer // nodes[0] starts as the primary
	sentinels []*sentinelProc
	addrs     []string
}

func startSentinelGroup(dir string, replicas int) (*sentinelGroup, error) {
	g := &sentinelGroup{}
	node := func(name string, extra ...string) (*redisServer, error) {
		args := append([]string{"--min-replicas-to-write", "1", "--min-replicas-max-lag", "10",
			// The default 5 s delay before a diskless full sync would slow
			// the old primary's return as a replica.
			"--repl-diskless-sync-delay", "0"}, extra...)
		r, err := startRedisArgs(filepath.Join(dir, name), true, args...)
		if err != nil {
			return nil, err
		}
		g.nodes = append(g.nodes, r)
		return r, nil
	}
	primary, err := node("node-1")
	if err != nil {
		return g, err
	}
	for i := range replicas {
		if _, err := node(fmt.Sprintf("node-%d", i+2), "--replicaof", "127.0.0.1", strconv.Itoa(primary.port)); err != nil {
			return g, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pollUntil(ctx, func() error { return infoHas(ctx, primary.Addr, fmt.Sprintf("connected_slaves:%d", replicas)) }); err != nil {
		return g, fmt.Errorf("replica not in sync: %w", err)
	}
	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		return g, fmt.Errorf("redis-sentinel (scripts/install-test-deps installs it): %w", err)
	}
	for i := range 3 {
		s, err := startSentinel(bin, filepath.Join(dir, fmt.Sprintf("sentinel-%d", i+1)), primary.port)
		if err != nil {
			return g, err
		}
		g.sentinels = append(g.sentinels, s)
		g.addrs = append(g.addrs, s.Addr)
	}
	err = pollUntil(ctx, func() error {
		for _, a := range g.addrs {
			c := redis.NewSentinelClient(&redis.Options{Addr: a, MaxRetries: -1})
			m, err := c.Master(ctx, failoverMaster).Result()
			_ = c.Close()
			if err != nil {
				return err
			}
			if m["num-slaves"] != strconv.Itoa(replicas) || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("sentinel %s knows %s replicas and %s other sentinels", a, m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return nil
	})
	if err != nil {
		return g, fmt.Errorf("sentinels: %w", err)
	}
	return g, nil
}

func (g *sentinelGroup) close() {
	for _, s := range g.sentinels {
		s.kill()
	}
	for _, n := range g.nodes {
		n.kill()
	}
}

// primary is the address the sentinels name (the first that answers).
func (g *sentinelGroup) primary(ctx context.Context) (string, error) {
	var last error
	for _, a := range g.addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: a, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
		hp, err := c.GetMasterAddrByName(ctx, failoverMaster).Result()
		_ = c.Close()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel names a primary: %v", last)
}

func (g *sentinelGroup) node(addr string) *redisServer {
	for _, n := range g.nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// client is a failover client as the replicas build it.
func (g *sentinelGroup) client() (redis.UniversalClient, error) {
	return redisconn.New(redisconn.Options{
		URL:      "redis://" + failoverMaster + "/0",
		Sentinel: redisconn.Sentinel{MasterName: failoverMaster, Addrs: g.addrs},
	})
}

// sentinelProc is one redis-sentinel process.
type sentinelProc struct {
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

func startSentinel(bin, dir string, primaryPort int) (*sentinelProc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var last error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\nlogfile %s\n"+
			"sentinel resolve-hostnames yes\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 4000\n"+
			"sentinel parallel-syncs %s 1\n",
			port, dir, filepath.Join(dir, "sentinel.log"), failoverMaster, primaryPort, failoverMaster, failoverMaster, failoverMaster)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, conf)
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("exec %s: %w", bin, err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if last = waitRedis(addr, done); last == nil {
			return &sentinelProc{Addr: addr, cmd: cmd, done: done}, nil
		}
		_ = cmd.Process.Kill()
		<-done
	}
	return nil, fmt.Errorf("start redis-sentinel: %w", last)
}

func (s *sentinelProc) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// infoHas checks that INFO replication at addr has line.
func infoHas(ctx context.Context, addr, line string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	for _, l := range strings.Split(info, "\n") {
		if strings.TrimSpace(l) == line {
			return nil
		}
	}
	return fmt.Errorf("%s: INFO replication lacks %q", addr, line)
}

// pollUntil calls try every 50 ms until it succeeds or ctx ends.
func pollUntil(ctx context.Context, try func() error) error {
	for {
		err := try()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startSentinelReplica is startReplica with the redis section replaced by
// block (the generated config has a plain redis.url).
func (s *stage) startSentinelReplica(name string, c connectorConfig, block string) (*replica, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	r := &replica{
		Name: name, Addr: addr, URL: "http://" + addr,
		cfgPath: filepath.Join(s.dir, name+".yaml"), logPath: filepath.Join(s.dir, name+".log"),
		bin: s.h.bin, env: connectorEnv(c.Org),
	}
	y := c.yaml(addr)
	plain := fmt.Sprintf("redis:\n  url: %q\n", c.RedisURL)
	if !strings.Contains(y, plain) {
		return nil, errors.New("generated config has no plain redis section to replace")
	}
	if err := os.WriteFile(r.cfgPath, []byte(strings.Replace(y, plain, block, 1)), 0o600); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	if err := r.start(s.h.ctx); err != nil {
		return nil, err
	}
	s.onClose(r.stop)
	return r, nil
}

func runFailoverChaos(ctx context.Context, h *harness, n int, quick bool, dataReplicas int) (*failoverResult, error) {
	st, err := h.stage(fmt.Sprintf("chaos-failover-%d", dataReplicas))
	if err != nil {
		return nil, err
	}
	defer st.close()
	g, err := startSentinelGroup(filepath.Join(st.dir, "redis"), dataReplicas)
	st.onClose(g.close)
	if err != nil {
		return nil, err
	}
	org, err := startOrg(emulator.Options{Webhooks: emulator.WebhookOptions{Duplicate: 1}})
	if err != nil {
		return nil, fmt.Errorf("emulator: %w", err)
	}
	st.onClose(org.close)
	lb, err := startBalancer()
	if err != nil {
		return nil, err
	}
	st.onClose(lb.close)
	cfg := connectorConfig{Org: org, PublicURL: lb.URL, RedisURL: "redis://" + failoverMaster + "/0",
		PollSchedule: "@every 5s", Lease: 10 * time.Second}
	block := fmt.Sprintf("redis:\n  url: %q\n  sentinel:\n    master_name: %q\n    addrs: [%s]\n  min_acked_replicas: 1\n  ack_timeout: 500ms\n",
		cfg.RedisURL, failoverMaster, strings.Join(g.addrs, ", "))
	var replicas []*replica
	for i := range 3 {
		r, err := st.startSentinelReplica(fmt.Sprintf("replica-%d", i+1), cfg, block)
		if err != nil {
			return nil, err
		}
		replicas = append(replicas, r)
		lb.add(r.Addr)
	}
	if err := st.registerWebhook(ctx, replicas[0]); err != nil {
		return nil, err
	}
	rdb, err := g.client()
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	cs, err := org.insertContacts("failover", n, nil)
	if err != nil {
		return nil, err
	}
	res := &failoverResult{Replicas: len(replicas), DataReplicas: dataReplicas, Clicks: n}
	start := time.Now()
	var evMu sync.Mutex
	event := func(format string, args ...any) {
		msg := fmt.Sprintf("%.1fs ", time.Since(start).Seconds()) + fmt.Sprintf(format, args...)
		evMu.Lock()
		res.Events = append(res.Events, msg)
		evMu.Unlock()
		st.logf("%s", msg)
	}

	chaosCtx, stopChaos := context.WithCancel(ctx)
	defer stopChaos()
	var wg sync.WaitGroup
	var chaosErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		chaosErr = killPrimary(chaosCtx, g, rdb, org, n, event, res, lb)
	}()
	clicked, err := org.clickAll(ctx, cs, 8, 0)
	if err != nil {
		return nil, err
	}
	event("all %d clicks done", len(clicked))
	timeout := 8 * time.Minute
	if quick {
		timeout = 2 * time.Minute
	}
	_, werr := org.waitSent(ctx, cs, timeout-time.Since(start), func(k int) { st.logf("%d/%d sent", k, n) })
	wg.Wait()
	if werr == nil {
		event("all %d sent", n)
	}
	res.Elapsed = time.Since(start).Round(100 * time.Millisecond).String()
	left, dead, derr := drainFailover(ctx, rdb, 60*time.Second)
	res.QueueLeft, res.DeadLetters = left, dead
	res.outcome = org.outcome(cs)
	res.WebhookPOSTs, res.Answers = lb.hooks.Load(), lb.hookStatuses()
	res.Answers503 = res.Answers[503] - res.AnswersBefore503
	for _, r := range replicas {
		res.StartExits += int(r.startExits.Load())
	}
	res.Counters = scrapeCounters(replicas, "connector_webhook_deliveries_total", "connector_queue_enqueued_total", "connector_queue_processed_seconds_count")
	if chaosErr != nil {
		return res, chaosErr
	}
	if derr != nil {
		return res, derr
	}
	if werr != nil {
		for _, r := range replicas {
			st.logf("%s log tail:\n%s", r.Name, r.logTail(15))
		}
	}
	return res, nil
}

// killPrimary SIGKILLs the primary once 40% of the clicks are in, restarts
// it on its files once the sentinels have promoted the replica (it comes
// back as the new primary's replica, which min-replicas-to-write needs),
// and measures how long acknowledged writes were impossible.
func killPrimary(ctx context.Context, g *sentinelGroup, rdb redis.UniversalClient, org *org, n int, event func(string, ...any), res *failoverResult, lb *balancer) error {
	for org.clicks.Load() < int64(n*4/10) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	old, err := g.primary(ctx)
	if err != nil {
		return err
	}
	victim := g.node(old)
	if victim == nil {
		return fmt.Errorf("sentinels name %s, none of the data nodes", old)
	}
	res.AnswersBefore503 = lb.hookStatuses()[503]
	killed := time.Now()
	victim.kill()
	event("SIGKILL primary %s", old)

	// Probe: an acknowledged write every 100 ms until one succeeds.
	type probe struct {
		after  time.Duration
		failed int
		err    error
	}
	probed := make(chan probe, 1)
	go func() {
		var p probe
		for i := 0; ; i++ {
			tctx, cancel := context.WithTimeout(ctx, 800*time.Millisecond)
			got, err := redisconn.WriteAcked(tctx, rdb, 1, 500*time.Millisecond, func(pl redis.Pipeliner) error {
				pl.Set(tctx, "bench:failover:probe", i, 0)
				return nil
			})
			cancel()
			if err == nil && got >= 1 {
				p.after = time.Since(killed)
				probed <- p
				return
			}
			p.failed++
			if time.Since(killed) > 2*time.Minute {
				p.err = fmt.Errorf("no acknowledged write within 2 minutes of the SIGKILL (last: %d replicas, %v)", got, err)
				probed <- p
				return
			}
			select {
			case <-ctx.Done():
				p.err = ctx.Err()
				probed <- p
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = pollUntil(pctx, func() error {
		a, err := g.primary(pctx)
		if err != nil {
			return err
		}
		if a == old {
			return errors.New("not promoted yet")
		}
		return infoHas(pctx, a, "role:master")
	})
	if err != nil {
		<-probed
		return fmt.Errorf("no promotion: %w", err)
	}
	res.PromotedAfter = round1(time.Since(killed).Seconds())
	event("replica promoted")
	if err := victim.restart(); err != nil {
		<-probed
		return err
	}
	event("old primary restarted (AOF replayed)")
	p := <-probed
	res.FailedProbes = p.failed
	if p.err != nil {
		return p.err
	}
	res.WritableAfter = round1(p.after.Seconds())
	event("acknowledged writes again")
	return nil
}

func round1(v float64) float64 { return float64(int(v*10+0.5)) / 10 }

// drainFailover is drainQueue through the failover client.
func drainFailover(ctx context.Context, rdb redis.UniversalClient, timeout time.Duration) (left, dead int64, err error) {
	deadline := time.Now().Add(timeout)
	for {
		pipe := rdb.Pipeline()
		s := pipe.XLen(ctx, "pinv:intake:stream")
		r := pipe.ZCard(ctx, "pinv:intake:retry")
		d := pipe.XLen(ctx, "pinv:intake:dead")
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			if time.Now().After(deadline) {
				return 0, 0, fmt.Errorf("inspect queue: %w", err)
			}
		} else {
			left, dead = s.Val()+r.Val(), d.Val()
			if left == 0 || time.Now().After(deadline) {
				return left, dead, nil
			}
		}
		select {
		case <-ctx.Done():
			return left, dead, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
