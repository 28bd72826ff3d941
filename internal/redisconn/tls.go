package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// TLSError is a TLS failure with a Redis server or sentinel, with the
// configuration key to look at. It wraps the crypto/tls or crypto/x509 error.
type TLSError struct {
	Addr       string // the address dialed
	ServerName string // the name the server's certificate was checked against
	Problem    string // what went wrong, naming the configuration key
	Err        error
}

func (e *TLSError) Error() string {
	return fmt.Sprintf("redis TLS with %s (server name %q): %s: %v", e.Addr, e.ServerName, e.Problem, e.Err)
}

func (e *TLSError) Unwrap() error { return e.Err }

// go-redis's own dialer uses these keep-alives; a custom dialer replaces it.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}

// defaultDialTimeout is go-redis's default, for a URL that sets none.
const defaultDialTimeout = 5 * time.Second

// dialer dials TCP and does the TLS handshake itself (rather than leaving it
// to go-redis) so a failure can say which address, which server name and
// which configuration key.
type dialer struct {
	tls       *tls.Config // nil: plain TCP, and go-redis dials
	caFile    string
	certFile  string
	sentinels []string // addresses from redis.sentinel.addrs
	sentinel  bool     // Sentinel mode: data node addresses come from the sentinels
	timeout   time.Duration
}

func newDialer(o Options, u *url.URL, opt *redis.Options) (*dialer, error) {
	useTLS := u.Scheme == "rediss" || o.CAFile != "" || o.CertFile != "" || o.KeyFile != ""
	if !useTLS {
		return &dialer{}, nil
	}
	if u.Scheme == "unix" {
		return nil, errors.New("redis.ca_file, redis.cert_file: TLS does not apply to a unix:// redis.url")
	}
	serverName := u.Hostname()
	if o.Sentinel.Enabled() {
		serverName = "" // each node is checked against the host it is dialed at
	}
	cfg, err := loadTLS(o, serverName)
	if err != nil {
		return nil, err
	}
	timeout := opt.DialTimeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	return &dialer{
		tls:       cfg,
		caFile:    o.CAFile,
		certFile:  o.CertFile,
		sentinels: o.Sentinel.Addrs,
		sentinel:  o.Sentinel.Enabled(),
		timeout:   timeout,
	}, nil
}

func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{Timeout: d.timeout, KeepAliveConfig: keepAlive}
	raw, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := d.tls.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	// Under TLS 1.3 a server that wants a client certificate rejects the
	// connection only after the handshake, on the first read; remembering
	// that it asked lets that read error say what is missing.
	asked := false
	certs := cfg.Certificates
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		asked = true
		if len(certs) > 0 {
			return &certs[0], nil
		}
		return &tls.Certificate{}, nil
	}
	tc := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = raw.Close()
		return nil, d.explain(addr, cfg.ServerName, asked, err)
	}
	if !asked {
		return tc, nil
	}
	return &certConn{Conn: tc, explain: func(err error) error {
		return d.explain(addr, cfg.ServerName, true, err)
	}}, nil
}

// explain turns a handshake (or post-handshake alert) error into a
// *TLSError.
func (d *dialer) explain(addr, serverName string, asked bool, err error) error {
	var (
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	e := &TLSError{Addr: addr, ServerName: serverName, Err: err}
	switch {
	case errors.As(err, &unknown):
		if d.caFile != "" {
			e.Problem = fmt.Sprintf("the server's certificate is not signed by a CA in redis.ca_file (%s)", d.caFile)
		} else {
			e.Problem = "the server's certificate is not signed by a CA the system trusts; set redis.ca_file to the server's CA"
		}
	case errors.As(err, &host):
		e.Problem = fmt.Sprintf("the server's certificate is not valid for %q; %s", serverName, d.nameSource(addr))
	case errors.As(err, &invalid):
		e.Problem = "the server's certificate is not valid"
	case isRemoteAlert(err) && asked && d.certFile == "":
		e.Problem = "the server requires a client certificate; set redis.cert_file and redis.key_file"
	case isRemoteAlert(err) && asked:
		e.Problem = fmt.Sprintf("the server refused the client certificate in redis.cert_file (%s)", d.certFile)
	default:
		e.Problem = "handshake failed"
	}
	return e
}

// nameSource says where the server name checked for addr came from.
func (d *dialer) nameSource(addr string) string {
	switch {
	case !d.sentinel:
		return "the host in redis.url must be a name the certificate holds"
	case slices.Contains(d.sentinels, addr):
		return "the host in redis.sentinel.addrs must be a name the certificate holds"
	default:
		return "the sentinels announce this address; the certificate must hold it (or use sentinel announce-hostnames)"
	}
}

// isRemoteAlert reports whether err is a TLS alert sent by the server.
// crypto/tls does not export the alert type; it reports a received alert
// as a *net.OpError with this Op.
func isRemoteAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// certConn is a TLS connection to a server that asked for a client
// certificate: an alert on read (the server's verdict under TLS 1.3) becomes
// a *TLSError.
type certConn struct {
	*tls.Conn
	explain func(error) error
}

func (c *certConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && isRemoteAlert(err) {
		err = &setupError{c.explain(err)}
	}
	return n, err
}

// setupError carries a *TLSError met on a connection's first reads. go-redis
// unwraps an error from setting a connection up (HELLO) once before
// returning it; this layer is what that removes, so callers still get the
// *TLSError.
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }
