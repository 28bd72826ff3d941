package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/redistest"
)

// setRedis replaces the redis section of the test org's config with block.
func (o *testOrg) setRedis(t *testing.T, block string) {
	t.Helper()
	src, err := os.ReadFile(o.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	start, end := strings.Index(string(src), "\nredis:\n"), strings.Index(string(src), "\nintake:\n")
	if start < 0 || end < start {
		t.Fatal("test config has no redis section before intake")
	}
	out := string(src[:start+1]) + block + string(src[end+1:])
	if err := os.WriteFile(o.cfgPath, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sentinelBlock is a redis section that finds the group's primary through
// its sentinels and extra addresses.
func sentinelBlock(g *redistest.SentinelGroup, extra ...string) string {
	addrs := append(append([]string(nil), g.SentinelAddrs...), extra...)
	return fmt.Sprintf("redis:\n  url: \"redis://%s/0\"\n  sentinel:\n    master_name: %q\n    addrs: [%s]\n",
		g.MasterName, g.MasterName, strings.Join(addrs, ", "))
}

// A rediss:// URL whose server is signed by another CA than redis.ca_file:
// serve exits 1 naming redis.ca_file and the server name checked.
func TestServeRedisWrongCA(t *testing.T) {
	org := newTestOrg(t)
	srv := redistest.StartTLS(t, redistest.TLSOptions{})
	other := redistest.NewCA(t, "another CA")
	org.setRedis(t, fmt.Sprintf("redis:\n  url: %q\n  ca_file: %q\n", srv.URL, other.CertFile))
	code, _, stderr := runCLI(t, org.getenv(org.emu.ClientSecret), "serve", "--config", org.cfgPath)
	if code != exitFail {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFail, stderr)
	}
	for _, want := range []string{"redis.ca_file", `server name \"127.0.0.1\"`, other.CertFile} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	// check says the same, and with the right CA says TLS works.
	code, out, _ := runCLI(t, org.getenv(org.emu.ClientSecret), "check", "--config", org.cfgPath)
	if code != exitFail || !strings.Contains(out, "redis TLS with "+srv.Addr) || !strings.Contains(out, "redis.ca_file") {
		t.Errorf("check with the wrong CA: exit %d\n%s", code, out)
	}
	org.setRedis(t, fmt.Sprintf("redis:\n  url: %q\n  ca_file: %q\n", srv.URL, srv.CA.CertFile))
	_, out, _ = runCLI(t, org.getenv(org.emu.ClientSecret), "check", "--config", org.cfgPath)
	if !strings.Contains(out, "✓ Redis answers at "+srv.URL+" over TLS") {
		t.Errorf("check with the right CA:\n%s", out)
	}
}

// check names every sentinel that does not answer and still finds the
// primary through the others.
func TestCheckSentinels(t *testing.T) {
	org := newTestOrg(t)
	g := redistest.StartSentinels(t, redistest.SentinelOptions{})
	dead := deadAddr(t)
	org.setRedis(t, sentinelBlock(g, dead)+"  min_acked_replicas: 1\n  ack_timeout: 2s\n")
	_, out, stderr := runCLI(t, org.getenv(org.emu.ClientSecret), "check", "--config", org.cfgPath)
	primary := g.Primary(t).Addr
	for _, want := range []string{
		"✗ sentinel " + dead + " does not answer",
		fmt.Sprintf("✓ Redis primary of %q found through Sentinel and answers", g.MasterName),
		"✓ Redis: a write reached 1 replica(s) within 2s (redis.min_acked_replicas 1)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s%s", want, out, stderr)
		}
	}
	for _, a := range g.SentinelAddrs {
		if want := fmt.Sprintf("✓ sentinel %s names %s as primary", a, primary); !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

// /readyz is 503, naming the sentinels, while none answers, and ready once
// one does again.
func TestReadyzWaitsForASentinel(t *testing.T) {
	org := newTestOrg(t)
	g := redistest.StartSentinels(t, redistest.SentinelOptions{})
	org.setRedis(t, sentinelBlock(g))
	c, err := config.Load(org.cfgPath, config.Options{Getenv: org.getenv(org.emu.ClientSecret)})
	if err != nil {
		t.Fatal(err)
	}
	rdb, err := newRedis(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	if err := pingRedis(context.Background(), rdb); err != nil {
		t.Fatal(err)
	}
	a, err := newApp(c, newLogger(config.Log{Level: "error", Format: "text"}, os.Stderr), appOptions{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.sentinels.Close() })
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		a.readyz(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("with every sentinel up: %d %s", code, body)
	}
	for _, s := range g.Sentinels {
		s.Stop()
	}
	code, body := readyz()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "redis: no sentinel answers ("+strings.Join(g.SentinelAddrs, ", ")+")") {
		t.Errorf("with every sentinel down: %d %s", code, body)
	}
	g.Sentinels[1].Restart(t)
	// A client whose dial failed retries in the background about once a
	// second, so readiness comes back within a few probes.
	for i := 0; ; i++ {
		code, body := readyz()
		if code == http.StatusOK {
			break
		}
		if i == 50 {
			t.Fatalf("with one sentinel back: still %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	s := redistest.Start(t)
	addr := s.Addr
	s.Stop()
	return addr
}
