package redistest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartRestart(t *testing.T) {
	srv := Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("get = %q, %v; want v", got, err)
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	if len(info) == 0 {
		t.Fatal("empty INFO from redis-server")
	}
	srv.Restart(t)
	c2 := srv.Client(t)
	if n, err := c2.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after restart exists = %d, %v; want 0 (fresh server)", n, err)
	}
}

func TestStartTLS(t *testing.T) {
	srv := StartTLS(t, TLSOptions{AuthClients: "yes"})
	if !strings.HasPrefix(srv.URL, "rediss://127.0.0.1:") {
		t.Fatalf("URL = %q; want rediss://127.0.0.1:port/0", srv.URL)
	}
	ctx := context.Background()
	c := srv.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set over TLS: %v", err)
	}
	// The port speaks only TLS: a plain client gets no answer.
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatal("plain PING on the TLS port succeeded")
	}
	// Restart keeps TLS on the same port.
	srv.Restart(t)
	if err := srv.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

func TestCAIssuesVerifiableCertificates(t *testing.T) {
	ca := NewCA(t, "test CA")
	kp := ca.ServerCert(t, "127.0.0.1", "redis.test")
	pair, err := tls.LoadX509KeyPair(kp.CertFile, kp.KeyFile)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	for _, host := range []string{"127.0.0.1", "redis.test"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: host}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost"}); err == nil {
		t.Error("certificate verified for a host it does not name")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: NewCA(t, "other").Pool()}); err == nil {
		t.Error("certificate verified against another CA")
	}
	// Two issues from one CA do not overwrite each other.
	if kp2 := ca.ClientCert(t, "c"); kp2.CertFile == kp.CertFile || kp2.KeyFile == kp.KeyFile {
		t.Errorf("second issue reused file names: %+v %+v", kp, kp2)
	}
}

func TestSentinelGroupFailover(t *testing.T) {
	g := StartSentinels(t, SentinelOptions{Password: "node-secret", SentinelPassword: "sentinel-secret"})
	if len(g.Nodes) != 2 || len(g.Sentinels) != 3 || len(g.SentinelAddrs) != 3 {
		t.Fatalf("group has %d nodes, %d sentinels, %d addrs; want 2, 3, 3", len(g.Nodes), len(g.Sentinels), len(g.SentinelAddrs))
	}
	ctx := context.Background()
	p := g.Primary(t)
	if p != g.Nodes[0] {
		t.Fatalf("primary = %s; want the first node %s", p.Addr, g.Nodes[0].Addr)
	}
	if err := p.Client(t).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set on primary: %v", err)
	}
	if n, err := p.Client(t).Wait(ctx, 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v; want 1 replica", n, err)
	}
	killed := g.KillPrimary(t)
	np := g.WaitForNewPrimary(t, killed.Addr, 30*time.Second)
	if np == killed || np != g.Nodes[1] {
		t.Fatalf("new primary = %s; want the replica %s", np.Addr, g.Nodes[1].Addr)
	}
	got, err := np.Client(t).Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("get on new primary = %q, %v; want the replicated v", got, err)
	}
	if err := np.Client(t).Set(ctx, "k2", "v2", 0).Err(); err != nil {
		t.Fatalf("set on new primary: %v", err)
	}
}
