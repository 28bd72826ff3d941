package sts

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
)

func TestCA(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(ca.CertPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("CertPEM is not a PEM certificate")
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		t.Fatal("root is not a self-signed CA")
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("root key is %T, want ECDSA", root.PublicKey)
	}
	if d := root.NotAfter.Sub(root.NotBefore); d > caValidity+10*60e9 {
		t.Errorf("root valid for %v, want short-lived", d)
	}

	t.Run("server certificate", func(t *testing.T) {
		cert, err := ca.ServerCertificate("127.0.0.1", "::1", "localhost", "emulator.test")
		if err != nil {
			t.Fatal(err)
		}
		leaf := cert.Leaf
		if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
			t.Errorf("IP SANs = %v", leaf.IPAddresses)
		}
		if len(leaf.DNSNames) != 2 || leaf.DNSNames[0] != "localhost" || leaf.DNSNames[1] != "emulator.test" {
			t.Errorf("DNS SANs = %v", leaf.DNSNames)
		}
		for _, host := range []string{"127.0.0.1", "localhost", "emulator.test"} {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: ca.Pool()}); err != nil {
				t.Errorf("verify for %s: %v", host, err)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: x509.NewCertPool()}); err == nil {
			t.Error("leaf verified without its CA")
		}
		if leaf.NotAfter.After(root.NotAfter) {
			t.Error("leaf outlives its CA")
		}
	})

	t.Run("default hosts", func(t *testing.T) {
		cert, err := ca.ServerCertificate()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: ca.Pool()}); err != nil {
			t.Error(err)
		}
	})

	t.Run("client certificate", func(t *testing.T) {
		certPEM, keyPEM, err := ca.ClientCertificate("connector")
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := pair.PrivateKey.(*rsa.PrivateKey); !ok {
			t.Errorf("client key is %T, want RSA", pair.PrivateKey)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		if leaf.Subject.CommonName != "connector" {
			t.Errorf("CN = %q", leaf.Subject.CommonName)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("client cert does not chain to CA: %v", err)
		}
	})
}
