package redisconn

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/redistest"
)

// open builds a client for o, closed when the test ends.
func open(t *testing.T, o Options) redis.UniversalClient {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startupPing is what cmd does before serving: one PING, bounded.
func startupPing(c redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func setGet(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	key := "k:" + t.Name()
	if err := c.Set(ctx, key, "v1", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	got, err := c.Get(ctx, key).Result()
	if err != nil || got != "v1" {
		t.Fatalf("GET = %q, %v; want v1", got, err)
	}
}

// tlsPort is the URL of srv with host in place of 127.0.0.1.
func withHost(srv *redistest.Server, scheme, host string) string {
	return fmt.Sprintf("%s://%s:%d/0", scheme, host, srv.Port())
}

func TestPlainURL(t *testing.T) {
	srv := redistest.Start(t)
	setGet(t, open(t, Options{URL: srv.URL}))
}

func TestTLSWithCA(t *testing.T) {
	srv := redistest.StartTLS(t, redistest.TLSOptions{})
	for _, tc := range []struct{ name, url string }{
		{"ip", srv.URL},
		{"dns name", withHost(srv, "rediss", "localhost")},
		// A CA file turns TLS on even when the URL says redis://.
		{"redis scheme with a CA", withHost(srv, "redis", "127.0.0.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setGet(t, open(t, Options{URL: tc.url, CAFile: srv.CA.CertFile}))
		})
	}
}

func TestTLSWrongCA(t *testing.T) {
	srv := redistest.StartTLS(t, redistest.TLSOptions{})
	other := redistest.NewCA(t, "some other CA")
	err := startupPing(open(t, Options{URL: srv.URL, CAFile: other.CertFile}))
	if err == nil {
		t.Fatal("PING succeeded with a CA that did not sign the server's certificate")
	}
	var te *TLSError
	if !errors.As(err, &te) {
		t.Fatalf("error %q (%T) is not a *TLSError", err, err)
	}
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("error %q does not wrap x509.UnknownAuthorityError", err)
	}
	msg := err.Error()
	for _, want := range []string{"redis.ca_file", other.CertFile, `server name "127.0.0.1"`, srv.Addr} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	t.Logf("startup error: %v", err)
}

func TestTLSSystemRootsDoNotTrustTheServer(t *testing.T) {
	srv := redistest.StartTLS(t, redistest.TLSOptions{})
	err := startupPing(open(t, Options{URL: srv.URL}))
	if err == nil {
		t.Fatal("PING succeeded trusting only the system roots")
	}
	if msg := err.Error(); !strings.Contains(msg, "set redis.ca_file") || !strings.Contains(msg, `server name "127.0.0.1"`) {
		t.Errorf("error %q does not point at redis.ca_file and the server name", msg)
	}
}

// Under TLS 1.3 the server refuses a client certificate after the
// handshake, on the first read; under TLS 1.2 during the handshake. Both must
// say what to configure.
func TestTLSClientCertificate(t *testing.T) {
	for _, proto := range []string{"TLSv1.3", "TLSv1.2"} {
		t.Run(proto, func(t *testing.T) { testClientCertificate(t, proto) })
	}
}

func testClientCertificate(t *testing.T, proto string) {
	srv := redistest.StartTLS(t, redistest.TLSOptions{AuthClients: "yes", Protocols: proto})
	stranger := redistest.NewCA(t, "stranger").ClientCert(t, "stranger")

	t.Run("given", func(t *testing.T) {
		setGet(t, open(t, Options{
			URL: srv.URL, CAFile: srv.CA.CertFile,
			CertFile: srv.ClientCert.CertFile, KeyFile: srv.ClientCert.KeyFile,
		}))
	})
	t.Run("missing", func(t *testing.T) {
		err := startupPing(open(t, Options{URL: srv.URL, CAFile: srv.CA.CertFile}))
		if err == nil {
			t.Fatal("PING succeeded without the client certificate the server requires")
		}
		var te *TLSError
		if !errors.As(err, &te) {
			t.Fatalf("error %q (%T) is not a *TLSError", err, err)
		}
		msg := err.Error()
		for _, want := range []string{"requires a client certificate", "redis.cert_file", "redis.key_file"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
		t.Logf("startup error: %v", err)
	})
	t.Run("signed by another CA", func(t *testing.T) {
		err := startupPing(open(t, Options{
			URL: srv.URL, CAFile: srv.CA.CertFile,
			CertFile: stranger.CertFile, KeyFile: stranger.KeyFile,
		}))
		if err == nil {
			t.Fatal("PING succeeded with a client certificate the server's CA did not sign")
		}
		if msg := err.Error(); !strings.Contains(msg, "refused the client certificate") || !strings.Contains(msg, stranger.CertFile) {
			t.Errorf("error %q does not say the client certificate in redis.cert_file was refused", msg)
		}
	})
}

func TestTLSOptionalClientCertificate(t *testing.T) {
	srv := redistest.StartTLS(t, redistest.TLSOptions{AuthClients: "optional"})
	// The server asks for a certificate but does without one.
	setGet(t, open(t, Options{URL: srv.URL, CAFile: srv.CA.CertFile}))
}

func TestTLSServerNameMismatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string // in the server's certificate
		url   func(*redistest.Server) string
		sni   string
	}{
		{"ip not in certificate", []string{"localhost"}, func(s *redistest.Server) string { return s.URL }, "127.0.0.1"},
		{"name not in certificate", []string{"127.0.0.1"}, func(s *redistest.Server) string { return withHost(s, "rediss", "localhost") }, "localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.StartTLS(t, redistest.TLSOptions{Hosts: tc.hosts})
			err := startupPing(open(t, Options{URL: tc.url(srv), CAFile: srv.CA.CertFile}))
			if err == nil {
				t.Fatalf("PING succeeded though the certificate names only %v", tc.hosts)
			}
			var host x509.HostnameError
			if !errors.As(err, &host) {
				t.Errorf("error %q does not wrap x509.HostnameError", err)
			}
			msg := err.Error()
			for _, want := range []string{fmt.Sprintf("server name %q", tc.sni), "redis.url"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := redistest.NewCA(t, "ca")
	pair := ca.ClientCert(t, "c")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"bad scheme", Options{URL: "http://localhost:6379"}, "redis.url"},
		{"skip_verify", Options{URL: "rediss://localhost:6379/0?skip_verify=true"}, "skip_verify is not supported"},
		{"missing CA file", Options{URL: "rediss://localhost:6379", CAFile: filepath.Join(dir, "absent.pem")}, "redis.ca_file"},
		{"CA file without a certificate", Options{URL: "rediss://localhost:6379", CAFile: notPEM}, "redis.ca_file: no PEM certificate"},
		{"cert without key", Options{URL: "rediss://localhost:6379", CertFile: pair.CertFile}, "redis.key_file"},
		{"key without cert", Options{URL: "rediss://localhost:6379", KeyFile: pair.KeyFile}, "redis.cert_file"},
		{"cert and key do not match", Options{URL: "rediss://localhost:6379", CertFile: pair.CertFile, KeyFile: ca.ClientCert(t, "d").KeyFile}, "redis.cert_file, redis.key_file"},
		{"TLS over unix socket", Options{URL: "unix:///run/redis.sock", CAFile: ca.CertFile}, "unix://"},
		{"sentinel without master name", Options{URL: "redis://x/0", Sentinel: Sentinel{Addrs: []string{"127.0.0.1:26379"}}}, "redis.sentinel.master_name"},
		{"sentinel without addrs", Options{URL: "redis://x/0", Sentinel: Sentinel{MasterName: "m"}}, "redis.sentinel.addrs"},
		{"sentinel addr without port", Options{URL: "redis://x/0", Sentinel: Sentinel{MasterName: "m", Addrs: []string{"127.0.0.1"}}}, "redis.sentinel.addrs[0]"},
		{"sentinel over unix socket", Options{URL: "unix:///run/redis.sock", Sentinel: Sentinel{MasterName: "m", Addrs: []string{"127.0.0.1:26379"}}}, "unix://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.o)
			if err == nil {
				_ = c.Close()
				t.Fatalf("New(%+v) succeeded", tc.o)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error %q does not mention %q", err, tc.want)
			}
		})
	}
}
