package config

import (
	"fmt"
	"time"
)

// Defaults of the keys an admin most often leaves out. They are applied only
// to keys absent from the file, so an explicit false or 0 is kept.
const (
	DefaultAddr          = ":8080"
	DefaultAPIVersion    = "9.2"
	DefaultWebhookPath   = "/hooks/dataverse"
	DefaultPollSchedule  = "@every 1m"
	DefaultKeyPrefix     = "pinv:"
	DefaultStatusColumn  = "pinv_portalinvitestatus"
	DefaultPortalColumn  = "pinv_portalname"
	DefaultRolesColumn   = "pinv_portalroles"
	DefaultInvitedColumn = "pinv_lastinvitedon"
	DefaultErrorColumn   = "pinv_lastinviteerror"
	StatusRequested      = 100000000
	StatusSent           = 100000001
	StatusFailed         = 100000002
	StatusRedeemed       = 100000003
)

// Default returns a configuration with every default applied and no portals;
// `connector dev` starts from it.
func Default() *Config {
	c := &Config{}
	c.applyDefaults(map[string]bool{})
	return c
}

func (c *Config) applyDefaults(present map[string]bool) {
	set := func(key string) bool { return present[key] }
	str := func(p *string, key, v string) {
		if !set(key) && *p == "" {
			*p = v
		}
	}
	num := func(p *int, key string, v int) {
		if !set(key) && *p == 0 {
			*p = v
		}
	}
	dur := func(p *Duration, key string, v time.Duration) {
		if !set(key) && *p == 0 {
			*p = Duration(v)
		}
	}
	flag := func(p *bool, key string, v bool) {
		if !set(key) {
			*p = v
		}
	}

	s := &c.Server
	str(&s.Addr, "server.addr", DefaultAddr)
	str(&s.Language, "server.language", "en")
	dur(&s.SessionIdleTimeout, "server.session_idle_timeout", 30*time.Minute)
	dur(&s.SessionLifetime, "server.session_lifetime", 12*time.Hour)
	dur(&s.ShutdownTimeout, "server.shutdown_timeout", 20*time.Second)
	rl := &s.RateLimits
	num(&rl.CodeLookups, "server.rate_limits.code_lookups", 30)
	num(&rl.Redemptions, "server.rate_limits.redemptions", 10)
	num(&rl.SignIns, "server.rate_limits.sign_ins", 10)
	num(&rl.Registrations, "server.rate_limits.registrations", 5)
	num(&rl.PasswordReset, "server.rate_limits.password_resets", 5)

	dv := &c.Dataverse
	str(&dv.APIVersion, "dataverse.api_version", DefaultAPIVersion)
	dur(&dv.Timeout, "dataverse.timeout", 30*time.Second)
	num(&dv.MaxRetries, "dataverse.max_retries", 5)
	str(&dv.Auth.Method, "dataverse.auth.method", "client_secret")

	str(&c.Redis.KeyPrefix, "redis.key_prefix", DefaultKeyPrefix)
	dur(&c.Redis.AckTimeout, "redis.ack_timeout", time.Second)

	in := &c.Intake
	flag(&in.Webhook.Enabled, "intake.webhook.enabled", true)
	str(&in.Webhook.Path, "intake.webhook.path", DefaultWebhookPath)
	str(&in.Webhook.Auth.Type, "intake.webhook.auth.type", "webhook_key")
	if !set("intake.webhook.max_body_bytes") && in.Webhook.MaxBodyBytes == 0 {
		in.Webhook.MaxBodyBytes = 1 << 20
	}
	flag(&in.Poll.Enabled, "intake.poll.enabled", true)
	str(&in.Poll.Schedule, "intake.poll.schedule", DefaultPollSchedule)
	num(&in.Workers, "intake.workers", 4)
	num(&in.MaxAttempts, "intake.max_attempts", 8)
	dur(&in.Lease, "intake.lease", 2*time.Minute)
	ct := &in.Contact
	str(&ct.StatusAttribute, "intake.contact.status_attribute", DefaultStatusColumn)
	str(&ct.PortalAttribute, "intake.contact.portal_attribute", DefaultPortalColumn)
	str(&ct.RolesAttribute, "intake.contact.roles_attribute", DefaultRolesColumn)
	str(&ct.InvitedOnAttribute, "intake.contact.invited_on_attribute", DefaultInvitedColumn)
	str(&ct.ErrorAttribute, "intake.contact.error_attribute", DefaultErrorColumn)
	num(&ct.Status.Requested, "intake.contact.status.requested", StatusRequested)
	num(&ct.Status.Sent, "intake.contact.status.sent", StatusSent)
	num(&ct.Status.Failed, "intake.contact.status.failed", StatusFailed)
	num(&ct.Status.Redeemed, "intake.contact.status.redeemed", StatusRedeemed)

	id := &c.Identity
	str(&id.PasswordHash, "identity.password_hash", "aspnet-v3")
	num(&id.PasswordPolicy.MinLength, "identity.password_policy.min_length", 8)
	flag(&id.PasswordPolicy.EnforceClasses, "identity.password_policy.enforce_classes", true)
	flag(&id.PasswordPolicy.RejectCommon, "identity.password_policy.reject_common", true)
	flag(&id.Lockout.Enabled, "identity.lockout.enabled", true)
	num(&id.Lockout.MaxFailedAttempts, "identity.lockout.max_failed_attempts", 5)
	dur(&id.Lockout.Duration, "identity.lockout.duration", 24*time.Hour)
	dur(&id.TokenLifetime, "identity.token_lifetime", 48*time.Hour)
	dur(&id.ResetTokenLifetime, "identity.reset_token_lifetime", time.Hour)
	str(&id.LocalLogin, "identity.local_login", "enabled")
	for i := range id.Providers {
		ip := &id.Providers[i]
		k := func(s string) string { return fmt.Sprintf("identity.providers[%d].%s", i, s) }
		str(&ip.DisplayName, k("display_name"), ip.Name)
		str(&ip.Type, k("type"), "oidc")
		str(&ip.ProviderKeyClaim, k("provider_key_claim"), "sub")
	}

	for i := range c.Portals {
		p := &c.Portals[i]
		k := func(s string) string { return portalKey(i, s) }
		str(&p.DataModel, k("data_model"), "enhanced")
		if len(p.Roles) == 0 {
			p.Roles = append([]string(nil), p.DefaultRoles...)
		}
		dur(&p.Invitation.ExpiresAfter, k("invitation.expires_after"), 14*24*time.Hour)
		num(&p.Invitation.MaxRedemptions, k("invitation.max_redemptions"), 1)
		str(&p.Invitation.CodeStorage, k("invitation.code_storage"), "hashed")
		str(&p.Pages.ExistingUser, k("pages.existing_user"), "/login")
		str(&p.Pages.AfterRedeem, k("pages.after_redeem"), "/profile")
		str(&p.Email.Subject, k("email.subject"), "You're invited to {{.PortalName}}")
	}

	str(&c.Log.Level, "log.level", "info")
	str(&c.Log.Format, "log.format", "json")
	c.applyDeliveryDefaults(present)
	c.applyPacingDefaults(present)
	c.applyCommandDefaults(present)
	c.applyLifecycleDefaults(present)
}

// ApplyPortalDefaults fills the unset keys of a portal built in code, such as
// the ones `connector dev` makes.
func ApplyPortalDefaults(p *Portal) {
	c := &Config{Portals: []Portal{*p}}
	c.applyDefaults(map[string]bool{})
	*p = c.Portals[0]
}
