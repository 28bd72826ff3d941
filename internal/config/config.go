// Package config defines the connector's YAML configuration: its schema,
// defaults, ${ENV} expansion and validation.
//
// Loading is strict (unknown keys are errors) and reports every problem of a
// file at once: unknown keys, values of the wrong type, unset variables and
// failed checks, each with its key and line, so an admin fixes a file in one
// pass. A value that cannot be decoded is reported once; the checks that would
// only repeat it are dropped. Only cmd/connector loads configuration; the
// other packages receive plain values.
package config

import (
	"fmt"
	"strings"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	Server    Server    `yaml:"server"`
	Dataverse Dataverse `yaml:"dataverse"`
	Redis     Redis     `yaml:"redis"`
	Intake    Intake    `yaml:"intake"`
	Identity  Identity  `yaml:"identity"`
	Portals   []Portal  `yaml:"portals"`
	API       API       `yaml:"api"`
	Log       Log       `yaml:"log"`
	// SMTP is the submission server for portals whose email.channel is smtp.
	SMTP SMTP `yaml:"smtp"`
	// Telemetry is OpenTelemetry tracing (off by default).
	Telemetry Telemetry `yaml:"telemetry"`

	// Path is the file the configuration was loaded from ("" when built in).
	Path string `yaml:"-"`
}

// Server is the HTTP side: the portal pages, the webhook and the API.
type Server struct {
	Addr      string `yaml:"addr"`       // listen address, default ":8080"
	PublicURL string `yaml:"public_url"` // how Dataverse and browsers reach this server
	// SecureCookies marks session cookies Secure; only dev on plain HTTP turns it off.
	SecureCookies *bool `yaml:"secure_cookies"`
	// SessionIdleTimeout ends a session after this long without a request.
	SessionIdleTimeout Duration `yaml:"session_idle_timeout"`
	// SessionLifetime ends a session this long after sign-in, active or not.
	SessionLifetime Duration `yaml:"session_lifetime"`
	// TrustedProxies are the proxy addresses (CIDR) whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Language is the default page language ("en", "fr").
	Language string `yaml:"language"`
	// RateLimits bound abuse per client IP and per target, shared by replicas through Redis.
	RateLimits RateLimits `yaml:"rate_limits"`
}

// RateLimits are requests per minute for the sensitive portal actions.
type RateLimits struct {
	CodeLookups   int `yaml:"code_lookups"`
	Redemptions   int `yaml:"redemptions"`
	SignIns       int `yaml:"sign_ins"`
	Registrations int `yaml:"registrations"`
	PasswordReset int `yaml:"password_resets"`
}

// Dataverse is the connection to the Dynamics 365 organization.
type Dataverse struct {
	URL            string        `yaml:"url"`         // https://contoso.crm.dynamics.com
	APIVersion     string        `yaml:"api_version"` // default 9.2
	Timeout        Duration      `yaml:"timeout"`     // per request attempt
	MaxRetries     int           `yaml:"max_retries"`
	MaxConcurrency int           `yaml:"max_concurrency"` // 0 follows x-ms-dop-hint
	CAFile         string        `yaml:"ca_file"`         // extra trusted CA (PEM), added to the system roots
	Auth           DataverseAuth `yaml:"auth"`
}

// DataverseAuth selects and configures the Entra ID credential.
type DataverseAuth struct {
	Method                   string `yaml:"method"`
	TenantID                 string `yaml:"tenant_id"`
	ClientID                 string `yaml:"client_id"`
	ClientSecret             string `yaml:"client_secret"`
	CertificatePath          string `yaml:"certificate_path"`
	CertificatePassword      string `yaml:"certificate_password"`
	AuthorityHost            string `yaml:"authority_host"`
	DisableInstanceDiscovery bool   `yaml:"disable_instance_discovery"`
}

// Redis holds shared state: sessions, the queue, locks, rate limits.
type Redis struct {
	URL       string `yaml:"url"` // empty = embedded, dev only
	KeyPrefix string `yaml:"key_prefix"`
	// CAFile is a PEM file of the CAs that sign the Redis servers'
	// certificates (TLS is then used even with a redis:// URL); default the
	// system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate and its key, for servers
	// run with tls-auth-clients yes. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Sentinel finds the primary through Redis Sentinel (see RedisSentinel).
	Sentinel RedisSentinel `yaml:"sentinel"`
	// MinAckedReplicas is how many replicas must hold an accepted webhook
	// before Dataverse gets its 200 (WAIT); 0, the default, does not wait.
	MinAckedReplicas int `yaml:"min_acked_replicas"`
	// AckTimeout bounds that wait; past it the webhook is answered 503 and
	// Dataverse retries. Default 1s.
	AckTimeout Duration `yaml:"ack_timeout"`
}

