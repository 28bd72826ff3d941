package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"
)

// RedisSentinel makes the connector find the Redis primary through Redis
// Sentinel and follow its failovers. With it set, redis.url gives only the
// scheme (rediss:// = TLS to the sentinels and the data nodes alike), the
// data nodes' credentials and the database; its host is not used.
type RedisSentinel struct {
	MasterName string   `yaml:"master_name"` // the name in the sentinels' "sentinel monitor" line
	Addrs      []string `yaml:"addrs"`       // host:port of each sentinel
	Password   string   `yaml:"password"`    // the sentinels' own requirepass, if any
}

// Enabled reports whether redis.sentinel is configured.
func (s RedisSentinel) Enabled() bool { return s.MasterName != "" || len(s.Addrs) > 0 }

// validateRedis checks the TLS files and the sentinel section. redis.url
// itself is checked in validate.
func (c *Config) validateRedis(v *validator, opts Options) {
	r := c.Redis
	for key, f := range map[string]string{"redis.ca_file": r.CAFile, "redis.cert_file": r.CertFile, "redis.key_file": r.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := opts.ReadFile(f); err != nil {
			v.add(key, "cannot read the file: %v", err)
		}
	}
	switch {
	case r.CertFile != "" && r.KeyFile == "":
		v.add("redis.cert_file", "needs redis.key_file too (the client certificate's private key)")
	case r.KeyFile != "" && r.CertFile == "":
		v.add("redis.key_file", "needs redis.cert_file too (the client certificate)")
	}
	if r.MinAckedReplicas < 0 {
		v.add("redis.min_acked_replicas", "must be 0 (no wait) or more")
	}
	switch {
	case r.MinAckedReplicas > 0 && r.AckTimeout <= 0:
		v.add("redis.ack_timeout", "must be greater than 0")
	case r.MinAckedReplicas > 0 && r.AckTimeout.D() >= 3*time.Second && !strings.Contains(r.URL, "read_timeout="):
		// The WAIT reply is read under the client's read timeout.
		v.add("redis.ack_timeout", "must be below the Redis read timeout (3s unless redis.url sets read_timeout)")
	}
	s := r.Sentinel
	if !s.Enabled() {
		return
	}
	if s.MasterName == "" {
		v.add("redis.sentinel.master_name", "is required with redis.sentinel (the name in the sentinels' \"sentinel monitor\" line)")
	}
	if len(s.Addrs) == 0 {
		v.add("redis.sentinel.addrs", "needs at least one sentinel host:port (three on separate hosts for a quorum)")
	}
	for i, a := range s.Addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			v.add(fmt.Sprintf("redis.sentinel.addrs[%d]", i), "must be host:port, e.g. sentinel-1:26379")
		}
	}
	if r.URL == "" {
		v.add("redis.url", "is required with redis.sentinel: it gives the scheme, password and database, e.g. redis://:${REDIS_PASSWORD}@mymaster/0 (the host is not used)")
	}
}

// resolveRedisFiles makes the TLS file paths relative to the config file's
// directory.
func (c *Config) resolveRedisFiles(dir string) {
	for _, p := range []*string{&c.Redis.CAFile, &c.Redis.CertFile, &c.Redis.KeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}
