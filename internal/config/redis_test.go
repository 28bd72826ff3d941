package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const minimalRedis = "redis:\n  url: redis://127.0.0.1:6379/0\n"

// withRedis replaces the redis section of minimal with block.
func withRedis(t *testing.T, block string) string {
	t.Helper()
	if !strings.Contains(minimal, minimalRedis) {
		t.Fatal("minimal has no redis section to replace")
	}
	return strings.Replace(minimal, minimalRedis, block, 1)
}

func TestRedisTLSAndSentinel(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"ca.pem", "client.pem", "client-key.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("pem"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src := withRedis(t, `redis:
  url: rediss://:pw@mymaster/0
  ca_file: ca.pem
  cert_file: client.pem
  key_file: client-key.pem
  min_acked_replicas: 1
  sentinel:
    master_name: mymaster
    addrs: [s1:26379, "s2:26379", 10.0.0.3:26379]
    password: ${SENTINEL_PASSWORD}
`)
	path := filepath.Join(dir, "connector.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == "SENTINEL_PASSWORD" {
			return "sentinel-secret"
		}
		return dummyEnv(k)
	}
	c, err := Load(path, Options{Getenv: env})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redis
	if r.CAFile != filepath.Join(dir, "ca.pem") || r.CertFile != filepath.Join(dir, "client.pem") || r.KeyFile != filepath.Join(dir, "client-key.pem") {
		t.Errorf("TLS files not resolved against the config's directory: %+v", r)
	}
	s := r.Sentinel
	if !s.Enabled() || s.MasterName != "mymaster" || strings.Join(s.Addrs, ",") != "s1:26379,s2:26379,10.0.0.3:26379" || s.Password != "sentinel-secret" {
		t.Errorf("sentinel %+v", s)
	}
	if r.MinAckedReplicas != 1 || r.AckTimeout.D().Seconds() != 1 {
		t.Errorf("min_acked_replicas %d, ack_timeout %s; want 1 and the 1s default", r.MinAckedReplicas, r.AckTimeout.D())
	}
	var b strings.Builder
	if err := c.Dump(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "sentinel-secret") || !strings.Contains(b.String(), "master_name: mymaster") {
		t.Errorf("dump shows the sentinel password or misses the section:\n%s", b.String())
	}

	d, err := LoadBytes([]byte(minimal), Options{Getenv: dummyEnv})
	if err != nil {
		t.Fatal(err)
	}
	if d.Redis.Sentinel.Enabled() || d.Redis.CAFile != "" || d.Redis.MinAckedReplicas != 0 {
		t.Errorf("defaults %+v, want no sentinel, no CA, no wait", d.Redis)
	}
}

func TestRedisProblems(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "client.pem")
	if err := os.WriteFile(cert, []byte("pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing-ca.pem")
	for _, c := range []struct {
		name, block, key, lineAt, want string
	}{
		{"cert without key", "redis:\n  url: rediss://redis:6380\n  cert_file: " + cert + "\n", "redis.cert_file", "cert_file:", "redis.key_file"},
		{"key without cert", "redis:\n  url: rediss://redis:6380\n  key_file: " + cert + "\n", "redis.key_file", "key_file:", "redis.cert_file"},
		{"unreadable CA", "redis:\n  url: rediss://redis:6380\n  ca_file: " + missing + "\n", "redis.ca_file", "ca_file:", "cannot read"},
		{"empty addrs", "redis:\n  url: redis://mymaster\n  sentinel:\n    master_name: mymaster\n    addrs: []\n", "redis.sentinel.addrs", "addrs:", "at least one"},
		{"missing master_name", "redis:\n  url: redis://mymaster\n  sentinel:\n    addrs: [s1:26379]\n", "redis.sentinel.master_name", "sentinel:", "sentinel monitor"},
		{"addr without port", "redis:\n  url: redis://mymaster\n  sentinel:\n    master_name: m\n    addrs:\n      - s1:26379\n      - s2\n", "redis.sentinel.addrs[1]", "- s2", "host:port"},
		{"negative acks", "redis:\n  url: redis://r\n  min_acked_replicas: -1\n", "redis.min_acked_replicas", "min_acked_replicas:", "0"},
		{"ack timeout past the read timeout", "redis:\n  url: redis://r\n  min_acked_replicas: 1\n  ack_timeout: 3s\n", "redis.ack_timeout", "ack_timeout:", "read timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := withRedis(t, c.block)
			_, err := LoadBytes([]byte(src), Options{Getenv: dummyEnv})
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			if len(ce.Problems) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ce.Problems), err)
			}
			p := ce.Problems[0]
			if line := lineOf(t, src, c.lineAt); p.Key != c.key || p.Line != line || !strings.Contains(p.Message, c.want) {
				t.Errorf("problem %+v, want %s at line %d saying %q", p, c.key, line, c.want)
			}
		})
	}
}
