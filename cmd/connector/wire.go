package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/redisconn"
)

// newDataverse builds the Web API client and its credential from config.
func newDataverse(c *config.Config, log *slog.Logger, hooks dataverse.Hooks) (*dataverse.Client, error) {
	return newTracedDataverse(c, log, hooks, nil)
}

// newTracedDataverse is newDataverse with each request a client span of tp
// (nil: untraced).
func newTracedDataverse(c *config.Config, log *slog.Logger, hooks dataverse.Hooks, tp trace.TracerProvider) (*dataverse.Client, error) {
	hc, err := dataverse.NewHTTPClient(c.Dataverse.CAFile)
	if err != nil {
		return nil, fmt.Errorf("dataverse.ca_file: %w", err)
	}
	cred, err := dataverse.NewCredential(authConfig(c), hc)
	if err != nil {
		return nil, fmt.Errorf("dataverse.auth: %w", err)
	}
	hc = traceDataverse(hc, &hooks, tp)
	return dataverse.New(dataverse.Config{
		URL: c.Dataverse.URL, APIVersion: c.Dataverse.APIVersion, Timeout: c.Dataverse.Timeout.D(),
		MaxRetries: c.Dataverse.MaxRetries, MaxConcurrency: c.Dataverse.MaxConcurrency, UserAgent: userAgent(),
	}, cred, &dataverse.Options{HTTPClient: hc, Logger: log, Hooks: hooks})
}

// newRedis builds the client for the configured Redis (TLS, Sentinel). It
// does not connect; pingRedis does.
func newRedis(c *config.Config) (redis.UniversalClient, error) {
	return redisconn.New(redisOptions(c))
}

// redisOptions maps the redis section onto redisconn's options.
func redisOptions(c *config.Config) redisconn.Options {
	r := c.Redis
	return redisconn.Options{
		URL: r.URL, CAFile: r.CAFile, CertFile: r.CertFile, KeyFile: r.KeyFile,
		Sentinel: redisconn.Sentinel{MasterName: r.Sentinel.MasterName, Addrs: r.Sentinel.Addrs, Password: r.Sentinel.Password},
	}
}

// newSentinelChecker asks the configured sentinels for the primary, for
// check and /readyz; nil without redis.sentinel.
func newSentinelChecker(c *config.Config) (*redisconn.SentinelChecker, error) {
	if !c.Redis.Sentinel.Enabled() || c.Redis.URL == "" {
		return nil, nil
	}
	return redisconn.NewSentinelChecker(redisOptions(c))
}

// inviteConfig maps the file's keys onto the domain's plain values.
func inviteConfig(c *config.Config, log *slog.Logger, locker invite.Locker) (invite.Config, error) {
	id := c.Identity
	pp := id.PasswordPolicy
	ic := invite.Config{
		Contact:      contactColumns(c),
		PasswordHash: id.PasswordHash,
		PasswordPolicy: invite.PasswordPolicy{
			MinLength: pp.MinLength, RequireDigit: pp.RequireDigit, RequireLower: pp.RequireLowercase,
			RequireUpper: pp.RequireUppercase, RequireNonAlphanumeric: pp.RequireNonAlphanumeric,
			AllowCommon: !pp.RejectCommon, MinClasses: -1,
		},
		TokenSecret:      []byte(id.TokenSecret),
		ConfirmEmailTTL:  id.TokenLifetime.D(),
		ResetPasswordTTL: id.ResetTokenLifetime.D(),
		Logger:           log,
		Locker:           locker,
		// The Redis lock is refreshed while held, so its TTL only matters
		// after a crash: then another replica may take over after one lease.
		LockTTL:            c.Intake.Lease.D(),
		LocalLoginDisabled: !id.LocalLoginOn(),
	}
	if pp.EnforceClasses {
		ic.PasswordPolicy.MinClasses = 3
	}
	if id.Lockout.Enabled {
		ic.Lockout = invite.Lockout{MaxFailed: id.Lockout.MaxFailedAttempts, Duration: id.Lockout.Duration.D()}
	} else {
		ic.Lockout = invite.Lockout{MaxFailed: -1}
	}
	for _, p := range c.Portals {
		ip := invite.Portal{
			Name: p.Name, DataModel: p.DataModel, WebsiteID: p.WebsiteID, BaseURL: strings.TrimRight(p.BaseURL, "/"),
			DefaultRoles: p.DefaultRoles, ExpiresAfter: p.Invitation.ExpiresAfter.D(),
			MaxRedemptions: p.Invitation.MaxRedemptions, CodeStorage: p.Invitation.CodeStorage,
			ExistingUserPage: p.Pages.ExistingUser, AfterRedeemPage: p.Pages.AfterRedeem, Terms: p.Pages.Terms,
			RequireEmailMatch: p.Invitation.RequireEmailMatch, OpenRegistration: p.OpenRegistration,
			Email: invite.EmailSettings{Sender: p.Email.Sender, Subject: p.Email.Subject, Channel: p.Email.Channel},
		}
		if ip.ExpiresAfter == 0 {
			ip.ExpiresAfter = -1 // config: 0 = never expires
		}
		for _, f := range []struct {
			path string
			dst  *string
		}{{p.Email.Template, &ip.Email.HTMLTemplate}, {p.Email.TextTemplate, &ip.Email.TextTemplate}} {
			if f.path == "" {
				continue
			}
			b, err := os.ReadFile(f.path)
			if err != nil {
				return invite.Config{}, fmt.Errorf("portal %q email template: %w", p.Name, err)
			}
			*f.dst = string(b)
		}
		ic.Portals = append(ic.Portals, ip)
	}
	return ic, nil
}

// pingRedis reports whether Redis answers.
func pingRedis(ctx context.Context, rdb redis.UniversalClient) error {
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// contactColumns are the contact invite columns of intake.contact.
func contactColumns(c *config.Config) invite.ContactColumns {
	ct := c.Intake.Contact
	return invite.ContactColumns{
		Status: ct.StatusAttribute, Portal: ct.PortalAttribute, Roles: ct.RolesAttribute,
		InvitedOn: ct.InvitedOnAttribute, Error: ct.ErrorAttribute,
		Requested: ct.Status.Requested, Sent: ct.Status.Sent, Failed: ct.Status.Failed, Redeemed: ct.Status.Redeemed,
		Delivered: ct.Status.Delivered,
		Resend:    ct.Status.Resend, Revoke: ct.Status.Revoke, Revoked: ct.Status.Revoked,
	}
}

// noHooks is for one-shot commands that export no metrics.
var noHooks dataverse.Hooks

// authConfig maps dataverse.auth onto the client's credential settings.
func authConfig(c *config.Config) dataverse.AuthConfig {
	a := c.Dataverse.Auth
	return dataverse.AuthConfig{
		Method: a.Method, TenantID: a.TenantID, ClientID: a.ClientID, ClientSecret: a.ClientSecret,
		CertificatePath: a.CertificatePath, CertificatePassword: a.CertificatePassword,
		AuthorityHost: a.AuthorityHost, DisableInstanceDiscovery: a.DisableInstanceDiscovery,
	}
}
