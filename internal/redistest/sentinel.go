package redistest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelOptions configure StartSentinels. The zero value is one primary,
// one replica and three sentinels (quorum 2) that fail over a few seconds
// after the primary dies.
type SentinelOptions struct {
	// MasterName is the name the sentinels monitor. Default "redistest".
	MasterName string
	// Replicas is the number of replicas of the primary. Default 1.
	Replicas int
	// Sentinels is the number of redis-sentinel processes. Default 3.
	Sentinels int
	// Quorum is how many sentinels must agree the primary is down.
	// Default: a majority of Sentinels.
	Quorum int
	// DownAfter is sentinel down-after-milliseconds. Default 1s.
	DownAfter time.Duration
	// FailoverTimeout is sentinel failover-timeout; a failed attempt is
	// retried after twice this. Default 4s.
	FailoverTimeout time.Duration
	// MinReplicasToWrite is min-replicas-to-write on every data node, so a
	// primary refuses writes unless that many replicas are connected.
	// Default 0 (off).
	MinReplicasToWrite int
	// Password is requirepass (and masterauth) on the data nodes, and the
	// sentinels' auth-pass. Default none.
	Password string
	// SentinelPassword is requirepass on the sentinels. Default none.
	SentinelPassword string
	// TLS, when set, makes every data node and sentinel listen only on a TLS
	// port with a certificate from this CA for 127.0.0.1 and localhost
	// (tls-replication yes, tls-auth-clients optional). Default: plain TCP.
	TLS *CA
}

// SentinelGroup is a primary, its replicas and the sentinels watching them,
// all on loopback ports, stopped when the test ends.
type SentinelGroup struct {
	MasterName    string
	Nodes         []*Server // data nodes; Nodes[0] started as the primary
	Sentinels     []*Server // redis-sentinel processes (Server.URL is not meaningful for them)
	SentinelAddrs []string  // host:port of each sentinel, in Sentinels order

	opts SentinelOptions
	// With SentinelOptions.TLS: the server certificate every process uses,
	// and how the helpers connect.
	cert   KeyPair
	client KeyPair
	tls    *tls.Config
}

