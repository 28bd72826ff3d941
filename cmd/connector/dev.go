package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dataverse/emulator/demo"
	intake "github.com/d365portal/connector/internal/sync"
)

// devInfo is the first stdout line of `connector dev --json`.
type devInfo struct {
	PortalURL   string       `json:"portal_url"`
	DynamicsURL string       `json:"dynamics_url"`
	OutboxURL   string       `json:"outbox_url"`
	APIURL      string       `json:"api_url"`
	APIKey      string       `json:"api_key"`
	RedisURL    string       `json:"redis_url"`
	Emulator    emulatorInfo `json:"emulator"`
}

const demoPrefix = "/_demo"

func runDev(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "dev", "[--addr ADDR] [--config FILE] [--json]",
		"Run the whole connector on this machine with no setup: a Dataverse emulator seeded\nwith a demo organization, an embedded Redis, the webhook registered, the poller on,\nand the portal. Open the printed Dynamics page, click Invite to portal, read the\nemail in the outbox and redeem it. Ctrl-C stops everything.")
	addr := fs.String("addr", "127.0.0.1:8080", "listen address of the portal (loopback recommended)")
	cfgPath := fs.String("config", "", "take redis.url and redis.key_prefix from FILE (use a real Redis)")
	asJSON := fs.Bool("json", false, "print the URLs as one JSON object on the first stdout line")
	mail := addEmailSyncFlags(fs, 1500*time.Millisecond)
	pendingAlert := fs.Duration("pending-alert-after", time.Minute, "how long an invitation email may stay unsent before the contact shows Failed (portals[].email.pending_alert_after)")
	expiresAfter := fs.String("expires-after", "", "how long invitations stay open, e.g. 3m to watch reminders and expiry (portals[].invitation.expires_after; default 14d)")
	tracesEndpoint := fs.String("traces-endpoint", "", "send OpenTelemetry traces (OTLP over HTTP) to this URL, e.g. http://127.0.0.1:4318 (telemetry.traces.endpoint; the OTEL_* variables apply)")
	reminders := fs.String("reminders", "", "comma-separated durations before expiry at which reminders are sent, e.g. 2m,1m (portals[].invitation.reminders)")
	if code, done := parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	syncOpts, err := mail.options()
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector dev: %v\n", err)
		return exitUsage
	}
	var fileCfg *config.Config
	if *cfgPath != "" {
		c, code, ok := loadConfig(e, *cfgPath, config.Options{AllowEmbeddedRedis: true})
		if !ok {
			return code
		}
		fileCfg = c
	}
	log := slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: redactAttr}))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector dev: listen on %s: %v (try --addr 127.0.0.1:0)\n", *addr, err)
		return exitFail
	}
	publicURL := "http://" + ln.Addr().String()

	emu, err := emulator.StartTLS(emulator.Options{Logger: log.With("component", "emulator"), EmailSync: syncOpts}, "127.0.0.1:0")
	if err != nil {
		ln.Close()
		fmt.Fprintf(e.Stderr, "connector dev: emulator: %v\n", err)
		return exitFail
	}
	defer emu.Close()
	seed, err := emulator.SeedDemo(emu.Server)
	if err != nil {
		ln.Close()
		fmt.Fprintf(e.Stderr, "connector dev: seed: %v\n", err)
		return exitFail
	}
	if err := mail.applyMailboxes(emu.Server, seed); err != nil {
		ln.Close()
		fmt.Fprintf(e.Stderr, "connector dev: %v\n", err)
		return exitUsage
	}

	redisURL := ""
	if fileCfg != nil && fileCfg.Redis.URL != "" {
		redisURL = fileCfg.Redis.URL
	} else {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			ln.Close()
			fmt.Fprintf(e.Stderr, "connector dev: embedded redis: %v\n", err)
			return exitFail
		}
		defer mr.Close()
		redisURL = "redis://" + mr.Addr() + "/0"
	}

	c := devConfig(publicURL, emu, seed, redisURL)
	addDevIdentity(c, emu, seed)
	for i := range c.Portals {
		c.Portals[i].Email.PendingAlertAfter = config.Duration(*pendingAlert)
	}
	if err := devLifecycle(c, *expiresAfter, *reminders); err != nil {
		ln.Close()
		fmt.Fprintf(e.Stderr, "connector dev: %v\n", err)
		return exitUsage
	}
	if fileCfg != nil {
		c.Redis.KeyPrefix = fileCfg.Redis.KeyPrefix
	}
	if *tracesEndpoint != "" {
		c.Telemetry.Traces = config.Traces{Enabled: true, Endpoint: *tracesEndpoint}
	}
	if err := config.Validate(c, config.Options{AllowEmbeddedRedis: true}); err != nil {
		ln.Close()
		fmt.Fprintf(e.Stderr, "connector dev: built-in configuration: %v\n", err)
		return exitFail
	}
	rdb, err := newRedis(c)
	if err != nil {
		ln.Close()
		fmt.Fprintf(e.Stderr, "connector dev: %v\n", err)
		return exitFail
	}
	demoPages, err := demo.New(demo.Config{
		Emulator: emu.Server, APIURL: emu.APIURL, HTTPClient: emu.HTTPClient, ClientID: emu.ClientID,
		ActAs: seed.AdminUserID, ActAsName: "Avery Admin", Prefix: demoPrefix, Logger: log.With("component", "demo"),
		Portals: demoPortals(c), Columns: demo.Columns{
			Status: c.Intake.Contact.StatusAttribute, Portal: c.Intake.Contact.PortalAttribute,
			Roles: c.Intake.Contact.RolesAttribute, InvitedOn: c.Intake.Contact.InvitedOnAttribute,
			Error: c.Intake.Contact.ErrorAttribute, Requested: c.Intake.Contact.Status.Requested,
			Sent: c.Intake.Contact.Status.Sent, Failed: c.Intake.Contact.Status.Failed, Redeemed: c.Intake.Contact.Status.Redeemed,
			Delivered: c.Intake.Contact.Status.Delivered,
			Resend:    c.Intake.Contact.Status.Resend, Revoke: c.Intake.Contact.Status.Revoke,
			Revoked: c.Intake.Contact.Status.Revoked, Expired: c.Intake.Contact.Status.Expired,
		},
	})
	if err != nil {
		ln.Close()
		fmt.Fprintf(e.Stderr, "connector dev: %v\n", err)
		return exitFail
	}
	tp, stopTracing, err := newTracing(ctx, c, e, log)
	if err != nil {
		ln.Close()
		fmt.Fprintf(e.Stderr, "connector dev: %v\n", err)
		return exitUsage
	}
	defer flushTracing(log, stopTracing)
	a, err := newApp(c, log, appOptions{Redis: rdb, Extra: map[string]http.Handler{demoPrefix + "/": demoPages},
		Tracing: tp, StopTracing: stopTracing})
	if err != nil {
		ln.Close()
		fmt.Fprintf(e.Stderr, "connector dev: %v\n", err)
		return exitFail
	}
	// Register the webhook the way an admin would with `connector webhook register`.
	regCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	hookURL, _ := intake.WebhookURL(c.Server.PublicURL, c.Intake.Webhook.Path)
	_, err = intake.RegisterWebhook(regCtx, a.dv, intake.RegisterOptions{
		URL: hookURL, AuthType: c.Intake.Webhook.Auth.Type, AuthName: c.Intake.Webhook.Auth.Name,
		AuthValue: c.Intake.Webhook.Auth.Value, Contact: contactColumns(c), FollowEmails: true,
	})
	cancel()
	if err != nil {
		ln.Close()
		fmt.Fprintf(e.Stderr, "connector dev: webhook register: %v\n", err)
		return exitFail
	}

	info := devInfo{
		PortalURL: publicURL + "/", DynamicsURL: publicURL + demoPrefix + "/", OutboxURL: publicURL + demoPrefix + "/outbox",
		APIURL: publicURL + "/api/v1/", APIKey: c.API.Keys[0], RedisURL: redisURL,
		Emulator: emulatorInfo{OrgURL: emu.OrgURL, APIURL: emu.APIURL, AuthorityHost: emu.AuthorityHost,
			TenantID: emu.TenantID, ClientID: emu.ClientID, ClientSecret: emu.ClientSecret, CAFile: emu.CAFile},
	}
	if *asJSON {
		line, _ := json.Marshal(info)
		fmt.Fprintln(e.Stdout, string(line))
	} else {
		fmt.Fprintf(e.Stdout, `
  Portal invitation connector: development mode

  Dynamics (demo)  %s   click "Invite to portal" on a contact
  Outbox           %s   the invitation emails, with their links
  Portal           %s
  JSON API         %s   (Authorization: Bearer %s)
  Emulator API     %s   (CA: %s)

  Ctrl-C to stop.

`, info.DynamicsURL, info.OutboxURL, info.PortalURL, info.APIURL, info.APIKey, info.Emulator.APIURL, info.Emulator.CAFile)
	}
	if err := a.run(ctx, ln); err != nil {
		fmt.Fprintf(e.Stderr, "connector dev: %v\n", err)
		return exitFail
	}
	return exitOK
}