// Intake is how invitation requests get in.
type Intake struct {
	Webhook     Webhook  `yaml:"webhook"`
	Poll        Poll     `yaml:"poll"`
	Workers     int      `yaml:"workers"`
	MaxAttempts int      `yaml:"max_attempts"` // before a request goes to the dead letter stream
	Lease       Duration `yaml:"lease"`        // how long a worker owns a message before others may reclaim it
	Contact     Contact  `yaml:"contact"`
	// Lifecycle runs the reminders and expiry of open invitations.
	Lifecycle Lifecycle `yaml:"lifecycle"`
}

// Webhook is the Dataverse webhook endpoint.
type Webhook struct {
	Enabled      bool        `yaml:"enabled"`
	Path         string      `yaml:"path"`
	Auth         WebhookAuth `yaml:"auth"`
	MaxBodyBytes int64       `yaml:"max_body_bytes"`
}

// WebhookAuth is how Dataverse proves a delivery is genuine.
type WebhookAuth struct {
	Type  string `yaml:"type"`  // webhook_key | http_header | query_string
	Name  string `yaml:"name"`  // header or query parameter name (not for webhook_key)
	Value string `yaml:"value"` // the shared secret
}

// Poll is the safety-net poller.
type Poll struct {
	Enabled  bool   `yaml:"enabled"`
	Schedule string `yaml:"schedule"` // cron spec, e.g. "@every 1m"
}

// Contact names the custom contact columns the "Invite to portal" button sets.
type Contact struct {
	StatusAttribute    string        `yaml:"status_attribute"`
	PortalAttribute    string        `yaml:"portal_attribute"`
	RolesAttribute     string        `yaml:"roles_attribute"`
	InvitedOnAttribute string        `yaml:"invited_on_attribute"`
	ErrorAttribute     string        `yaml:"error_attribute"`
	Status             ContactStatus `yaml:"status"`
}

// ContactStatus holds the option values of the invite status choice.
type ContactStatus struct {
	Requested int `yaml:"requested"`
	Sent      int `yaml:"sent"`
	Failed    int `yaml:"failed"`
	Redeemed  int `yaml:"redeemed"`
	// Delivered: Exchange (or the SMTP server) accepted the invitation email;
	// Sent only says it was handed to Dataverse.
	Delivered int `yaml:"delivered"`
	// Resend and Revoke are the command values the Resend invitation and
	// Revoke invitation buttons set; Revoked and Expired are written back.
	Resend  int `yaml:"resend"`
	Revoke  int `yaml:"revoke"`
	Revoked int `yaml:"revoked"`
	Expired int `yaml:"expired"`
}

// Identity configures portal accounts.
type Identity struct {
	PasswordHash   string         `yaml:"password_hash"` // aspnet-v3 | aspnet-v2
	PasswordPolicy PasswordPolicy `yaml:"password_policy"`
	Lockout        Lockout        `yaml:"lockout"`
	// TokenSecret signs email-confirmation and password-reset tokens.
	TokenSecret string `yaml:"token_secret"`
	// TokenLifetime bounds email-confirmation links; ResetTokenLifetime password-reset links.
	TokenLifetime      Duration `yaml:"token_lifetime"`
	ResetTokenLifetime Duration `yaml:"reset_token_lifetime"`
	// LocalLogin is "enabled" (default) or "disabled": whether portals offer
	// user names and passwords next to the identity providers.
	LocalLogin string `yaml:"local_login"`
	// Providers are the external OpenID Connect identity providers.
	Providers []IdentityProvider `yaml:"providers"`
}

// IdentityProvider is one external OpenID Connect identity provider (see
// identity.ProviderConfig for what each key does).
type IdentityProvider struct {
	// Name identifies the provider in URLs (/signin-oidc/<name>).
	Name        string `yaml:"name"`
	DisplayName string `yaml:"display_name"` // "Continue with <display_name>"; default name
	// Type is entra_id | entra_external_id | azure_ad_b2c | google | oidc (default).
	Type string `yaml:"type"`
	// Issuer must equal the discovery document's issuer and the ID tokens'
	// iss; Authority, when set, is where discovery is fetched from.
	Issuer    string `yaml:"issuer"`
	Authority string `yaml:"authority"`
	ClientID  string `yaml:"client_id"`
	// ClientSecret, or ClientCertificate: a PEM file with the certificate
	// and its private key, for private_key_jwt.
	ClientSecret      string `yaml:"client_secret"`
	ClientCertificate string `yaml:"client_certificate"`
	// TokenEndpointAuthMethod is client_secret_basic (default with a
	// secret), client_secret_post or private_key_jwt (default with a certificate).
	TokenEndpointAuthMethod string   `yaml:"token_endpoint_auth_method"`
	Scopes                  []string `yaml:"scopes"`
	// Claims maps contact columns to ID token claims (Power Pages'
	// "firstname=given_name"), written when an account is created or linked.
	Claims map[string]string `yaml:"claims"`
	// ProviderKeyClaim is sub (default) or oid: the claim stored as
	// adx_externalidentity.adx_username.
	ProviderKeyClaim string `yaml:"provider_key_claim"`
	// AllowContactMappingWithEmail lets a first sign-in with no linked
	// contact take the one active contact with the same verified email.
	AllowContactMappingWithEmail bool `yaml:"allow_contact_mapping_with_email"`
	// CAFile is an extra trusted CA (PEM) for the provider's endpoints.
	CAFile string `yaml:"ca_file"`
}