// StartSentinels launches the data nodes, waits until every replica is in
// sync, then launches the sentinels and waits until each one knows every
// replica and every other sentinel, so a failover can start as soon as the
// primary dies. It needs redis-server and redis-sentinel (Debian's
// redis-sentinel package): skipped locally without them, failed under
// CI=true.
func StartSentinels(tb testing.TB, o SentinelOptions) *SentinelGroup {
	tb.Helper()
	serverBin := lookBin(tb, "redis-server", "redis-server")
	sentinelBin := lookBin(tb, "redis-sentinel", "redis-sentinel")
	o = o.withDefaults()
	g := &SentinelGroup{MasterName: o.MasterName, opts: o}
	if o.TLS != nil {
		g.cert = o.TLS.ServerCert(tb, "127.0.0.1", "localhost")
		g.client = o.TLS.ClientCert(tb, "redistest")
		pair, err := tls.LoadX509KeyPair(g.client.CertFile, g.client.KeyFile)
		if err != nil {
			tb.Fatalf("redistest: load client certificate: %v", err)
		}
		g.tls = &tls.Config{RootCAs: o.TLS.Pool(), Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}

	primary := g.startNode(tb, serverBin, "")
	for i := 0; i < o.Replicas; i++ {
		g.startNode(tb, serverBin, primary.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.waitInSync(ctx, primary); err != nil {
		tb.Fatalf("redistest: replicas: %v", err)
	}
	for i := 0; i < o.Sentinels; i++ {
		s := &Server{bin: sentinelBin, dir: tb.TempDir(), password: o.SentinelPassword, tls: g.tls}
		s.args = g.sentinelArgs(s, primary.Port())
		if err := s.start(); err != nil {
			tb.Fatalf("redistest: sentinel: %v", err)
		}
		tb.Cleanup(s.Stop)
		g.Sentinels = append(g.Sentinels, s)
		g.SentinelAddrs = append(g.SentinelAddrs, s.Addr)
	}
	if err := g.waitSentinelsAgree(ctx); err != nil {
		tb.Fatalf("redistest: sentinels: %v", err)
	}
	return g
}

func (o SentinelOptions) withDefaults() SentinelOptions {
	if o.MasterName == "" {
		o.MasterName = "redistest"
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Sentinels <= 0 {
		o.Sentinels = 3
	}
	if o.Quorum <= 0 {
		o.Quorum = o.Sentinels/2 + 1
	}
	if o.DownAfter <= 0 {
		o.DownAfter = time.Second
	}
	if o.FailoverTimeout <= 0 {
		o.FailoverTimeout = 4 * time.Second
	}
	return o
}

// startNode launches a data node; with replicaOf set it starts as a replica
// of that address.
func (g *SentinelGroup) startNode(tb testing.TB, bin, replicaOf string) *Server {
	tb.Helper()
	o := g.opts
	s := &Server{bin: bin, dir: tb.TempDir(), password: o.Password, tls: g.tls}
	s.args = func(port int) ([]string, error) {
		args := []string{"--port", strconv.Itoa(port)}
		if g.tls != nil {
			args = []string{"--port", "0", "--tls-port", strconv.Itoa(port)}
			for _, kv := range g.tlsSettings() {
				args = append(args, "--"+kv[0], kv[1])
			}
		}
		args = append(args,
			// The default 5 s delay before a diskless full sync would slow
			// every start and every re-sync after a failover.
			"--repl-diskless-sync-delay", "0",
			"--min-replicas-to-write", strconv.Itoa(o.MinReplicasToWrite),
		)
		if o.Password != "" {
			args = append(args, "--requirepass", o.Password, "--masterauth", o.Password)
		}
		if replicaOf != "" {
			host, port, _ := net.SplitHostPort(replicaOf)
			args = append(args, "--replicaof", host, port)
		}
		return append(args, s.commonArgs()...), nil
	}
	if err := s.start(); err != nil {
		tb.Fatalf("redistest: data node: %v", err)
	}
	tb.Cleanup(s.Stop)
	g.Nodes = append(g.Nodes, s)
	return s
}

// sentinelArgs writes the sentinel's configuration file (sentinels rewrite
// it with what they learn, so a Restart on the same port keeps it) and
// returns the command line.
func (g *SentinelGroup) sentinelArgs(s *Server, primaryPort int) func(port int) ([]string, error) {
	o := g.opts
	conf := filepath.Join(s.dir, "sentinel.conf")
	return func(port int) ([]string, error) {
		if s.port == port {
			return []string{conf}, nil
		}
		var b strings.Builder
		if g.tls != nil {
			fmt.Fprintf(&b, "port 0\ntls-port %d\n", port)
			for _, kv := range g.tlsSettings() {
				fmt.Fprintf(&b, "%s %s\n", kv[0], kv[1])
			}
		} else {
			fmt.Fprintf(&b, "port %d\n", port)
		}
		b.WriteString("bind 127.0.0.1\ndaemonize no\n")
		fmt.Fprintf(&b, "dir %s\nlogfile %s\n", s.dir, filepath.Join(s.dir, "redis.log"))
		// Must precede any monitor line that names a host.
		b.WriteString("sentinel resolve-hostnames yes\n")
		if o.SentinelPassword != "" {
			fmt.Fprintf(&b, "requirepass %s\n", o.SentinelPassword)
		}
		fmt.Fprintf(&b, "sentinel monitor %s 127.0.0.1 %d %d\n", o.MasterName, primaryPort, o.Quorum)
		fmt.Fprintf(&b, "sentinel down-after-milliseconds %s %d\n", o.MasterName, o.DownAfter.Milliseconds())
		fmt.Fprintf(&b, "sentinel failover-timeout %s %d\n", o.MasterName, o.FailoverTimeout.Milliseconds())
		fmt.Fprintf(&b, "sentinel parallel-syncs %s 1\n", o.MasterName)
		if o.Password != "" {
			fmt.Fprintf(&b, "sentinel auth-pass %s %s\n", o.MasterName, o.Password)
		}
		if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", conf, err)
		}
		return []string{conf}, nil
	}
}

// tlsSettings are the TLS directives shared by data nodes and sentinels:
// their own certificate, a client certificate for the connections they make
// (replication, monitoring), and TLS towards each other.
func (g *SentinelGroup) tlsSettings() [][2]string {
	return [][2]string{
		{"tls-cert-file", g.cert.CertFile},
		{"tls-key-file", g.cert.KeyFile},
		{"tls-client-cert-file", g.client.CertFile},
		{"tls-client-key-file", g.client.KeyFile},
		{"tls-ca-cert-file", g.opts.TLS.CertFile},
		{"tls-auth-clients", "optional"},
		{"tls-replication", "yes"},
	}
}

// waitInSync waits until the primary counts every replica and each replica's
// link to it is up.
func (g *SentinelGroup) waitInSync(ctx context.Context, primary *Server) error {
	want := "connected_slaves:" + strconv.Itoa(g.opts.Replicas)
	return poll(ctx, func() error {
		if err := infoHas(ctx, primary, want); err != nil {
			return err
		}
		for _, n := range g.Nodes {
			if n == primary {
				continue
			}
			if err := infoHas(ctx, n, "master_link_status:up"); err != nil {
				return err
			}
		}
		return nil
	})
}

// waitSentinelsAgree waits until every sentinel knows the replicas and the
// other sentinels.
func (g *SentinelGroup) waitSentinelsAgree(ctx context.Context) error {
	return poll(ctx, func() error {
		for _, addr := range g.SentinelAddrs {
			c := g.sentinelClient(addr)
			m, err := c.Master(ctx, g.MasterName).Result()
			_ = c.Close()
			if err != nil {
				return fmt.Errorf("sentinel %s: %w", addr, err)
			}
			if m["num-slaves"] != strconv.Itoa(g.opts.Replicas) ||
				m["num-other-sentinels"] != strconv.Itoa(g.opts.Sentinels-1) {
				return fmt.Errorf("sentinel %s knows %s replicas and %s other sentinels",
					addr, m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return nil
	})
}

// SentinelClient returns a client for the i-th sentinel, closed when the
// test ends.
func (g *SentinelGroup) SentinelClient(tb testing.TB, i int) *redis.SentinelClient {
	tb.Helper()
	c := g.sentinelClient(g.SentinelAddrs[i])
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func (g *SentinelGroup) sentinelClient(addr string) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{
		Addr: addr, Password: g.opts.SentinelPassword, MaxRetries: -1, TLSConfig: g.tls,
		DialTimeout: time.Second, ReadTimeout: time.Second,
	})
}

// PrimaryAddr is the primary's address as the sentinels that answer report
// it; it fails when they disagree or none answers.
func (g *SentinelGroup) PrimaryAddr(ctx context.Context) (string, error) {
	var got string
	for _, addr := range g.SentinelAddrs {
		c := g.sentinelClient(addr)
		hp, err := c.GetMasterAddrByName(ctx, g.MasterName).Result()
		_ = c.Close()
		if err != nil || len(hp) != 2 {
			continue // a stopped sentinel
		}
		a := net.JoinHostPort(hp[0], hp[1])
		if got != "" && a != got {
			return "", fmt.Errorf("sentinels disagree on the primary: %s and %s", got, a)
		}
		got = a
	}
	if got == "" {
		return "", errors.New("no sentinel answers")
	}
	return got, nil
}

// Primary is the data node the sentinels report as primary.
func (g *SentinelGroup) Primary(tb testing.TB) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr, err := g.PrimaryAddr(ctx)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	n := g.node(addr)
	if n == nil {
		tb.Fatalf("redistest: sentinels report primary %s, which is none of the data nodes", addr)
	}
	return n
}

func (g *SentinelGroup) node(addr string) *Server {
	for _, n := range g.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// KillPrimary SIGKILLs the current primary and returns it.
func (g *SentinelGroup) KillPrimary(tb testing.TB) *Server {
	tb.Helper()
	p := g.Primary(tb)
	p.Stop()
	return p
}

// WaitForNewPrimary waits, at most within, until every sentinel that answers
// reports a primary other than old and that node says it is a master; it
// returns the new primary.
func (g *SentinelGroup) WaitForNewPrimary(tb testing.TB, old string, within time.Duration) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var found *Server
	err := poll(ctx, func() error {
		addr, err := g.PrimaryAddr(ctx)
		if err != nil {
			return err
		}
		if addr == old {
			return fmt.Errorf("sentinels still report %s", old)
		}
		n := g.node(addr)
		if n == nil {
			return fmt.Errorf("sentinels report %s, which is none of the data nodes", addr)
		}
		if err := infoHas(ctx, n, "role:master"); err != nil {
			return err
		}
		found = n
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: no new primary within %s: %v", within, err)
	}
	return found
}

// infoHas checks that INFO replication on s contains line.
func infoHas(ctx context.Context, s *Server, line string) error {
	c := redis.NewClient(&redis.Options{
		Addr: s.Addr, Password: s.password, TLSConfig: s.tls, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second,
	})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("%s: %w", s.Addr, err)
	}
	for _, l := range strings.Split(info, "\n") {
		if strings.TrimSpace(l) == line {
			return nil
		}
	}
	return fmt.Errorf("%s: INFO replication lacks %q", s.Addr, line)
}

// poll calls try every 50ms until it succeeds or ctx ends, and then returns
// the last failure.
func poll(ctx context.Context, try func() error) error {
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
