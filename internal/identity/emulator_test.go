package identity_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"golang.org/x/oauth2"

	"github.com/d365portal/connector/internal/dataverse/emulator/sts"
	"github.com/d365portal/connector/internal/identity"
)

// These tests sign in against the Dataverse emulator's Entra ID endpoint,
// the provider `connector dev` offers as "Continue with Microsoft".

const (
	emuTenant = "8a3c1e52-9f0b-4d6e-a1c7-2b5f9e0d4c31"
	emuClient = "2e7b9c41-5a3d-4f8e-b6c2-9d1a0f4e7b35"
	emuSecret = "portal~secret.value"
	adaOID    = "3f6c2a1e-8b4d-4e7a-9c15-0d2e6f8a9b71"
)

type emuEnv struct {
	t       *testing.T
	svc     *sts.Service
	ca      *sts.CA
	issuer  string
	browser *http.Client
}

func startEmulator(t *testing.T) *emuEnv {
	t.Helper()
	svc := sts.New(sts.Options{TenantID: emuTenant})
	svc.AddSecretClient(emuClient, emuSecret)
	svc.AddRedirectURI(emuClient, redirect)
	svc.AddRedirectURI(emuClient, afterOut)
	svc.AddDemoUser("Ada Lovelace", "ada@contoso.example", adaOID)
	svc.AddDemoUser("Grace Hopper", "grace@contoso.example", "")
	ca, err := sts.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(svc)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	browser := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: tlsConfig(ca.Pool())},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(browser.CloseIdleConnections)
	return &emuEnv{t: t, svc: svc, ca: ca, issuer: srv.URL + "/" + emuTenant + "/v2.0", browser: browser}
}

