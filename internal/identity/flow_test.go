package identity_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/d365portal/connector/internal/identity"
)

// rp builds a relying party for one of the OP's clients.
func rp(t testing.TB, o *testOP, clientID string, mut func(*identity.ProviderConfig, *identity.Options)) (*identity.Provider, *logBuf) {
	t.Helper()
	log, buf := newLogger()
	cfg := identity.ProviderConfig{
		Name:     "test",
		Type:     identity.TypeOIDC,
		Issuer:   o.issuer,
		ClientID: clientID,
		RootCAs:  o.pool,
		Claims:   map[string]string{"given_name": "firstname", "family_name": "lastname", "email": "emailaddress1"},
	}
	switch clientID {
	case "app-basic":
		cfg.ClientSecret = "secret-of-app-basic"
		cfg.TokenEndpointAuthMethod = identity.AuthClientSecretBasic
	case "app-post":
		cfg.ClientSecret = "secret-of-app-post"
		cfg.TokenEndpointAuthMethod = identity.AuthClientSecretPost
	case "app-jwt":
		bundle, pub, kid := clientCert(t)
		o.addClientKey(clientID, kid, pub)
		cfg.ClientCertificate = bundle
	}
	opts := identity.Options{Logger: log}
	if mut != nil {
		mut(&cfg, &opts)
	}
	p, err := identity.NewProvider(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, buf
}

// signIn runs a whole sign-in through the OP.
func signIn(t testing.TB, o *testOP, p *identity.Provider) (*identity.Identity, error) {
	t.Helper()
	si, err := p.Begin(context.Background(), redirect, nil)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	return p.Finish(context.Background(), si.Pending, o.mustAuthorize(si.URL))
}

func TestSignInWithEachTokenEndpointAuthMethod(t *testing.T) {
	o := startOP(t)
	for client, want := range map[string]string{"app-basic": "basic", "app-post": "post", "app-jwt": "jwt"} {
		t.Run(client, func(t *testing.T) {
			p, logs := rp(t, o, client, nil)
			si, err := p.Begin(context.Background(), redirect, nil)
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(si.URL)
			q := u.Query()
			sum := sha256.Sum256([]byte(si.Pending.Verifier))
			if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") != base64.RawURLEncoding.EncodeToString(sum[:]) {
				t.Errorf("PKCE parameters %q %q do not match the pending verifier", q.Get("code_challenge_method"), q.Get("code_challenge"))
			}
			if q.Get("state") != si.Pending.State || q.Get("nonce") != si.Pending.Nonce || q.Get("scope") != "openid profile email" ||
				q.Get("response_type") != "code" || q.Get("client_id") != client || q.Get("redirect_uri") != redirect {
				t.Errorf("authorization request %v", q)
			}
			if len(si.Pending.State) < 43 || len(si.Pending.Nonce) < 43 || len(si.Pending.Verifier) < 43 {
				t.Errorf("state, nonce and verifier must carry 256 bits: %d %d %d", len(si.Pending.State), len(si.Pending.Nonce), len(si.Pending.Verifier))
			}
			cb := o.mustAuthorize(si.URL)
			id, err := p.Finish(context.Background(), si.Pending, cb)
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			if got := o.lastTokenAuth(); got != want {
				t.Errorf("token request authenticated with %s, want %s", got, want)
			}
			if id.Issuer != o.issuer || id.ProviderKey != opUserID || id.Subject != opUserID || id.Provider != "test" {
				t.Errorf("identity %+v", id)
			}
			if id.Email != opEmail || !id.EmailVerified || id.GivenName != "Alice" || id.FamilyName != "Liddell" {
				t.Errorf("profile claims: %q %v %q %q", id.Email, id.EmailVerified, id.GivenName, id.FamilyName)
			}
			if id.Mapped["firstname"] != "Alice" || id.Mapped["lastname"] != "Liddell" || id.Mapped["emailaddress1"] != opEmail {
				t.Errorf("mapped claims %v", id.Mapped)
			}
			if id.IDToken == "" || !id.Expiry.After(time.Now()) {
				t.Errorf("ID token %q expiry %v", id.IDToken, id.Expiry)
			}
			assertNoSecrets(t, "log", logs.String(), id.IDToken, cb.Get("code"), si.Pending.Verifier)
		})
	}
}

