package sts

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// caValidity keeps the throwaway root short-lived: it only has to outlive one
// test run or one `connector emulator` session, and a leaked key soon stops mattering.
const caValidity = 7 * 24 * time.Hour

// CA is a throwaway certificate authority for the emulator's TLS listener and
// for client-certificate credentials in tests. Nothing it signs is trusted
// unless a client is handed CertPEM or Pool explicitly.
type CA struct {
	CertPEM []byte // the self-signed root, PEM encoded

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA creates a self-signed ECDSA P-256 root valid for a week.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sts.NewCA: generate key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, fmt.Errorf("sts.NewCA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Dataverse Emulator Test CA", Organization: []string{"Dataverse Emulator"}},
		NotBefore:             now.Add(-5 * time.Minute), // tolerate small clock differences
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sts.NewCA: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("sts.NewCA: parse certificate: %w", err)
	}
	return &CA{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		cert:    cert,
		key:     key,
	}, nil
}

// Pool returns a fresh pool holding only this CA, for clients that must trust
// the emulator and nothing else.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// ServerCertificate issues a TLS server certificate for hosts: IP addresses
// become IP SANs, anything else a DNS SAN. With no hosts it covers 127.0.0.1,
// ::1 and localhost.
func (ca *CA) ServerCertificate(hosts ...string) (tls.Certificate, error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sts.ServerCertificate: generate key: %w", err)
	}
	tmpl, err := ca.leafTemplate(hosts[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sts.ServerCertificate: %w", err)
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, leaf, err := ca.sign(tmpl, &key.PublicKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sts.ServerCertificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ClientCertificate issues a client certificate with an RSA key, because
// azidentity signs its client assertions with PS256 (RS256 for ADFS) and so
// cannot use an ECDSA key. The key is returned as PKCS#8 PEM, which
// azidentity.ParseCertificates reads.
func (ca *CA) ClientCertificate(cn string) (certPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("sts.ClientCertificate: generate key: %w", err)
	}
	tmpl, err := ca.leafTemplate(cn)
	if err != nil {
		return nil, nil, fmt.Errorf("sts.ClientCertificate: %w", err)
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	der, _, err := ca.sign(tmpl, &key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sts.ClientCertificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("sts.ClientCertificate: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), nil
}

func (ca *CA) leafTemplate(cn string) (*x509.Certificate, error) {
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     ca.cert.NotAfter, // a leaf must not outlive its issuer
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}, nil
}

func (ca *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, *x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	return der, leaf, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n, nil
}