// PasswordPolicy mirrors Power Pages' password validator settings.
type PasswordPolicy struct {
	MinLength              int  `yaml:"min_length"`
	EnforceClasses         bool `yaml:"enforce_classes"` // 3 of 4 character classes
	RequireDigit           bool `yaml:"require_digit"`
	RequireLowercase       bool `yaml:"require_lowercase"`
	RequireUppercase       bool `yaml:"require_uppercase"`
	RequireNonAlphanumeric bool `yaml:"require_non_alphanumeric"`
	RejectCommon           bool `yaml:"reject_common"`
}

// Lockout mirrors Power Pages' lockout settings.
type Lockout struct {
	Enabled           bool     `yaml:"enabled"`
	MaxFailedAttempts int      `yaml:"max_failed_attempts"`
	Duration          Duration `yaml:"duration"`
}

// Portal is one Power Pages site invitations are for.
type Portal struct {
	Name         string   `yaml:"name"`
	DataModel    string   `yaml:"data_model"` // enhanced | standard
	WebsiteID    string   `yaml:"website_id"`
	BaseURL      string   `yaml:"base_url"`
	DefaultRoles []string `yaml:"default_roles"`
	// Roles are the web roles CRM users may choose in the Invite dialog; default: default_roles.
	Roles      []string   `yaml:"roles"`
	Invitation Invitation `yaml:"invitation"`
	Pages      Pages      `yaml:"pages"`
	Email      Email      `yaml:"email"`
	// IdentityProviders names the identity.providers this portal offers;
	// empty means all of them.
	IdentityProviders []string `yaml:"identity_providers"`
	// OpenRegistration lets someone whose external sign-in is linked to no
	// contact create an account without an invitation. Default false.
	OpenRegistration bool `yaml:"open_registration"`
}

// Invitation is how invitations for a portal behave.
type Invitation struct {
	ExpiresAfter   Duration `yaml:"expires_after"` // 0 = never
	MaxRedemptions int      `yaml:"max_redemptions"`
	CodeStorage    string   `yaml:"code_storage"` // hashed | plain
	// RequireEmailMatch makes redemption with an identity provider require
	// a verified email equal to the invited contact's emailaddress1.
	RequireEmailMatch bool `yaml:"require_email_match"`
	// Reminders are durations before expiry at which open, unredeemed
	// invitations get a reminder email, e.g. [7d, 1d].
	Reminders []Duration `yaml:"reminders"`
}

// Pages are where the redemption site sends people.
type Pages struct {
	ExistingUser string `yaml:"existing_user"`
	AfterRedeem  string `yaml:"after_redeem"`
	Terms        string `yaml:"terms"` // optional terms-of-use URL; adds a required checkbox
}

// Email is the invitation email for a portal.
type Email struct {
	Sender       string `yaml:"sender"` // systemuser:<guid> | queue:<guid> | initiating_user
	Subject      string `yaml:"subject"`
	Template     string `yaml:"template"`      // optional HTML template file
	TextTemplate string `yaml:"text_template"` // optional plain-text template file
	// Channel is how the email leaves: dataverse (server-side sync through
	// the sender's mailbox, default) or smtp (the top-level smtp block).
	Channel string `yaml:"channel"`
	// PendingAlertAfter is how long an invitation email may stay Pending
	// Send before the contact is marked Failed with the mailbox's reason.
	PendingAlertAfter Duration `yaml:"pending_alert_after"`
	// Senders are the sending mailboxes used round-robin within Rate
	// (systemuser:<guid> or queue:<guid>); Sender is the one-sender form.
	Senders []string `yaml:"senders"`
	// Rate is each sender's limit, held across replicas.
	Rate Rate `yaml:"rate"`
}

// API is the JSON API for invitations.
type API struct {
	Keys []string `yaml:"keys"`
}

// Log configures log/slog.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // json | text
}

// Duration is a time.Duration that also accepts a days suffix ("14d").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration, using days when exact.
func (d Duration) String() string {
	td := time.Duration(d)
	if td > 0 && td%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", td/(24*time.Hour))
	}
	return td.String()
}

// ParseDuration parses Go durations plus whole days ("14d").
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err != nil || fmt.Sprint(days) != n || days < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return Duration(time.Duration(days) * 24 * time.Hour), nil
	}
	td, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 30s, 15m, 12h or 14d)", s)
	}
	return Duration(td), nil
}

// MarshalYAML writes the duration in its parseable form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// SecureCookiesOn reports whether session cookies are marked Secure.
func (s Server) SecureCookiesOn() bool { return s.SecureCookies == nil || *s.SecureCookies }

// PortalByName returns the portal with the given name.
func (c *Config) PortalByName(name string) (Portal, bool) {
	for _, p := range c.Portals {
		if p.Name == name {
			return p, true
		}
	}
	return Portal{}, false
}