func TestPKCEIsEnforcedByTheProvider(t *testing.T) {
	o := startOP(t)
	p, _ := rp(t, o, "app-basic", nil)
	si, err := p.Begin(context.Background(), redirect, nil)
	if err != nil {
		t.Fatal(err)
	}
	cb := o.mustAuthorize(si.URL)
	tampered := si.Pending
	tampered.Verifier = oauth2.GenerateVerifier()
	_, err = p.Finish(context.Background(), tampered, cb)
	var pe *identity.ProviderError
	if !errors.Is(err, identity.ErrCodeRejected) || !errors.As(err, &pe) || pe.Code != "invalid_grant" {
		t.Fatalf("Finish with another verifier = %v, want ErrCodeRejected (invalid_grant)", err)
	}
}

func TestKeyRotationAtTheProvider(t *testing.T) {
	o := startOP(t)
	p, _ := rp(t, o, "app-basic", nil)
	kidOf := func(id *identity.Identity) string {
		jws, err := jose.ParseSigned(id.IDToken, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		return jws.Signatures[0].Header.KeyID
	}
	id, err := signIn(t, o, p)
	if err != nil || kidOf(id) != "key-1" {
		t.Fatalf("before rotation: %v", err)
	}
	if _, err := signIn(t, o, p); err != nil {
		t.Fatalf("second sign-in with cached keys: %v", err)
	}
	hits := o.keyHits.Load()
	if hits != 1 {
		t.Errorf("key set fetched %d times before rotation, want once (cached)", hits)
	}
	o.rotate("key-2") // key-1 leaves the key set
	id, err = signIn(t, o, p)
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if kidOf(id) != "key-2" {
		t.Errorf("token signed with %s, want key-2", kidOf(id))
	}
	if o.keyHits.Load() != hits+1 {
		t.Errorf("key set fetched %d more times after rotation, want once", o.keyHits.Load()-hits)
	}
}

func TestProviderErrorResponses(t *testing.T) {
	o := startOP(t)
	p, logs := rp(t, o, "app-basic", nil)
	t.Run("access_denied", func(t *testing.T) {
		si, _ := p.Begin(context.Background(), redirect, nil)
		cb, err := o.authorize(si.URL, true)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Finish(context.Background(), si.Pending, cb)
		var pe *identity.ProviderError
		if !errors.Is(err, identity.ErrAccessDenied) || !errors.As(err, &pe) || pe.Code != "access_denied" || pe.Description != "the user cancelled" {
			t.Fatalf("Finish = %v, want ErrAccessDenied", err)
		}
	})
	t.Run("login_required", func(t *testing.T) {
		si, err := p.Begin(context.Background(), redirect, &identity.BeginOptions{Prompt: "none", LoginHint: opUser})
		if err != nil {
			t.Fatal(err)
		}
		if u, _ := url.Parse(si.URL); u.Query().Get("prompt") != "none" || u.Query().Get("login_hint") != opUser {
			t.Fatalf("prompt/login_hint missing from %s", si.URL)
		}
		cb := o.mustAuthorize(si.URL)
		if _, err = p.Finish(context.Background(), si.Pending, cb); !errors.Is(err, identity.ErrLoginRequired) {
			t.Fatalf("Finish = %v, want ErrLoginRequired", err)
		}
	})
	if !strings.Contains(logs.String(), "sign-in refused") {
		t.Error("refusals are not logged")
	}
}

func TestStateAndPendingChecks(t *testing.T) {
	o := startOP(t)
	var now time.Time
	var mu sync.Mutex
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		if now.IsZero() {
			return time.Now()
		}
		return now
	}
	p, _ := rp(t, o, "app-basic", func(_ *identity.ProviderConfig, opts *identity.Options) { opts.Now = clock })
	start := func() (identity.Pending, url.Values) {
		si, err := p.Begin(context.Background(), redirect, nil)
		if err != nil {
			t.Fatal(err)
		}
		return si.Pending, o.mustAuthorize(si.URL)
	}
	with := func(q url.Values, k, v string) url.Values {
		c := url.Values{}
		for kk, vv := range q {
			c[kk] = vv
		}
		if v == "" {
			c.Del(k)
		} else {
			c.Set(k, v)
		}
		return c
	}
	pd, cb := start()
	for name, tt := range map[string]struct {
		pending identity.Pending
		cb      url.Values
		want    error
	}{
		"wrong state":          {pd, with(cb, "state", "forged"), identity.ErrStateMismatch},
		"missing state":        {pd, with(cb, "state", ""), identity.ErrStateMismatch},
		"nothing pending":      {identity.Pending{}, cb, identity.ErrNoPendingSignIn},
		"pending of another":   {func() identity.Pending { x := pd; x.Provider = "other"; return x }(), cb, identity.ErrNoPendingSignIn},
		"no code and no error": {pd, with(cb, "code", ""), identity.ErrMissingCode},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := p.Finish(context.Background(), tt.pending, tt.cb)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Finish = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("reused state", func(t *testing.T) {
		pd, cb := start()
		if _, err := p.Finish(context.Background(), pd, cb); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Finish(context.Background(), pd, cb); !errors.Is(err, identity.ErrStateReused) {
			t.Fatalf("second Finish = %v, want ErrStateReused", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		pd, cb := start()
		mu.Lock()
		now = time.Now().Add(10*time.Minute + time.Second)
		mu.Unlock()
		defer func() { mu.Lock(); now = time.Time{}; mu.Unlock() }()
		if _, err := p.Finish(context.Background(), pd, cb); !errors.Is(err, identity.ErrSignInExpired) {
			t.Fatalf("Finish = %v, want ErrSignInExpired", err)
		}
	})
}

// The per-process guard cannot see another replica; the provider's
// single-use code still refuses the replay.
func TestReplayedCodeIsRefusedByTheProvider(t *testing.T) {
	o := startOP(t)
	replicaA, _ := rp(t, o, "app-post", nil)
	replicaB, _ := rp(t, o, "app-post", nil)
	si, err := replicaA.Begin(context.Background(), redirect, nil)
	if err != nil {
		t.Fatal(err)
	}
	cb := o.mustAuthorize(si.URL)
	if _, err := replicaA.Finish(context.Background(), si.Pending, cb); err != nil {
		t.Fatal(err)
	}
	_, err = replicaB.Finish(context.Background(), si.Pending, cb)
	if !errors.Is(err, identity.ErrCodeRejected) {
		t.Fatalf("replayed code = %v, want ErrCodeRejected", err)
	}
}

func TestWrongNonce(t *testing.T) {
	o := startOP(t)
	p, _ := rp(t, o, "app-basic", nil)
	si, _ := p.Begin(context.Background(), redirect, nil)
	cb := o.mustAuthorize(si.URL)
	pd := si.Pending
	pd.Nonce = "a-nonce-from-another-session"
	if _, err := p.Finish(context.Background(), pd, cb); !errors.Is(err, identity.ErrNonceMismatch) {
		t.Fatalf("Finish = %v, want ErrNonceMismatch", err)
	}
}

func TestEndSession(t *testing.T) {
	o := startOP(t)
	p, _ := rp(t, o, "app-basic", nil)
	id, err := signIn(t, o, p)
	if err != nil {
		t.Fatal(err)
	}
	u, err := p.EndSessionURL(context.Background(), id.IDToken, afterOut, "bye")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, o.issuer+"/end_session?") {
		t.Fatalf("end session URL %s", u)
	}
	loc, err := o.follow(u)
	if err != nil {
		t.Fatal(err)
	}
	if loc.String() != afterOut+"?state=bye" {
		t.Fatalf("provider sent the browser to %s, want %s?state=bye", loc, afterOut)
	}
}

func TestCheckAgainstProvider(t *testing.T) {
	o := startOP(t)
	for _, client := range []string{"app-basic", "app-jwt"} {
		p, _ := rp(t, o, client, nil)
		r := p.Check(context.Background(), redirect)
		if !r.OK() {
			t.Fatalf("%s: check failed: %+v", client, r.Steps)
		}
		names := []string{}
		for _, s := range r.Steps {
			names = append(names, s.Name)
		}
		if got := strings.Join(names, ","); got != "discovery,issuer,jwks,token_endpoint_auth,end_session,redirect_uri" {
			t.Errorf("steps %s", got)
		}
		if !strings.Contains(r.Steps[2].Detail, "1 signing key") || !strings.Contains(r.Steps[5].Detail, redirect) {
			t.Errorf("details %+v", r.Steps)
		}
	}
}

func TestConcurrentSignIns(t *testing.T) {
	o := startOP(t)
	p, _ := rp(t, o, "app-basic", nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			si, err := p.Begin(context.Background(), redirect, nil)
			if err != nil {
				errs <- err
				return
			}
			cb, err := o.authorize(si.URL, false)
			if err != nil {
				errs <- err
				return
			}
			if _, err := p.Finish(context.Background(), si.Pending, cb); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
