package dataverse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// AuthConfig selects and configures the Entra ID credential.
type AuthConfig struct {
	// Method is one of client_secret, client_certificate, managed_identity,
	// workload_identity or default (DefaultAzureCredential's chain).
	Method string
	// TenantID and ClientID identify the app registration. Managed identity
	// uses ClientID as a user-assigned identity's client id ("" = system-assigned).
	TenantID, ClientID string
	ClientSecret       string // client_secret
	// CertificatePath is a PEM or PFX file holding the certificate and its
	// private key (client_certificate); CertificatePassword decrypts a PFX.
	// PFX files must use the legacy SHA-1/3DES encoding (openssl pkcs12
	// -export -legacy), the only one azidentity's decoder reads.
	CertificatePath, CertificatePassword string
	// AuthorityHost overrides the Entra ID authority, e.g.
	// https://login.microsoftonline.us/ or a local STS; https only.
	AuthorityHost string
	// DisableInstanceDiscovery skips Entra instance metadata discovery; needed
	// for private or local authorities.
	DisableInstanceDiscovery bool
	// TokenFilePath is the federated token file for workload_identity; default
	// $AZURE_FEDERATED_TOKEN_FILE.
	TokenFilePath string
}

// NewCredential builds the azidentity credential for a.Method. hc, when not
// nil, is the credential's HTTP transport (so a private CA applies to the
// token endpoint too). Tokens are cached and refreshed by azidentity.
// It returns an error for an unknown method, a missing required field or an
// unreadable certificate.
func NewCredential(a AuthConfig, hc *http.Client) (azcore.TokenCredential, error) {
	const op = "dataverse: credential"
	co := azcore.ClientOptions{}
	if hc != nil {
		co.Transport = hc
	}
	if a.AuthorityHost != "" {
		co.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: a.AuthorityHost}
	}
	need := func(fields ...string) error {
		var missing []string
		vals := map[string]string{"tenant_id": a.TenantID, "client_id": a.ClientID, "client_secret": a.ClientSecret, "certificate_path": a.CertificatePath}
		for _, f := range fields {
			if vals[f] == "" {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s: method %s needs %v", op, a.Method, missing)
		}
		return nil
	}
	var (
		cred azcore.TokenCredential
		err  error
	)
	switch a.Method {
	case "client_secret":
		if err := need("tenant_id", "client_id", "client_secret"); err != nil {
			return nil, err
		}
		cred, err = azidentity.NewClientSecretCredential(a.TenantID, a.ClientID, a.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: a.DisableInstanceDiscovery})
	case "client_certificate":
		if err := need("tenant_id", "client_id", "certificate_path"); err != nil {
			return nil, err
		}
		data, rerr := os.ReadFile(a.CertificatePath)
		if rerr != nil {
			return nil, fmt.Errorf("%s: %w", op, rerr)
		}
		var pw []byte
		if a.CertificatePassword != "" {
			pw = []byte(a.CertificatePassword)
		}
		certs, key, perr := azidentity.ParseCertificates(data, pw)
		if perr != nil {
			return nil, fmt.Errorf("%s: parse %s: %w", op, a.CertificatePath, perr)
		}
		cred, err = azidentity.NewClientCertificateCredential(a.TenantID, a.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: a.DisableInstanceDiscovery})
	case "managed_identity":
		o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if a.ClientID != "" {
			o.ID = azidentity.ClientID(a.ClientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(o)
	case "workload_identity":
		cred, err = azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: co, ClientID: a.ClientID, TenantID: a.TenantID, TokenFilePath: a.TokenFilePath,
			DisableInstanceDiscovery: a.DisableInstanceDiscovery,
		})
	case "default", "":
		cred, err = azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions: co, TenantID: a.TenantID, DisableInstanceDiscovery: a.DisableInstanceDiscovery,
		})
	default:
		return nil, fmt.Errorf("%s: unknown method %q (want client_secret, client_certificate, managed_identity, workload_identity or default)", op, a.Method)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", op, a.Method, err)
	}
	return cred, nil
}

// NewHTTPClient returns the client to share for all Dataverse traffic: the
// system roots (SSL_CERT_FILE and SSL_CERT_DIR apply) plus the PEM
// certificates in caFile ("" = none), TLS 1.2+, no cookie jar (so the
// affinity cookie is dropped and requests spread across the environment's
// servers), and a pool sized for parallel work. Verification cannot be
// turned off. It fails when caFile is unreadable or holds no certificate.
func NewHTTPClient(caFile string) (*http.Client, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("dataverse: ca file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("dataverse: ca file %s: no PEM certificate found", caFile)
		}
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   maxDOP + 12, // the default of 2 would churn connections under parallel load
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	// Timeouts are per attempt through the request context (Config.Timeout),
	// so the client itself has none.
	return &http.Client{Transport: tr}, nil
}

// tokenSource caches the bearer token and refreshes it ahead of expiry with a
// single flight: while one goroutine refreshes, the rest keep using the still
// valid token; a failed early refresh is only an error once the token expires.
type tokenSource struct {
	cred   azcore.TokenCredential
	scopes []string
	now    func() time.Time

	mu         sync.Mutex
	tok        azcore.AccessToken
	refreshing bool
	wait       chan struct{} // closed when a blocking fetch finishes
	lastErr    error
}

const (
	tokenRefreshEarly = 5 * time.Minute
	tokenMinValidity  = 30 * time.Second
)

func newTokenSource(cred azcore.TokenCredential, scope string, now func() time.Time) *tokenSource {
	return &tokenSource{cred: cred, scopes: []string{scope}, now: now}
}

func (t *tokenSource) token(ctx context.Context) (string, error) {
	t.mu.Lock()
	now := t.now()
	if t.tok.Token != "" && now.Before(t.tok.ExpiresOn.Add(-tokenMinValidity)) {
		if now.After(t.tok.ExpiresOn.Add(-tokenRefreshEarly)) && !t.refreshing {
			t.refreshing = true
			go t.refresh(context.WithoutCancel(ctx))
		}
		tok := t.tok.Token
		t.mu.Unlock()
		return tok, nil
	}
	if t.wait == nil {
		t.wait = make(chan struct{})
		go t.fetch(context.WithoutCancel(ctx), t.wait)
	}
	ch := t.wait
	t.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok.Token != "" && t.now().Before(t.tok.ExpiresOn) {
		return t.tok.Token, nil
	}
	if t.lastErr != nil {
		return "", t.lastErr
	}
	return "", errors.New("no token")
}

func (t *tokenSource) get(ctx context.Context) (azcore.AccessToken, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return t.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: t.scopes})
}

func (t *tokenSource) refresh(ctx context.Context) {
	tok, err := t.get(ctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refreshing = false
	if err == nil {
		t.tok = tok
	}
}

func (t *tokenSource) fetch(ctx context.Context, done chan struct{}) {
	tok, err := t.get(ctx)
	t.mu.Lock()
	if err == nil {
		t.tok, t.lastErr = tok, nil
	} else {
		t.lastErr = err
	}
	t.wait = nil
	t.mu.Unlock()
	close(done)
}

// expire drops the cached token after a 401 so the next call fetches anew.
func (t *tokenSource) expire() {
	t.mu.Lock()
	t.tok = azcore.AccessToken{}
	t.mu.Unlock()
}
