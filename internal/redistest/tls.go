package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// CA is a throwaway certificate authority whose certificate is written to a
// PEM file, for servers and clients that must trust it.
type CA struct {
	CertFile string // PEM certificate of the CA

	name string
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// KeyPair names a PEM certificate and its PEM private key.
type KeyPair struct {
	CertFile string
	KeyFile  string
}

// NewCA creates a CA named name whose files live in the test's temporary
// directory.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("redistest: CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("redistest: CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("redistest: parse CA certificate: %v", err)
	}
	ca := &CA{name: name, dir: tb.TempDir(), cert: cert, key: key}
	ca.CertFile = ca.writePEM(tb, "ca.crt", "CERTIFICATE", der)
	return ca
}

// Pool is a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// ServerCert issues a server certificate valid for hosts (IP addresses go in
// the IP SANs, anything else in the DNS SANs).
func (ca *CA) ServerCert(tb testing.TB, hosts ...string) KeyPair {
	tb.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "redis server"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tb, "server", tmpl)
}

// ClientCert issues a client certificate with common name name.
func (ca *CA) ClientCert(tb testing.TB, name string) KeyPair {
	tb.Helper()
	return ca.issue(tb, "client-"+name, &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (ca *CA) issue(tb testing.TB, file string, tmpl *x509.Certificate) KeyPair {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("redistest: key for %s: %v", file, err)
	}
	tmpl.SerialNumber = serial(tb)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatalf("redistest: certificate %s: %v", file, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("redistest: marshal key %s: %v", file, err)
	}
	n := ca.next()
	return KeyPair{
		CertFile: ca.writePEM(tb, file+n+".crt", "CERTIFICATE", der),
		KeyFile:  ca.writePEM(tb, file+n+".key", "PRIVATE KEY", keyDER),
	}
}

// next gives each issued file a distinct suffix so a CA can issue many.
func (ca *CA) next() string {
	entries, _ := os.ReadDir(ca.dir)
	return "-" + strconv.Itoa(len(entries))
}

func (ca *CA) writePEM(tb testing.TB, name, typ string, der []byte) string {
	tb.Helper()
	path := filepath.Join(ca.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatalf("redistest: write %s: %v", path, err)
	}
	return path
}

func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatalf("redistest: serial: %v", err)
	}
	return n
}

// TLSOptions configure StartTLS. The zero value is a server for 127.0.0.1 and
// localhost, signed by a new CA, that asks for client certificates without
// requiring them.
type TLSOptions struct {
	// CA signs the server certificate and ClientCert. Default: a new CA.
	CA *CA
	// Hosts are the names and addresses in the server certificate.
	// Default: 127.0.0.1 and localhost.
	Hosts []string
	// AuthClients is redis-server's --tls-auth-clients: "optional"
	// (default), "yes" (a client certificate is required) or "no".
	AuthClients string
	// Protocols is redis-server's --tls-protocols, e.g. "TLSv1.2".
	// Default: the server's ("TLSv1.2 TLSv1.3").
	Protocols string
}

// StartTLS launches a redis-server that listens only on a TLS port
// (--port 0 --tls-port N) and registers its shutdown. Server.URL is
// rediss://127.0.0.1:N/0, Server.CA signed its certificate, and Server.Client
// connects with Server.ClientCert. Skipped or failed like Start when
// redis-server is missing.
func StartTLS(tb testing.TB, o TLSOptions) *Server {
	tb.Helper()
	bin := lookBin(tb, "redis-server", "redis-server")
	if o.CA == nil {
		o.CA = NewCA(tb, "redistest CA")
	}
	if len(o.Hosts) == 0 {
		o.Hosts = []string{"127.0.0.1", "localhost"}
	}
	if o.AuthClients == "" {
		o.AuthClients = "optional"
	}
	srvCert := o.CA.ServerCert(tb, o.Hosts...)
	client := o.CA.ClientCert(tb, "redistest")
	pair, err := tls.LoadX509KeyPair(client.CertFile, client.KeyFile)
	if err != nil {
		tb.Fatalf("redistest: load client certificate: %v", err)
	}
	s := &Server{
		bin:        bin,
		dir:        tb.TempDir(),
		CA:         o.CA,
		ClientCert: client,
		tls: &tls.Config{
			RootCAs:      o.CA.Pool(),
			Certificates: []tls.Certificate{pair},
			ServerName:   o.Hosts[0],
			MinVersion:   tls.VersionTLS12,
		},
	}
	s.args = func(port int) ([]string, error) {
		args := []string{
			"--port", "0",
			"--tls-port", strconv.Itoa(port),
			"--tls-cert-file", srvCert.CertFile,
			"--tls-key-file", srvCert.KeyFile,
			"--tls-ca-cert-file", o.CA.CertFile,
			"--tls-auth-clients", o.AuthClients,
		}
		if o.Protocols != "" {
			args = append(args, "--tls-protocols", o.Protocols)
		}
		return append(args, s.commonArgs()...), nil
	}
	if err := s.start(); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// lookBin finds a binary on PATH, skipping the test locally and failing it
// under CI=true when it is missing.
func lookBin(tb testing.TB, name, pkg string) string {
	tb.Helper()
	bin, err := exec.LookPath(name)
	if err == nil {
		return bin
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("redistest: %s not found on PATH (CI=true); install it with scripts/install-test-deps", name)
	}
	tb.Skip(fmt.Sprintf("redistest: %s not found on PATH; run scripts/install-test-deps (or apt-get install %s)", name, pkg))
	return ""
}