func (e *emuEnv) provider(mut func(*identity.ProviderConfig)) *identity.Provider {
	e.t.Helper()
	cfg := identity.ProviderConfig{
		Name: "entra", DisplayName: "Microsoft", Type: identity.TypeEntraID,
		Issuer: e.issuer, ClientID: emuClient, ClientSecret: emuSecret, RootCAs: e.ca.Pool(),
	}
	if mut != nil {
		mut(&cfg)
	}
	p, err := identity.NewProvider(cfg, identity.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// pick opens the authorization URL in the "browser", reads the sign-in page
// and presses the button whose text contains label, returning the redirect.
func (e *emuEnv) pick(authURL, label string) (*url.URL, error) {
	resp, err := e.browser.Get(authURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if loc, err := resp.Location(); err == nil {
			return loc, nil // answered without a page (prompt=none)
		}
		return nil, fmt.Errorf("sign-in page: status %d", resp.StatusCode)
	}
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		return nil, err
	}
	form := doc.Find("form[method=post]")
	action, _ := form.Attr("action")
	values := url.Values{}
	form.Find("input[type=hidden]").Each(func(_ int, s *goquery.Selection) {
		values.Set(s.AttrOr("name", ""), s.AttrOr("value", ""))
	})
	button := form.Find("button").FilterFunction(func(_ int, s *goquery.Selection) bool { return strings.Contains(s.Text(), label) })
	if button.Length() != 1 {
		return nil, fmt.Errorf("no single button %q on the sign-in page", label)
	}
	values.Set(button.AttrOr("name", ""), button.AttrOr("value", ""))
	target, err := resp.Request.URL.Parse(action)
	if err != nil {
		return nil, err
	}
	post, err := e.browser.PostForm(target.String(), values)
	if err != nil {
		return nil, err
	}
	post.Body.Close()
	return post.Location()
}

func (e *emuEnv) signIn(p *identity.Provider, label string) (*identity.Identity, error) {
	e.t.Helper()
	si, err := p.Begin(context.Background(), redirect, nil)
	if err != nil {
		e.t.Fatalf("Begin: %v", err)
	}
	loc, err := e.pick(si.URL, label)
	if err != nil {
		e.t.Fatal(err)
	}
	cb, err := callback(loc)
	if err != nil {
		e.t.Fatal(err)
	}
	return p.Finish(context.Background(), si.Pending, cb)
}

func TestEmulatorSignInEndToEnd(t *testing.T) {
	e := startEmulator(t)
	p := e.provider(nil)
	id, err := e.signIn(p, "Ada Lovelace")
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	if id.Issuer != e.issuer || id.TenantID != emuTenant || id.ObjectID != adaOID {
		t.Errorf("issuer %q tid %q oid %q", id.Issuer, id.TenantID, id.ObjectID)
	}
	if id.ProviderKey != id.Subject || len(id.Subject) != 43 || id.Subject == adaOID {
		t.Errorf("provider key %q should be the pairwise sub", id.ProviderKey)
	}
	if id.Email != "ada@contoso.example" || id.EmailVerified || id.Name != "Ada Lovelace" || id.PreferredUsername != "ada@contoso.example" {
		t.Errorf("profile %+v", id)
	}

	// The same person returns with the same key; another person has another.
	again, err := e.signIn(p, "Ada Lovelace")
	if err != nil || again.ProviderKey != id.ProviderKey {
		t.Fatalf("returning sign-in: %v, key %q vs %q", err, again.ProviderKey, id.ProviderKey)
	}
	grace, err := e.signIn(p, "Grace Hopper")
	if err != nil || grace.ProviderKey == id.ProviderKey {
		t.Fatalf("second user: %v", err)
	}

	// With the optional claim xms_edov the email counts as verified, and
	// the oid can be the provider key, as Power Pages' built-in Entra ID.
	e.svc.SetOptionalClaims(emuClient, "xms_edov", "given_name", "family_name")
	byOID := e.provider(func(c *identity.ProviderConfig) { c.ProviderKeyClaim = "oid" })
	id2, err := e.signIn(byOID, "Ada Lovelace")
	if err != nil {
		t.Fatal(err)
	}
	if id2.ProviderKey != adaOID || !id2.EmailVerified || id2.GivenName != "Ada" || id2.FamilyName != "Lovelace" {
		t.Errorf("oid-keyed identity %+v", id2)
	}

	if r := p.Check(context.Background(), redirect); !r.OK() {
		t.Errorf("check against the emulator: %+v", r.Steps)
	}
}

func TestEmulatorPrivateKeyJWT(t *testing.T) {
	e := startEmulator(t)
	certPEM, keyPEM, err := e.ca.ClientCertificate("portal connector")
	if err != nil {
		t.Fatal(err)
	}
	const certClient = "6d0e3f72-1b8a-4c5d-9e2f-7a4b1c8d0e59"
	certs, err := parseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.AddCertificateClient(certClient, certs)
	e.svc.AddRedirectURI(certClient, redirect)
	p := e.provider(func(c *identity.ProviderConfig) {
		c.ClientID = certClient
		c.ClientSecret = ""
		c.ClientCertificate = append(certPEM, keyPEM...)
	})
	if p.Config().TokenEndpointAuthMethod != identity.AuthPrivateKeyJWT {
		t.Fatalf("auth method %s", p.Config().TokenEndpointAuthMethod)
	}
	if _, err := e.signIn(p, "Ada Lovelace"); err != nil {
		t.Fatalf("sign-in with a certificate: %v", err)
	}
	// A certificate the app registration does not hold is refused.
	otherCert, otherKey, _ := e.ca.ClientCertificate("intruder")
	intruder := e.provider(func(c *identity.ProviderConfig) {
		c.ClientID = certClient
		c.ClientSecret = ""
		c.ClientCertificate = append(otherCert, otherKey...)
	})
	if _, err := e.signIn(intruder, "Ada Lovelace"); !errors.Is(err, identity.ErrClientRejected) {
		t.Fatalf("unregistered certificate = %v, want ErrClientRejected", err)
	}
}

func TestEmulatorKeyRotationAndSignOut(t *testing.T) {
	e := startEmulator(t)
	p := e.provider(nil)
	if _, err := e.signIn(p, "Ada Lovelace"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RotateKey(); err != nil {
		t.Fatal(err)
	}
	id, err := e.signIn(p, "Ada Lovelace")
	if err != nil {
		t.Fatalf("after the emulator rotated its key: %v", err)
	}
	u, err := p.EndSessionURL(context.Background(), id.IDToken, afterOut, "bye")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.browser.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != afterOut+"?state=bye" {
		t.Fatalf("sign-out: status %d location %q", resp.StatusCode, loc)
	}
}

func TestEmulatorRefusals(t *testing.T) {
	e := startEmulator(t)
	p := e.provider(nil)
	begin := func(o *identity.BeginOptions) identity.SignIn {
		si, err := p.Begin(context.Background(), redirect, o)
		if err != nil {
			t.Fatal(err)
		}
		return si
	}
	t.Run("cancel", func(t *testing.T) {
		si := begin(nil)
		loc, err := e.pick(si.URL, "Cancel")
		if err != nil {
			t.Fatal(err)
		}
		cb, _ := callback(loc)
		if _, err := p.Finish(context.Background(), si.Pending, cb); !errors.Is(err, identity.ErrAccessDenied) {
			t.Fatalf("Finish = %v, want ErrAccessDenied", err)
		}
	})
	t.Run("prompt none", func(t *testing.T) {
		si := begin(&identity.BeginOptions{Prompt: "none"})
		loc, err := e.pick(si.URL, "")
		if err != nil {
			t.Fatal(err)
		}
		cb, _ := callback(loc)
		if _, err := p.Finish(context.Background(), si.Pending, cb); !errors.Is(err, identity.ErrLoginRequired) {
			t.Fatalf("Finish = %v, want ErrLoginRequired", err)
		}
	})
	t.Run("replayed code", func(t *testing.T) {
		si := begin(nil)
		loc, err := e.pick(si.URL, "Ada Lovelace")
		if err != nil {
			t.Fatal(err)
		}
		cb, _ := callback(loc)
		if _, err := p.Finish(context.Background(), si.Pending, cb); err != nil {
			t.Fatal(err)
		}
		replica := e.provider(nil)
		_, err = replica.Finish(context.Background(), si.Pending, cb)
		var pe *identity.ProviderError
		if !errors.Is(err, identity.ErrCodeRejected) || !errors.As(err, &pe) || !strings.Contains(pe.Description, "AADSTS54005") {
			t.Fatalf("replay = %v, want ErrCodeRejected with AADSTS54005", err)
		}
	})
	t.Run("wrong PKCE verifier", func(t *testing.T) {
		si := begin(nil)
		loc, err := e.pick(si.URL, "Ada Lovelace")
		if err != nil {
			t.Fatal(err)
		}
		cb, _ := callback(loc)
		pd := si.Pending
		pd.Verifier = oauth2.GenerateVerifier()
		if _, err := p.Finish(context.Background(), pd, cb); !errors.Is(err, identity.ErrCodeRejected) {
			t.Fatalf("Finish = %v, want ErrCodeRejected", err)
		}
	})
	t.Run("wrong nonce", func(t *testing.T) {
		si := begin(nil)
		loc, err := e.pick(si.URL, "Ada Lovelace")
		if err != nil {
			t.Fatal(err)
		}
		cb, _ := callback(loc)
		pd := si.Pending
		pd.Nonce = "nonce-of-another-browser"
		if _, err := p.Finish(context.Background(), pd, cb); !errors.Is(err, identity.ErrNonceMismatch) {
			t.Fatalf("Finish = %v, want ErrNonceMismatch", err)
		}
	})
	t.Run("client of another tenant's issuer", func(t *testing.T) {
		wrong := e.provider(func(c *identity.ProviderConfig) { c.Issuer = strings.Replace(e.issuer, emuTenant, "common", 1) })
		if _, err := wrong.Begin(context.Background(), redirect, nil); !errors.Is(err, identity.ErrDiscoveryFailed) {
			t.Fatalf("Begin against an unknown tenant = %v, want ErrDiscoveryFailed", err)
		}
	})
}