// devConfig is the built-in configuration of `connector dev`: the demo
// organization's two portals (one per Power Pages data model) served by this
// process, with secrets made up for this run.
func devConfig(publicURL string, emu *emulator.Running, seed *emulator.Demo, redisURL string) *config.Config {
	c := config.Default()
	off := false
	c.Server.Addr = "127.0.0.1:0" // informational; dev listens itself
	c.Server.PublicURL = publicURL
	c.Server.SecureCookies = &off // plain HTTP on loopback
	c.Dataverse.URL = emu.OrgURL
	c.Dataverse.CAFile = emu.CAFile
	c.Dataverse.Auth = config.DataverseAuth{
		Method: "client_secret", TenantID: emu.TenantID, ClientID: emu.ClientID, ClientSecret: emu.ClientSecret,
		AuthorityHost: emu.AuthorityHost, DisableInstanceDiscovery: true,
	}
	c.Redis.URL = redisURL
	c.Intake.Webhook.Auth.Value = randomSecret()
	c.Intake.Poll.Schedule = "@every 15s"
	c.Intake.Lifecycle.Schedule = "@every 20s" // reminders show up while you watch
	c.Identity.TokenSecret = randomSecret()
	c.API.Keys = []string{randomSecret()}
	c.Log = config.Log{Level: "info", Format: "text"}
	c.Portals = []config.Portal{
		{
			Name: "Contoso Partner Portal", DataModel: "enhanced", WebsiteID: seed.SiteID, BaseURL: publicURL,
			DefaultRoles: []string{"Authenticated Users", "Partners"},
			Roles:        []string{"Authenticated Users", "Partners", "Customers"},
			Email:        config.Email{Sender: "systemuser:" + seed.MailerUserID},
		},
		{
			Name: "Contoso Customer Portal", DataModel: "standard", WebsiteID: seed.WebsiteID, BaseURL: publicURL,
			DefaultRoles: []string{"Customers"},
			Roles:        []string{"Authenticated Users", "Customers", "Administrators"},
			Email:        config.Email{Sender: "queue:" + seed.QueueID}, // the demo queue's mailbox (--mailbox queue=...)
		},
	}
	for i := range c.Portals {
		config.ApplyPortalDefaults(&c.Portals[i])
	}
	return c
}

func demoPortals(c *config.Config) []demo.Portal {
	var out []demo.Portal
	for _, p := range c.Portals {
		out = append(out, demo.Portal{Name: p.Name, Roles: p.Roles, DefaultRoles: p.DefaultRoles})
	}
	return out
}

func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// devLifecycle applies --expires-after and --reminders to every portal.
func devLifecycle(c *config.Config, expiresAfter, reminders string) error {
	var exp config.Duration
	if expiresAfter != "" {
		d, err := config.ParseDuration(expiresAfter)
		if err != nil {
			return fmt.Errorf("--expires-after: %w", err)
		}
		exp = d
	}
	var rem []config.Duration
	for _, f := range strings.Split(reminders, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		d, err := config.ParseDuration(f)
		if err != nil {
			return fmt.Errorf("--reminders %q: %w", f, err)
		}
		rem = append(rem, d)
	}
	for i := range c.Portals {
		if exp != 0 {
			c.Portals[i].Invitation.ExpiresAfter = exp
		}
		c.Portals[i].Invitation.Reminders = rem
	}
	return nil
}
