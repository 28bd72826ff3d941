package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/identity"
	"github.com/d365portal/connector/internal/portalweb"
)

// redirectURI is what a provider's app registration must list for it.
func redirectURI(c *config.Config, provider string) string {
	return strings.TrimRight(c.Server.PublicURL, "/") + portalweb.CallbackPath(provider)
}

// providerConfigs maps identity.providers onto the relying party's plain
// values, reading certificate and CA files.
func providerConfigs(c *config.Config) ([]identity.ProviderConfig, error) {
	out := make([]identity.ProviderConfig, 0, len(c.Identity.Providers))
	for i, p := range c.Identity.Providers {
		pc := identity.ProviderConfig{
			Name: p.Name, DisplayName: p.DisplayName, Type: identity.ProviderType(p.Type),
			Issuer: p.Issuer, Authority: p.Authority, ClientID: p.ClientID, ClientSecret: p.ClientSecret,
			TokenEndpointAuthMethod: identity.AuthMethod(p.TokenEndpointAuthMethod), Scopes: p.Scopes,
			ProviderKeyClaim: p.ProviderKeyClaim, AllowContactMappingWithEmail: p.AllowContactMappingWithEmail,
		}
		if len(p.Claims) > 0 {
			// The file maps column -> claim, as Power Pages' settings do; the
			// relying party reads claim -> column.
			pc.Claims = make(map[string]string, len(p.Claims))
			for col, claim := range p.Claims {
				pc.Claims[claim] = col
			}
		}
		if p.ClientCertificate != "" {
			b, err := os.ReadFile(p.ClientCertificate)
			if err != nil {
				return nil, fmt.Errorf("identity.providers[%d].client_certificate: %w", i, err)
			}
			pc.ClientCertificate = b
		}
		if p.CAFile != "" {
			b, err := os.ReadFile(p.CAFile)
			if err != nil {
				return nil, fmt.Errorf("identity.providers[%d].ca_file: %w", i, err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("identity.providers[%d].ca_file: no PEM certificate in %s", i, p.CAFile)
			}
			pc.RootCAs = pool
		}
		out = append(out, pc)
	}
	return out, nil
}

// newIdentity builds the providers; none is contacted until first used, so
// a provider that is down never stops the connector or local sign-in.
func newIdentity(c *config.Config, log *slog.Logger) (*identity.Registry, error) {
	if len(c.Identity.Providers) == 0 {
		return nil, nil
	}
	cfgs, err := providerConfigs(c)
	if err != nil {
		return nil, err
	}
	reg, err := identity.NewRegistry(cfgs, identity.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return reg, nil
}

// portalProviders is portalweb's view of portals[].identity_providers.
func portalProviders(c *config.Config) map[string][]string {
	out := map[string][]string{}
	for _, p := range c.Portals {
		if len(p.IdentityProviders) > 0 {
			out[p.Name] = p.IdentityProviders
		}
	}
	return out
}

// checkProviders is `connector check`'s part for identity.providers:
// discovery reachable and naming the configured issuer, the key set
// readable, the client authentication offered, and the redirect URI the app
// registration must list.
func checkProviders(ctx context.Context, cl *checklist, c *config.Config) {
	if len(c.Identity.Providers) == 0 {
		return
	}
	reg, err := newIdentity(c, slog.New(slog.DiscardHandler))
	if err != nil {
		cl.fail("fix identity.providers", "identity providers: %v", err)
		return
	}
	for _, p := range reg.Providers() {
		r := p.Check(ctx, redirectURI(c, p.Name()))
		for _, s := range r.Steps {
			switch {
			case s.OK:
				cl.ok("identity provider %q: %s: %s", p.Name(), s.Name, s.Detail)
			case s.Name == "redirect_uri" || s.Name == "end_session":
				cl.fail("see the detail", "identity provider %q: %s: %s", p.Name(), s.Name, s.Detail)
			default:
				cl.fail("check identity.providers["+p.Name()+"] issuer/authority, client_id and the provider's app registration (docs/ADMIN.md)",
					"identity provider %q: %s: %s", p.Name(), s.Name, s.Detail)
			}
		}
	}
}

// Demo sign-in of `connector dev`: the emulator's Entra ID endpoint as the
// provider "Continue with Microsoft", with the demo contacts as its users.
const (
	devProviderName = "microsoft"
	devClientID     = "5c3f8e21-7a4d-4b9e-8f16-2d0c9a7e4b53"
)

// addDevIdentity registers an app for the portal at the emulator's token
// service (its redirect URIs, optional claims and demo users) and adds it
// to c as an identity provider.
func addDevIdentity(c *config.Config, emu *emulator.Running, seed *emulator.Demo) {
	secret := randomSecret()
	svc := emu.STS()
	svc.AddSecretClient(devClientID, secret)
	svc.AddRedirectURI(devClientID, redirectURI(c, devProviderName))
	svc.AddRedirectURI(devClientID, strings.TrimRight(c.Server.PublicURL, "/")+"/login") // after sign-out
	svc.SetOptionalClaims(devClientID, "given_name", "family_name", "xms_edov")
	for _, id := range seed.ContactIDs {
		row, ok := emu.Row("contact", id)
		email, _ := row["emailaddress1"].(string)
		if !ok || email == "" || fmt.Sprint(row["statecode"]) == "1" {
			continue
		}
		svc.AddDemoUser(strings.TrimSpace(fmt.Sprint(row["firstname"], " ", row["lastname"])), email, "")
	}
	c.Identity.Providers = append(c.Identity.Providers, config.IdentityProvider{
		Name: devProviderName, DisplayName: "Microsoft", Type: "entra_id",
		Issuer:   strings.TrimRight(emu.OrgURL, "/") + "/" + emu.TenantID + "/v2.0",
		ClientID: devClientID, ClientSecret: secret, ProviderKeyClaim: "sub", CAFile: emu.CAFile,
	})
}
