package emulator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator/sts"
)

// Running is an emulator listening on a loopback port.
type Running struct {
	*Server
	OrgURL        string // https://127.0.0.1:port (no /api/data)
	APIURL        string // OrgURL + /api/data/v9.2/
	AuthorityHost string // OrgURL + "/": azidentity's ClientOptions.Cloud.ActiveDirectoryAuthorityHost
	TenantID      string
	ClientID      string
	ClientSecret  string
	CAPEM         []byte // PEM of the CA that signed the server certificate (StartTLS)
	CAFile        string // CAPEM written to a temp dir (StartTLS)
	CA            *sts.CA
	HTTPClient    *http.Client // trusts only the CA (StartTLS) or a plain client (Start)
	Close         func() error
}

// Start serves the emulator over plain HTTP on 127.0.0.1:0. azidentity refuses plain-HTTP
// authorities, so use it with Auth.Disabled or tokens from STS().IssueToken.
func Start(o Options) (*Running, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("emulator start: %w", err)
	}
	s := New(o)
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	org := "http://" + ln.Addr().String()
	return &Running{
		Server: s, OrgURL: org, APIURL: org + apiPrefix, AuthorityHost: org + "/",
		TenantID: s.opts.Auth.TenantID, ClientID: s.opts.Auth.ClientID, ClientSecret: s.opts.Auth.ClientSecret,
		HTTPClient: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		Close:      closer(srv, s, ""),
	}, nil
}

// StartTLS serves the API and the token endpoint on one TLS listener at addr
// ("127.0.0.1:0" for a free port) with a certificate for 127.0.0.1 and localhost signed by
// a fresh CA, whose PEM it writes to a temp file.
func StartTLS(o Options, addr string) (*Running, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ca, err := sts.NewCA()
	if err != nil {
		return nil, fmt.Errorf("emulator start tls: %w", err)
	}
	cert, err := ca.ServerCertificate("127.0.0.1", "localhost")
	if err != nil {
		return nil, fmt.Errorf("emulator start tls: %w", err)
	}
	dir, err := os.MkdirTemp("", "dataverse-emulator-")
	if err != nil {
		return nil, fmt.Errorf("emulator start tls: %w", err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("emulator start tls: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("emulator start tls: %w", err)
	}
	s := New(o)
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		// HTTP/1.1 only, so injected connection resets can hijack the connection.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	host := ln.Addr().String()
	org := "https://" + host
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 64,
	}}
	return &Running{
		Server: s, OrgURL: org, APIURL: org + apiPrefix, AuthorityHost: org + "/",
		TenantID: s.opts.Auth.TenantID, ClientID: s.opts.Auth.ClientID, ClientSecret: s.opts.Auth.ClientSecret,
		CAPEM: ca.CertPEM, CAFile: caFile, CA: ca, HTTPClient: client,
		Close: closer(srv, s, dir),
	}, nil
}

func closer(srv *http.Server, s *Server, dir string) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = srv.Close()
		}
		s.Close()
		if dir != "" {
			if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
				err = rerr
			}
		}
		if err != nil {
			return fmt.Errorf("emulator close: %w", err)
		}
		return nil
	}
}
