// Package redisconn builds the connector's Redis client from the redis
// configuration: a plain or TLS connection to one server, or a failover
// client that finds the primary through Redis Sentinel.
//
// Over TLS the server's certificate is checked against redis.ca_file (or the
// system roots) and against the server name: the host of redis.url for one
// server, or for Sentinel the host each node is dialed at (as configured in
// redis.sentinel.addrs, or as the sentinels announce the primary). A failed
// handshake comes back as a *TLSError that names the configuration key to
// look at, so a startup PING can be printed as is. go-redis dials sentinels
// and data nodes with one TLS configuration: with Sentinel, a rediss:// URL
// means both speak TLS.
package redisconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"

	"github.com/redis/go-redis/v9"
)

// Options mirror the redis section of the configuration. Zero values are
// the defaults.
type Options struct {
	// URL is redis://, rediss:// (TLS) or unix://, with optional user,
	// password, database and go-redis query options. With Sentinel set, the
	// URL gives the scheme, credentials and database only; the primary's
	// address comes from the sentinels.
	URL string
	// CAFile is a PEM file of the CAs that sign the servers' certificates.
	// When set only these are trusted, and TLS is used even with a redis://
	// URL. Default: the system roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers run with tls-auth-clients yes. Both or neither; setting them
	// turns TLS on like CAFile.
	CertFile string
	KeyFile  string
	// Sentinel, when set, makes the client find the primary through these
	// sentinels and follow failovers.
	Sentinel Sentinel
}

// Sentinel says where the sentinels are and which master they watch.
type Sentinel struct {
	MasterName string   // name in the sentinels' "sentinel monitor" line
	Addrs      []string // host:port of each sentinel
	Password   string   // the sentinels' requirepass, if any
}

// Enabled reports whether Sentinel is configured.
func (s Sentinel) Enabled() bool { return s.MasterName != "" || len(s.Addrs) > 0 }

// New builds the client. It does not connect: the first command (a startup
// PING) does, and any TLS failure it meets is a *TLSError. New returns an
// error, naming the configuration key, for a URL it cannot parse, TLS files
// it cannot load and an incomplete sentinel section.
func New(o Options) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	// go-redis would turn certificate checks off; a wrong CA must fail.
	if u.Query().Has("skip_verify") {
		return nil, errors.New("redis.url: skip_verify is not supported; put the server's CA in redis.ca_file")
	}
	if err := o.Sentinel.validate(u.Scheme); err != nil {
		return nil, err
	}
	d, err := newDialer(o, u, opt)
	if err != nil {
		return nil, err
	}
	if d.tls != nil {
		opt.TLSConfig = d.tls
		opt.Dialer = d.dial
	}
	if !o.Sentinel.Enabled() {
		return redis.NewClient(opt), nil
	}
	return redis.NewFailoverClient(failoverOptions(o.Sentinel, opt, d)), nil
}

func (s Sentinel) validate(scheme string) error {
	if !s.Enabled() {
		return nil
	}
	if s.MasterName == "" {
		return errors.New("redis.sentinel.master_name: is required with redis.sentinel.addrs")
	}
	if len(s.Addrs) == 0 {
		return errors.New("redis.sentinel.addrs: needs at least one sentinel host:port")
	}
	for i, a := range s.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("redis.sentinel.addrs[%d]: %q is not host:port: %w", i, a, err)
		}
	}
	if scheme == "unix" {
		return errors.New("redis.url: a unix:// URL cannot be used with redis.sentinel")
	}
	return nil
}

// failoverOptions carries what the URL set (credentials, database, timeouts,
// pool sizes) over to the failover client.
func failoverOptions(s Sentinel, opt *redis.Options, d *dialer) *redis.FailoverOptions {
	fo := &redis.FailoverOptions{
		MasterName:       s.MasterName,
		SentinelAddrs:    s.Addrs,
		SentinelPassword: s.Password,

		ClientName: opt.ClientName,
		Protocol:   opt.Protocol,
		Username:   opt.Username,
		Password:   opt.Password,
		DB:         opt.DB,

		MaxRetries:      opt.MaxRetries,
		MinRetryBackoff: opt.MinRetryBackoff,
		MaxRetryBackoff: opt.MaxRetryBackoff,

		DialTimeout:           opt.DialTimeout,
		ReadTimeout:           opt.ReadTimeout,
		WriteTimeout:          opt.WriteTimeout,
		ContextTimeoutEnabled: opt.ContextTimeoutEnabled,

		PoolFIFO:        opt.PoolFIFO,
		PoolSize:        opt.PoolSize,
		PoolTimeout:     opt.PoolTimeout,
		MinIdleConns:    opt.MinIdleConns,
		MaxIdleConns:    opt.MaxIdleConns,
		MaxActiveConns:  opt.MaxActiveConns,
		ConnMaxIdleTime: opt.ConnMaxIdleTime,
		ConnMaxLifetime: opt.ConnMaxLifetime,
	}
	if d.tls != nil {
		fo.TLSConfig = d.tls
		fo.Dialer = d.dial
	}
	return fo
}

// loadTLS builds the TLS configuration from the CA and client certificate
// files. serverName empty means each connection checks the host it dials.
func loadTLS(o Options, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.ca_file: no PEM certificate in %s", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case o.CertFile == "" && o.KeyFile == "":
	case o.CertFile == "" || o.KeyFile == "":
		return nil, errors.New("redis.cert_file, redis.key_file: give both or neither")
	default:
		pair, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis.cert_file, redis.key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
