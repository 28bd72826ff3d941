package redisconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/redistest"
)

// failoverBound caps how long a test waits for a failover. With
// down-after 1s and failover-timeout 4s a failover takes a few seconds; a
// split vote is retried after twice the failover timeout.
const failoverBound = 30 * time.Second

// writeUntilRecovered writes, from just after the primary was killed, until
// a write succeeds; it returns how long that took and how many writes failed
// meanwhile. Each try is bounded so a dead primary cannot hang the loop.
func writeUntilRecovered(ctx context.Context, c redis.UniversalClient, bound time.Duration) (time.Duration, int, error) {
	start := time.Now()
	failed := 0
	for i := 0; ; i++ {
		tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := c.Set(tctx, "during", i, 0).Err()
		cancel()
		if err == nil {
			return time.Since(start), failed, nil
		}
		failed++
		if time.Since(start) > bound {
			return 0, failed, fmt.Errorf("no write succeeded within %s of killing the primary; last error: %w", bound, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sentinelOptions points a client at g; the URL's host is not used.
func sentinelOptions(g *redistest.SentinelGroup, password, sentinelPassword string) Options {
	return Options{
		URL: fmt.Sprintf("redis://:%s@primary-from-sentinels/0", password),
		Sentinel: Sentinel{
			MasterName: g.MasterName,
			Addrs:      g.SentinelAddrs,
			Password:   sentinelPassword,
		},
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestSentinelFailover(t *testing.T) {
	g := redistest.StartSentinels(t, redistest.SentinelOptions{Password: "data-secret", SentinelPassword: "sentinel-secret"})
	c := open(t, sentinelOptions(g, "data-secret", "sentinel-secret"))
	ctx := context.Background()

	// The client writes to the primary the sentinels name.
	if err := c.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatalf("SET through sentinels: %v", err)
	}
	if got, err := g.Nodes[0].Client(t).Get(ctx, "before").Result(); err != nil || got != "1" {
		t.Fatalf("GET on the first primary = %q, %v; want the client's write", got, err)
	}
	acked, err := WriteAcked(ctx, c, 1, time.Second, func(p redis.Pipeliner) error {
		return p.Set(ctx, "acked", "kept", 0).Err()
	})
	if err != nil || acked != 1 {
		t.Fatalf("WriteAcked = %d, %v; want 1 replica", acked, err)
	}

	killed := g.KillPrimary(t)
	recovered, failed, err := writeUntilRecovered(ctx, c, failoverBound)
	if err != nil {
		t.Fatal(err)
	}
	np := g.WaitForNewPrimary(t, killed.Addr, failoverBound)
	promoted := g.Nodes[1]
	if np != promoted {
		t.Fatalf("new primary = %s; want the replica %s", np.Addr, promoted.Addr)
	}
	if failed == 0 {
		t.Fatal("the first write after SIGKILL of the primary succeeded; the failover was not exercised")
	}
	t.Logf("SIGKILL of the primary %s: client wrote again after %s (%d failed writes); promoted %s",
		killed.Addr, recovered.Round(time.Millisecond), failed, np.Addr)

	// Writes continue on the promoted replica, and the acknowledged write
	// survived.
	if got, err := c.Get(ctx, "acked").Result(); err != nil || got != "kept" {
		t.Fatalf("GET acked after failover = %q, %v; want kept", got, err)
	}
	for j := 0; j < 100; j++ {
		if err := c.Incr(ctx, "after").Err(); err != nil {
			t.Fatalf("INCR %d after failover: %v", j, err)
		}
	}
	if got, err := promoted.Client(t).Get(ctx, "after").Result(); err != nil || got != "100" {
		t.Fatalf("GET after on the promoted replica = %q, %v; want 100", got, err)
	}
}

func TestSentinelChecker(t *testing.T) {
	g := redistest.StartSentinels(t, redistest.SentinelOptions{SentinelPassword: "sentinel-secret"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dead := closedAddr(t)
	o := sentinelOptions(g, "", "sentinel-secret")
	o.Sentinel.Addrs = []string{g.SentinelAddrs[0], dead, g.SentinelAddrs[1], g.SentinelAddrs[2]}
	chk, err := NewSentinelChecker(o)
	if err != nil {
		t.Fatalf("NewSentinelChecker: %v", err)
	}
	t.Cleanup(func() { _ = chk.Close() })

	r := chk.Check(ctx)
	if got := r.Down(); !slices.Equal(got, []string{dead}) {
		t.Fatalf("Down = %v; want only %s (report %+v)", got, dead, r)
	}
	if !r.Ready() {
		t.Fatal("Ready = false with three sentinels answering")
	}
	for _, s := range r {
		if s.Err == nil && s.Primary != g.Nodes[0].Addr {
			t.Errorf("sentinel %s names primary %q; want %s", s.Addr, s.Primary, g.Nodes[0].Addr)
		}
	}
	msg := r.Err().Error()
	if !strings.Contains(msg, "redis.sentinel.addrs") || !strings.Contains(msg, "1 of 4") || !strings.Contains(msg, dead) {
		t.Errorf("report error %q does not name the key, the count and %s", msg, dead)
	}
	t.Logf("check: %v", r.Err())

	// The client finds the primary past a sentinel that does not answer.
	setGet(t, open(t, o))

	// A sentinel that stops answering is reported by name.
	g.Sentinels[1].Stop()
	r = chk.Check(ctx)
	if got := r.Down(); !slices.Equal(got, []string{dead, g.SentinelAddrs[1]}) {
		t.Fatalf("after stopping %s: Down = %v", g.SentinelAddrs[1], got)
	}
	if !r.Ready() {
		t.Fatal("Ready = false with two sentinels answering")
	}

	// None answering: not ready.
	g.Sentinels[0].Stop()
	g.Sentinels[2].Stop()
	r = chk.Check(ctx)
	if r.Ready() || len(r.Down()) != 4 {
		t.Fatalf("with no sentinel up: Ready = %v, Down = %v; want false and all four", r.Ready(), r.Down())
	}
	if !strings.Contains(r.Err().Error(), "4 of 4") {
		t.Errorf("report error %q does not say 4 of 4", r.Err())
	}
}

func TestSentinelCheckerRefusals(t *testing.T) {
	g := redistest.StartSentinels(t, redistest.SentinelOptions{SentinelPassword: "sentinel-secret"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"wrong master name", func(o *Options) { o.Sentinel.MasterName = "not-monitored" }, `does not monitor master "not-monitored"`},
		{"wrong sentinel password", func(o *Options) { o.Sentinel.Password = "wrong" }, "WRONGPASS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := sentinelOptions(g, "", "sentinel-secret")
			tc.edit(&o)
			chk, err := NewSentinelChecker(o)
			if err != nil {
				t.Fatalf("NewSentinelChecker: %v", err)
			}
			defer chk.Close()
			r := chk.Check(ctx)
			if r.Ready() || len(r.Down()) != 3 {
				t.Fatalf("Ready = %v, Down = %v; want none ready", r.Ready(), r.Down())
			}
			if !strings.Contains(r.Err().Error(), tc.want) {
				t.Errorf("report error %q does not mention %q", r.Err(), tc.want)
			}
		})
	}
	if _, err := NewSentinelChecker(Options{URL: "redis://x/0"}); err == nil {
		t.Error("NewSentinelChecker without a sentinel section succeeded")
	}
}

func TestWriteAcked(t *testing.T) {
	g := redistest.StartSentinels(t, redistest.SentinelOptions{Replicas: 2})
	c := open(t, sentinelOptions(g, "", ""))
	ctx := context.Background()
	set := func(key string) func(redis.Pipeliner) error {
		return func(p redis.Pipeliner) error { return p.Set(ctx, key, "v", 0).Err() }
	}

	if n, err := WriteAcked(ctx, c, 2, time.Second, set("a")); err != nil || n != 2 {
		t.Fatalf("WriteAcked(2) with two replicas = %d, %v; want 2", n, err)
	}
	// WAIT counts what it got when the timeout passes: asking for more
	// replicas than exist returns the real number.
	if n, err := WriteAcked(ctx, c, 3, 200*time.Millisecond, set("b")); err != nil || n != 2 {
		t.Fatalf("WriteAcked(3) with two replicas = %d, %v; want 2", n, err)
	}
	g.Nodes[2].Stop()
	if n, err := WriteAcked(ctx, c, 2, 300*time.Millisecond, set("c")); err != nil || n != 1 {
		t.Fatalf("WriteAcked(2) with one replica left = %d, %v; want 1", n, err)
	}

	// A write the server refuses fails the call.
	if err := c.Set(ctx, "str", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := WriteAcked(ctx, c, 1, time.Second, func(p redis.Pipeliner) error {
		return p.Incr(ctx, "str").Err()
	})
	if err == nil || !strings.Contains(err.Error(), "not an integer") {
		t.Errorf("WriteAcked with a failing INCR: err = %v; want the server's refusal", err)
	}
	// So does fn's own error.
	boom := errors.New("boom")
	if _, err := WriteAcked(ctx, c, 1, time.Second, func(redis.Pipeliner) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("WriteAcked with fn failing: err = %v; want boom", err)
	}
	for _, tc := range []struct {
		name     string
		replicas int
		timeout  time.Duration
	}{
		{"no replicas", 0, time.Second},
		{"zero timeout blocks forever", 1, 0},
		{"timeout beyond the read timeout", 1, 10 * time.Second},
	} {
		if _, err := WriteAcked(ctx, c, tc.replicas, tc.timeout, set("d")); err == nil {
			t.Errorf("%s: WriteAcked(%d, %s) succeeded", tc.name, tc.replicas, tc.timeout)
		}
	}
}

func TestSentinelWithMinReplicasToWrite(t *testing.T) {
	// With min-replicas-to-write 1 a primary that lost its replicas refuses
	// writes: what an enqueue then sees.
	g := redistest.StartSentinels(t, redistest.SentinelOptions{MinReplicasToWrite: 1})
	c := open(t, sentinelOptions(g, "", ""))
	ctx := context.Background()
	if n, err := WriteAcked(ctx, c, 1, time.Second, func(p redis.Pipeliner) error {
		return p.Set(ctx, "k", "v", 0).Err()
	}); err != nil || n != 1 {
		t.Fatalf("WriteAcked = %d, %v; want 1", n, err)
	}
	g.Nodes[1].Stop()
	// The primary notices at once that the killed replica's connection
	// closed (a replica that only goes silent counts after
	// min-replicas-max-lag, 10 s by default).
	deadline := time.Now().Add(failoverBound)
	for {
		err := c.Set(ctx, "k", "v2", 0).Err()
		if err != nil {
			if !strings.Contains(err.Error(), "NOREPLICAS") {
				t.Fatalf("SET without replicas: %v; want NOREPLICAS", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("primary still accepts writes %s after its only replica died", failoverBound)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestSentinelOverTLS(t *testing.T) {
	ca := redistest.NewCA(t, "sentinel CA")
	g := redistest.StartSentinels(t, redistest.SentinelOptions{TLS: ca})
	ctx := context.Background()
	o := sentinelOptions(g, "", "")
	o.URL = "rediss://primary-from-sentinels/0"
	o.CAFile = ca.CertFile
	// Sentinels by name, data nodes by the address the sentinels announce:
	// each is checked against the host it is dialed at.
	o.Sentinel.Addrs = nil
	for _, a := range g.SentinelAddrs {
		_, port, _ := net.SplitHostPort(a)
		o.Sentinel.Addrs = append(o.Sentinel.Addrs, net.JoinHostPort("localhost", port))
	}
	c := open(t, o)
	setGet(t, c)

	chk, err := NewSentinelChecker(o)
	if err != nil {
		t.Fatal(err)
	}
	defer chk.Close()
	if r := chk.Check(ctx); r.Err() != nil {
		t.Fatalf("check over TLS: %v", r.Err())
	}

	killed := g.KillPrimary(t)
	d, _, err := writeUntilRecovered(ctx, c, failoverBound)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("over TLS: client wrote again %s after SIGKILL of the primary", d.Round(time.Millisecond))
	if np := g.WaitForNewPrimary(t, killed.Addr, failoverBound); np != g.Nodes[1] {
		t.Fatalf("new primary = %s; want %s", np.Addr, g.Nodes[1].Addr)
	}

	// A CA that signed none of it: the check and the client both say so.
	bad := o
	bad.CAFile = redistest.NewCA(t, "other").CertFile
	chk2, err := NewSentinelChecker(bad)
	if err != nil {
		t.Fatal(err)
	}
	defer chk2.Close()
	r := chk2.Check(ctx)
	if r.Ready() {
		t.Fatal("sentinels answered over TLS with a CA that did not sign them")
	}
	if msg := r.Err().Error(); !strings.Contains(msg, "redis.ca_file") || !strings.Contains(msg, `server name "localhost"`) {
		t.Errorf("check error %q does not name redis.ca_file and the server name", msg)
	}
	err = startupPing(open(t, bad))
	if err == nil {
		t.Fatal("PING through sentinels succeeded with the wrong CA")
	}
	var te *TLSError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "redis.ca_file") {
		t.Errorf("startup error %q is not a *TLSError naming redis.ca_file", err)
	}
}
