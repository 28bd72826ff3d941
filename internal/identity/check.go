package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// CheckStep is one line of a provider check.
type CheckStep struct {
	Name   string // discovery, issuer, jwks, token_endpoint_auth, end_session, redirect_uri
	OK     bool
	Detail string
}

// CheckReport is the outcome of Check, in order.
type CheckReport struct {
	Provider string
	Steps    []CheckStep
}

// OK reports whether every step passed.
func (r CheckReport) OK() bool {
	for _, s := range r.Steps {
		if !s.OK {
			return false
		}
	}
	return true
}

// Check verifies the provider as `connector check` reports it: the discovery
// document is reachable and names the configured issuer, the key set is
// readable and holds signing keys, the configured client authentication is
// offered, and which redirect URI the app registration must list. It always
// fetches afresh and, on success, refreshes the cached metadata.
func (p *Provider) Check(ctx context.Context, redirectURI string) CheckReport {
	r := CheckReport{Provider: p.cfg.Name}
	add := func(name string, ok bool, format string, args ...any) {
		r.Steps = append(r.Steps, CheckStep{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	m, doc, err := p.fetch(ctx)
	switch {
	case errors.Is(err, ErrDiscoveryIssuerMismatch):
		add("discovery", true, "fetched %s", p.discoveryURL())
		add("issuer", false, "the document names issuer %q but the configuration says %q; ID tokens would be refused", doc.Issuer, p.cfg.Issuer)
	case err != nil:
		add("discovery", false, "cannot use %s: %v", p.discoveryURL(), err)
	default:
		add("discovery", true, "fetched %s", p.discoveryURL())
		add("issuer", true, "issuer %s (stored as adx_identityprovidername)", m.issuer)
	}
	if err == nil {
		p.mu.Lock()
		p.meta = m
		p.mu.Unlock()
		n, kerr := p.countKeys(ctx, m.jwksURI)
		if kerr != nil {
			add("jwks", false, "cannot read %s: %v", m.jwksURI, kerr)
		} else {
			add("jwks", n > 0, "%d signing key(s) at %s", n, m.jwksURI)
		}
		method := string(p.cfg.TokenEndpointAuthMethod)
		offered := m.authMethods
		if len(offered) == 0 {
			offered = []string{string(AuthClientSecretBasic)} // the default of OpenID Connect Discovery §3
		}
		if slices.Contains(offered, method) {
			add("token_endpoint_auth", true, "%s is offered", method)
		} else {
			add("token_endpoint_auth", false, "%s is not among the offered methods %s", method, strings.Join(offered, ", "))
		}
		if m.endSession != "" {
			add("end_session", true, "sign-out also signs out at the provider (%s)", m.endSession)
		} else {
			add("end_session", true, "no end_session_endpoint: sign-out ends the portal session only")
		}
	}
	if cerr := checkRedirectURI(redirectURI); cerr != nil {
		add("redirect_uri", false, "%v", cerr)
	} else {
		add("redirect_uri", true, "register this redirect URI for client %s: %s", p.cfg.ClientID, redirectURI)
	}
	return r
}

// countKeys reads the key set and counts the keys usable for signatures.
func (p *Provider) countKeys(ctx context.Context, jwksURI string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.DiscoveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURI, nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return 0, fmt.Errorf("not a JWK set: %w", err)
	}
	n := 0
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if json.Unmarshal(raw, &k) != nil {
			continue // a key type go-jose does not know cannot verify anything here either
		}
		if k.Use == "" || k.Use == "sig" {
			n++
		}
	}
	return n, nil
}
