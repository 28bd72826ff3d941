package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

var (
	guidRe    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	tenantRe  = regexp.MustCompile(`^[0-9a-zA-Z.-]+$`)
	logicalRe = regexp.MustCompile(`^[a-z][a-z0-9_]{1,49}$`)
	headerRe  = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`)
	apiVerRe  = regexp.MustCompile(`^\d+\.\d+$`)
)

// IsGUID reports whether s is a hyphenated GUID.
func IsGUID(s string) bool { return guidRe.MatchString(s) }

func portalKey(i int, s string) string { return fmt.Sprintf("portals[%d].%s", i, s) }

type validator struct {
	lines    map[string]int
	problems []Problem
}

// add records a problem at key, using the line of the key or of its nearest
// parent when the key itself is absent from the file.
func (v *validator) add(key, format string, args ...any) {
	line := 0
	for k := key; k != "" && line == 0; k = parentKey(k) {
		line = v.lines[k]
	}
	v.problems = append(v.problems, Problem{Key: key, Message: fmt.Sprintf(format, args...), Line: line})
}

func parentKey(k string) string {
	if i := strings.LastIndexAny(k, ".["); i > 0 {
		return k[:i]
	}
	return ""
}

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

func (c *Config) validate(opts Options, lines map[string]int) error {
	if lines == nil {
		lines = map[string]int{}
	}
	v := &validator{lines: lines}

	// server
	if _, _, err := net.SplitHostPort(c.Server.Addr); err != nil {
		v.add("server.addr", "must be host:port, e.g. \":8080\"")
	}
	if c.Server.PublicURL == "" {
		v.add("server.public_url", "is required (how Dataverse and browsers reach this server)")
	} else if !absURL(c.Server.PublicURL, "http", "https") {
		v.add("server.public_url", "must be an absolute http(s) URL")
	}
	if !oneOf(c.Server.Language, "en", "fr") {
		v.add("server.language", "must be one of en, fr")
	}
	for i, p := range c.Server.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			v.add(fmt.Sprintf("server.trusted_proxies[%d]", i), "must be an IP address or CIDR")
		}
	}
	if c.Server.SessionIdleTimeout <= 0 {
		v.add("server.session_idle_timeout", "must be greater than 0")
	}
	if c.Server.SessionLifetime < c.Server.SessionIdleTimeout {
		v.add("server.session_lifetime", "must be at least server.session_idle_timeout")
	}
	for key, n := range map[string]int{
		"server.rate_limits.code_lookups":    c.Server.RateLimits.CodeLookups,
		"server.rate_limits.redemptions":     c.Server.RateLimits.Redemptions,
		"server.rate_limits.sign_ins":        c.Server.RateLimits.SignIns,
		"server.rate_limits.registrations":   c.Server.RateLimits.Registrations,
		"server.rate_limits.password_resets": c.Server.RateLimits.PasswordReset,
	} {
		if n < 1 {
			v.add(key, "must be at least 1 (requests per minute)")
		}
	}

	// dataverse
	dv := c.Dataverse
	if dv.URL == "" {
		v.add("dataverse.url", "is required, e.g. https://contoso.crm.dynamics.com")
	} else if u, err := url.Parse(dv.URL); err != nil || u.Scheme != "https" || u.Host == "" || strings.Contains(u.Path, "/api/") {
		v.add("dataverse.url", "must be the organization's https URL without /api/data, e.g. https://contoso.crm.dynamics.com")
	}
	if !apiVerRe.MatchString(dv.APIVersion) {
		v.add("dataverse.api_version", "must look like 9.2")
	}
	if dv.Timeout <= 0 {
		v.add("dataverse.timeout", "must be greater than 0")
	}
	if dv.MaxRetries < 0 || dv.MaxRetries > 20 {
		v.add("dataverse.max_retries", "must be between 0 and 20")
	}
	if dv.MaxConcurrency < 0 || dv.MaxConcurrency > 52 {
		v.add("dataverse.max_concurrency", "must be between 0 (follow x-ms-dop-hint) and 52")
	}
	a := dv.Auth
	switch a.Method {
	case "client_secret", "client_certificate":
		if !tenantRe.MatchString(a.TenantID) {
			v.add("dataverse.auth.tenant_id", "is required for %s (a GUID or domain)", a.Method)
		}
		if !IsGUID(a.ClientID) {
			v.add("dataverse.auth.client_id", "must be a GUID (the app registration's application id)")
		}
		if a.Method == "client_secret" && a.ClientSecret == "" {
			v.add("dataverse.auth.client_secret", "is required for client_secret; use ${ENV_VAR} to keep it out of the file")
		}
		if a.Method == "client_certificate" && a.CertificatePath == "" {
			v.add("dataverse.auth.certificate_path", "is required for client_certificate (PEM or PFX file)")
		}
	case "managed_identity", "workload_identity", "default":
		if a.ClientID != "" && !IsGUID(a.ClientID) {
			v.add("dataverse.auth.client_id", "must be a GUID")
		}
	default:
		v.add("dataverse.auth.method", "must be one of client_secret, client_certificate, managed_identity, workload_identity, default")
	}
	if a.AuthorityHost != "" && !absURL(a.AuthorityHost, "https") {
		v.add("dataverse.auth.authority_host", "must be an https URL (empty = public cloud)")
	}

	// redis
	if c.Redis.URL == "" {
		if !opts.AllowEmbeddedRedis {
			v.add("redis.url", "is required (the embedded Redis is for `connector dev` only)")
		}
	} else if u, err := url.Parse(c.Redis.URL); err != nil || !oneOf(u.Scheme, "redis", "rediss", "unix") {
		v.add("redis.url", "must be a redis://, rediss:// or unix:// URL")
	}

	// intake
	in := c.Intake
	if !strings.HasPrefix(in.Webhook.Path, "/") || strings.HasPrefix(in.Webhook.Path, "/api/") {
		v.add("intake.webhook.path", "must start with / and not be under /api/")
	}
	if in.Webhook.Enabled {
		switch in.Webhook.Auth.Type {
		case "webhook_key":
		case "http_header", "query_string":
			if !headerRe.MatchString(in.Webhook.Auth.Name) {
				v.add("intake.webhook.auth.name", "is required for %s (the header or query parameter name)", in.Webhook.Auth.Type)
			}
		default:
			v.add("intake.webhook.auth.type", "must be one of webhook_key, http_header, query_string")
		}
		if len(in.Webhook.Auth.Value) < 16 {
			v.add("intake.webhook.auth.value", "must be a secret of at least 16 characters; use ${ENV_VAR}")
		}
	}
	if in.Webhook.MaxBodyBytes < 64<<10 {
		v.add("intake.webhook.max_body_bytes", "must be at least 65536 (Dataverse sends up to 256 KB)")
	}
	if in.Poll.Enabled {
		if _, err := cron.ParseStandard(in.Poll.Schedule); err != nil {
			v.add("intake.poll.schedule", "is not a valid cron spec (e.g. \"@every 1m\" or \"*/5 * * * *\"): %v", err)
		}
	}
	if !in.Webhook.Enabled && !in.Poll.Enabled {
		v.add("intake", "enable at least one of intake.webhook and intake.poll")
	}
	if in.Workers < 1 || in.Workers > 256 {
		v.add("intake.workers", "must be between 1 and 256")
	}
	if in.MaxAttempts < 1 {
		v.add("intake.max_attempts", "must be at least 1")
	}
	if in.Lease.D() < 10e9 {
		v.add("intake.lease", "must be at least 10s")
	}
	ct := in.Contact
	for key, col := range map[string]string{
		"intake.contact.status_attribute":     ct.StatusAttribute,
		"intake.contact.portal_attribute":     ct.PortalAttribute,
		"intake.contact.roles_attribute":      ct.RolesAttribute,
		"intake.contact.invited_on_attribute": ct.InvitedOnAttribute,
		"intake.contact.error_attribute":      ct.ErrorAttribute,
	} {
		if !logicalRe.MatchString(col) {
			v.add(key, "must be a column logical name (lowercase, e.g. new_portalinvitestatus)")
		}
	}
	seen := map[int]string{}
	for key, val := range map[string]int{
		"intake.contact.status.requested": ct.Status.Requested,
		"intake.contact.status.sent":      ct.Status.Sent,
		"intake.contact.status.failed":    ct.Status.Failed,
		"intake.contact.status.redeemed":  ct.Status.Redeemed,
	} {
		if other, dup := seen[val]; dup {
			a, b := min(key, other), max(key, other)
			v.add(b, "has the same option value as %s", a)
		}
		seen[val] = key
	}

	// identity
	id := c.Identity
	if !oneOf(id.PasswordHash, "aspnet-v3", "aspnet-v2") {
		v.add("identity.password_hash", "must be aspnet-v3 or aspnet-v2")
	}
	if id.PasswordPolicy.MinLength < 6 || id.PasswordPolicy.MinLength > 128 {
		v.add("identity.password_policy.min_length", "must be between 6 and 128")
	}
	if id.Lockout.Enabled {
		if id.Lockout.MaxFailedAttempts < 1 {
			v.add("identity.lockout.max_failed_attempts", "must be at least 1")
		}
		if id.Lockout.Duration <= 0 {
			v.add("identity.lockout.duration", "must be greater than 0")
		}
	}
	if len(id.TokenSecret) < 32 {
		v.add("identity.token_secret", "must be a random secret of at least 32 characters; use ${ENV_VAR}")
	}
	if id.TokenLifetime <= 0 {
		v.add("identity.token_lifetime", "must be greater than 0")
	}
	if id.ResetTokenLifetime <= 0 || id.ResetTokenLifetime.D() > 24*time.Hour {
		v.add("identity.reset_token_lifetime", "must be between 1s and 24h")
	}

	c.validateIdentity(v, opts)

	// portals
	if len(c.Portals) == 0 {
		v.add("portals", "at least one portal is required")
	}
	names := map[string]int{}
	for i, p := range c.Portals {
		k := func(s string) string { return portalKey(i, s) }
		switch {
		case strings.TrimSpace(p.Name) == "":
			v.add(k("name"), "is required")
		case len(p.Name) > 100:
			v.add(k("name"), "must be at most 100 characters")
		default:
			if j, dup := names[p.Name]; dup {
				v.add(k("name"), "duplicates portals[%d].name", j)
			}
			names[p.Name] = i
		}
		if !oneOf(p.DataModel, "enhanced", "standard") {
			v.add(k("data_model"), "must be enhanced or standard")
		}
		if !IsGUID(p.WebsiteID) {
			v.add(k("website_id"), "must be a GUID")
		}
		if !absURL(p.BaseURL, "http", "https") {
			v.add(k("base_url"), "must be an absolute http(s) URL (where invitees redeem)")
		}
		for j, r := range p.DefaultRoles {
			if strings.TrimSpace(r) == "" || strings.Contains(r, ",") {
				v.add(fmt.Sprintf("%s[%d]", k("default_roles"), j), "must be a web role name (not empty, no commas)")
			}
		}
		for j, r := range p.Roles {
			if strings.TrimSpace(r) == "" || strings.Contains(r, ",") {
				v.add(fmt.Sprintf("%s[%d]", k("roles"), j), "must be a web role name (not empty, no commas)")
			}
		}
		if p.Invitation.ExpiresAfter < 0 {
			v.add(k("invitation.expires_after"), "must not be negative (0 = never expires)")
		}
		if p.Invitation.MaxRedemptions < 1 {
			v.add(k("invitation.max_redemptions"), "must be at least 1")
		}
		if !oneOf(p.Invitation.CodeStorage, "hashed", "plain") {
			v.add(k("invitation.code_storage"), "must be hashed or plain")
		}
		for key, page := range map[string]string{k("pages.existing_user"): p.Pages.ExistingUser, k("pages.after_redeem"): p.Pages.AfterRedeem} {
			if !SafeRedirect(page) {
				v.add(key, "must be a site-relative path like /profile or an absolute http(s) URL")
			}
		}
		if p.Pages.Terms != "" && !absURL(p.Pages.Terms, "http", "https") && !SafeRedirect(p.Pages.Terms) {
			v.add(k("pages.terms"), "must be a URL")
		}
		switch s := p.Email.Sender; {
		case s == "initiating_user":
		case strings.HasPrefix(s, "systemuser:") && IsGUID(strings.TrimPrefix(s, "systemuser:")):
		case strings.HasPrefix(s, "queue:") && IsGUID(strings.TrimPrefix(s, "queue:")):
		default:
			v.add(k("email.sender"), "must be systemuser:<guid>, queue:<guid> or initiating_user")
		}
		if strings.TrimSpace(p.Email.Subject) == "" {
			v.add(k("email.subject"), "must not be empty")
		}
		for key, f := range map[string]string{k("email.template"): p.Email.Template, k("email.text_template"): p.Email.TextTemplate} {
			if f == "" {
				continue
			}
			if _, err := opts.ReadFile(f); err != nil {
				v.add(key, "cannot read template file: %v", err)
			}
		}
	}

	c.validateDelivery(v)
	c.validatePacing(v)
	c.validateCommands(v)
	c.validateLifecycle(v)
	c.validateTelemetry(v)
	c.validateRedis(v, opts)

	// api
	for i, key := range c.API.Keys {
		if len(key) < 24 {
			v.add(fmt.Sprintf("api.keys[%d]", i), "must be a random key of at least 24 characters; use ${ENV_VAR}")
		}
	}

	// log
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		v.add("log.level", "must be debug, info, warn or error")
	}
	if !oneOf(c.Log.Format, "json", "text") {
		v.add("log.format", "must be json or text")
	}

	if len(v.problems) == 0 {
		return nil
	}
	sortProblems(v.problems)
	return &Error{Problems: v.problems}
}

func sortProblems(p []Problem) {
	// stable by line then key, so output is deterministic whatever map order was
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && less(p[j], p[j-1]); j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

func less(a, b Problem) bool {
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Key < b.Key
}

func absURL(s string, schemes ...string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Host != "" && oneOf(u.Scheme, schemes...)
}

// SafeRedirect reports whether target is an acceptable configured redirect:
// a site-relative path (not protocol-relative) or an absolute http(s) URL.
func SafeRedirect(target string) bool {
	if absURL(target, "http", "https") {
		return true
	}
	return strings.HasPrefix(target, "/") && !strings.HasPrefix(target, "//") && !strings.HasPrefix(target, "/\\")
}

// redactURL hides a password in a URL such as redis://:secret@host:6379.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
