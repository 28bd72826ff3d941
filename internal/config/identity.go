package config

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// providerNameRe is what identity.ProviderConfig accepts: the name appears
// in URLs (/login/external/<name>, /signin-oidc/<name>).
var providerNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ProviderTypes are the accepted identity.providers[].type values.
var ProviderTypes = []string{"entra_id", "entra_external_id", "azure_ad_b2c", "google", "oidc"}

// LocalLoginOn reports whether portals offer user names and passwords.
func (id Identity) LocalLoginOn() bool { return id.LocalLogin != "disabled" }

// PortalProviders returns the names of the providers portal p offers, in
// configuration order: its identity_providers, or every provider.
func (c *Config) PortalProviders(p Portal) []string {
	var out []string
	for _, ip := range c.Identity.Providers {
		if len(p.IdentityProviders) == 0 || contains(p.IdentityProviders, ip.Name) {
			out = append(out, ip.Name)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// validateIdentity checks identity.local_login, identity.providers and the
// portals' identity_providers.
func (c *Config) validateIdentity(v *validator, opts Options) {
	id := c.Identity
	if !oneOf(id.LocalLogin, "enabled", "disabled") {
		v.add("identity.local_login", "must be enabled or disabled")
	}
	names := map[string]int{}
	for i, p := range id.Providers {
		k := func(s string) string { return fmt.Sprintf("identity.providers[%d].%s", i, s) }
		switch {
		case !providerNameRe.MatchString(p.Name):
			v.add(k("name"), "must be 1-64 lower-case letters, digits, '-' or '_' (it appears in URLs)")
		default:
			if j, dup := names[p.Name]; dup {
				v.add(k("name"), "duplicates identity.providers[%d].name", j)
			}
			names[p.Name] = i
		}
		if len(p.DisplayName) > 100 {
			v.add(k("display_name"), "must be at most 100 characters")
		}
		if !oneOf(p.Type, ProviderTypes...) {
			v.add(k("type"), "must be one of %s", strings.Join(ProviderTypes, ", "))
		}
		if p.Issuer == "" && p.Authority == "" {
			v.add(k("issuer"), "is required (or authority): the issuer your provider's discovery document names")
		}
		for _, f := range []struct{ key, val string }{{"issuer", p.Issuer}, {"authority", p.Authority}} {
			if f.val == "" {
				continue
			}
			if u, err := url.Parse(f.val); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
				v.add(k(f.key), "must be an https URL without query or fragment")
			}
		}
		if strings.TrimSpace(p.ClientID) == "" {
			v.add(k("client_id"), "is required (the application id of the app registration)")
		}
		switch {
		case p.ClientSecret != "" && p.ClientCertificate != "":
			v.add(k("client_certificate"), "set either client_secret or client_certificate, not both")
		case p.ClientSecret == "" && p.ClientCertificate == "":
			v.add(k("client_secret"), "is required (or client_certificate); use ${ENV_VAR} to keep it out of the file")
		case p.ClientCertificate != "":
			if _, err := opts.ReadFile(p.ClientCertificate); err != nil {
				v.add(k("client_certificate"), "cannot read the certificate file: %v", err)
			}
		}
		switch p.TokenEndpointAuthMethod {
		case "":
		case "client_secret_basic", "client_secret_post":
			if p.ClientSecret == "" {
				v.add(k("token_endpoint_auth_method"), "%s needs client_secret", p.TokenEndpointAuthMethod)
			}
		case "private_key_jwt":
			if p.ClientCertificate == "" {
				v.add(k("token_endpoint_auth_method"), "private_key_jwt needs client_certificate")
			}
		default:
			v.add(k("token_endpoint_auth_method"), "must be client_secret_basic, client_secret_post or private_key_jwt")
		}
		for j, s := range p.Scopes {
			if s == "" || strings.ContainsAny(s, " \t,") {
				v.add(fmt.Sprintf("%s[%d]", k("scopes"), j), "must be one scope name without spaces")
			}
		}
		if !oneOf(p.ProviderKeyClaim, "sub", "oid") {
			v.add(k("provider_key_claim"), "must be sub or oid")
		}
		cols := make([]string, 0, len(p.Claims))
		for col := range p.Claims {
			cols = append(cols, col)
		}
		sort.Strings(cols)
		byClaim := map[string]string{}
		for _, col := range cols {
			claim := p.Claims[col]
			key := k("claims." + col)
			switch {
			case !logicalRe.MatchString(col):
				v.add(key, "must be a contact column logical name (lowercase, e.g. jobtitle)")
			case reservedColumn(col):
				v.add(key, "is set by the connector itself and cannot be mapped from a claim")
			}
			if strings.TrimSpace(claim) == "" {
				v.add(key, "must name an ID token claim, e.g. given_name")
			} else if other, dup := byClaim[claim]; dup {
				v.add(key, "claim %q is already mapped to %s", claim, other)
			}
			byClaim[claim] = col
		}
		if p.CAFile != "" {
			if _, err := opts.ReadFile(p.CAFile); err != nil {
				v.add(k("ca_file"), "cannot read the CA file: %v", err)
			}
		}
	}
	for i, p := range c.Portals {
		for j, name := range p.IdentityProviders {
			if _, ok := names[name]; !ok {
				v.add(fmt.Sprintf("%s[%d]", portalKey(i, "identity_providers"), j), "names no provider in identity.providers")
			}
		}
		if !id.LocalLoginOn() && len(c.PortalProviders(p)) == 0 {
			v.add(portalKey(i, "identity_providers"), "offers no identity provider while identity.local_login is disabled: nobody could sign in")
		}
	}
}

// reservedColumn reports the contact columns the connector writes itself
// when it links an external identity.
func reservedColumn(col string) bool {
	return strings.HasPrefix(col, "adx_identity_") || oneOf(col, "contactid", "statecode", "statuscode", "emailaddress1")
}
