package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/api"
	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/lifecycle"
	"github.com/d365portal/connector/internal/metrics"
	"github.com/d365portal/connector/internal/portalweb"
	"github.com/d365portal/connector/internal/redisconn"
	intake "github.com/d365portal/connector/internal/sync"
)

// app is the connector wired from a configuration: the same for `serve` and
// `dev`, which differ only in where Dataverse and Redis come from.
type app struct {
	cfg     *config.Config
	log     *slog.Logger
	metrics *metrics.Metrics
	rdb     redis.UniversalClient
	dv      *dataverse.Client
	invites *meteredService
	intake  *intake.Intake
	handler http.Handler
	// lifecycle sends reminders and expires invitations on a schedule.
	lifecycle *lifecycle.Scheduler
	// sentinels answers /readyz with redis.sentinel; nil without it.
	sentinels *redisconn.SentinelChecker

	// stopTracing flushes traces once intake has stopped (nil: off).
	stopTracing func(context.Context) error

	readyMu    sync.Mutex
	readyAt    time.Time
	readyError error
}

// appOptions carry what differs between serve and dev.
type appOptions struct {
	Redis redis.UniversalClient   // already connected
	Extra map[string]http.Handler // extra mounts (dev: the demo pages)
	// Tracing traces invitations, Dataverse requests, portal and API
	// requests (nil: off); StopTracing flushes it at the end of run.
	Tracing     trace.TracerProvider
	StopTracing func(context.Context) error
}

func newApp(cfg *config.Config, log *slog.Logger, o appOptions) (*app, error) {
	a := &app{cfg: cfg, log: log, metrics: metrics.New(), rdb: o.Redis, stopTracing: o.StopTracing}
	var err error
	if a.dv, err = newTracedDataverse(cfg, log.With("component", "dataverse"), a.metrics.DataverseHooks(), o.Tracing); err != nil {
		return nil, err
	}
	if a.sentinels, err = newSentinelChecker(cfg); err != nil {
		return nil, err
	}
	locker := intake.NewLocker(a.rdb, cfg.Redis.KeyPrefix)
	ic, err := inviteConfig(cfg, log.With("component", "invite"), locker)
	if err != nil {
		return nil, err
	}
	// Links replaced by a resend say so on every replica.
	if a.rdb != nil {
		ic.Superseded = intake.NewSuperseded(a.rdb, cfg.Redis.KeyPrefix)
	}
	svc, err := invite.New(a.dv, ic)
	if err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	a.invites = &meteredService{Service: svc, m: a.metrics}
	var portalNames []string
	for _, p := range cfg.Portals {
		portalNames = append(portalNames, p.Name)
	}
	a.metrics.InitPortals(portalNames...)
	if a.lifecycle, err = newLifecycle(cfg, svc, a.rdb, a.metrics.Lifecycle(), log.With("component", "lifecycle")); err != nil {
		return nil, err
	}

	deliveries, err := newDeliveries(cfg, a.dv, a.invites, a.metrics.DeliveryHooks(), log.With("component", "delivery"), o.Tracing)
	if err != nil {
		return nil, err
	}
	in := cfg.Intake
	a.intake, err = intake.New(intake.Config{
		Redis: a.rdb, KeyPrefix: cfg.Redis.KeyPrefix, Invites: a.invites, Dataverse: a.dv,
		Contact: ic.Contact, DefaultPortal: cfg.Portals[0].Name,
		Webhook: intake.WebhookConfig{
			Enabled: in.Webhook.Enabled, Path: in.Webhook.Path, AuthType: in.Webhook.Auth.Type,
			AuthName: in.Webhook.Auth.Name, AuthValue: in.Webhook.Auth.Value, MaxBodyBytes: in.Webhook.MaxBodyBytes,
		},
		Poll:    intake.PollConfig{Enabled: in.Poll.Enabled, Schedule: in.Poll.Schedule},
		Workers: in.Workers, MaxAttempts: in.MaxAttempts, Lease: in.Lease.D(),
		Logger: log.With("component", "intake"),
		Hooks:  a.metrics.IntakeHooks(),
		// Invitation emails are followed to Delivered or Failed.
		Deliveries: deliveries, DeliveryRecheck: deliveryRecheck(cfg),
		// Invitation emails wait for their senders' budgets (email.rate).
		Pacer: newPortalPacer(cfg, a.rdb),
		// One trace per invitation, from the webhook to the email's outcome.
		Tracing: o.Tracing,
		// An accepted webhook is on a replica before Dataverse hears 200.
		MinAckedReplicas: cfg.Redis.MinAckedReplicas, AckTimeout: cfg.Redis.AckTimeout.D(),
	})
	if err != nil {
		return nil, fmt.Errorf("intake: %w", err)
	}
	if err := a.metrics.RegisterQueue(func(ctx context.Context) (metrics.QueueStats, error) {
		s, err := a.intake.Stats(ctx)
		return metrics.QueueStats{Depth: s.Depth, Pending: s.Pending, OldestAge: s.OldestAge, DeadLetters: s.DeadLetters}, err
	}); err != nil {
		return nil, err
	}

	s := cfg.Server
	idp, err := newIdentity(cfg, log.With("component", "identity"))
	if err != nil {
		return nil, err
	}
	web, err := portalweb.New(portalweb.Config{
		Accounts: a.invites, Redis: a.rdb, KeyPrefix: cfg.Redis.KeyPrefix, SecureCookies: s.SecureCookiesOn(),
		SessionIdleTimeout: s.SessionIdleTimeout.D(), SessionLifetime: s.SessionLifetime.D(),
		RateLimits: portalweb.RateLimits{
			CodeLookups: s.RateLimits.CodeLookups, Redemptions: s.RateLimits.Redemptions, SignIns: s.RateLimits.SignIns,
			Registrations: s.RateLimits.Registrations, PasswordResets: s.RateLimits.PasswordReset,
		},
		TrustedProxies: s.TrustedProxies, DefaultLanguage: s.Language, Logger: log.With("component", "portal"),
		Providers: idp, PortalProviders: portalProviders(cfg), LocalLoginDisabled: !cfg.Identity.LocalLoginOn(),
		PublicURL: s.PublicURL, Tracing: o.Tracing,
	})
	if err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	mux := http.NewServeMux()
	if len(cfg.API.Keys) > 0 {
		apiHandler, err := api.New(api.Config{
			Keys: cfg.API.Keys, Invites: a.invites, Contacts: contactFinder{a.dv}, Redis: a.rdb,
			KeyPrefix: cfg.Redis.KeyPrefix, Logger: log.With("component", "api"),
			// GET /schedule reads the same pacing counters the workers spend.
			Schedule: newPacedSenders(cfg, a.rdb, newPortalPacer(cfg, a.rdb), a.intake.Parked).schedule,
		})
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		mux.Handle("/api/v1/", traceAPI(apiHandler, o.Tracing))
	}
	mux.Handle(in.Webhook.Path, a.intake.WebhookHandler())
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.readyz)
	for prefix, h := range o.Extra {
		mux.Handle(prefix, h)
	}
	mux.Handle("/", web.Handler())
	a.handler = a.metrics.Middleware(routeOf(mux))(mux)
	return a, nil
}

// routeOf labels metrics with the mux pattern, never the raw path (codes and
// ids would explode the series count and leak into dashboards).
func routeOf(mux *http.ServeMux) func(*http.Request) string {
	return func(r *http.Request) string {
		if _, pattern := mux.Handler(r); pattern != "" {
			return pattern
		}
		return "other"
	}
}

// readyz reports whether Redis and Dataverse answer; the Dataverse probe is
// cached briefly so a load balancer polling it costs little.
func (a *app) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var problems []string
	if a.sentinels != nil {
		// The failover client finds the primary through any one sentinel.
		if rep := a.sentinels.Check(ctx); !rep.Ready() {
			problems = append(problems, "redis: no sentinel answers ("+strings.Join(rep.Down(), ", ")+")")
		}
	}
	if err := a.intake.Ready(ctx); err != nil {
		problems = append(problems, "redis: unavailable")
	}
	if err := a.dataverseReady(ctx); err != nil {
		problems = append(problems, "dataverse: unavailable")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintln(w, strings.Join(problems, "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (a *app) dataverseReady(ctx context.Context) error {
	a.readyMu.Lock()
	defer a.readyMu.Unlock()
	if time.Since(a.readyAt) < 10*time.Second {
		return a.readyError
	}
	_, err := a.dv.WhoAmI(ctx)
	if err != nil {
		a.log.Warn("readiness: dataverse", "err", err)
	}
	a.readyAt, a.readyError = time.Now(), err
	return err
}

// run serves until ctx ends, then shuts down in order: stop taking HTTP
// requests (webhooks included), stop the reminder and expiry schedule, stop
// the poller and drain the workers, then close Redis.
func (a *app) run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	if err := a.intake.Start(ctx); err != nil {
		return fmt.Errorf("start intake: %w", err)
	}
	a.lifecycle.Start(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	timeout := a.cfg.Server.ShutdownTimeout.D()
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	a.log.Info("shutting down", "timeout", timeout)
	if err := srv.Shutdown(sctx); err != nil {
		a.log.Warn("http shutdown", "err", err)
	}
	if err := a.lifecycle.Stop(sctx); err != nil {
		a.log.Warn("lifecycle shutdown", "err", err)
	}
	if err := a.intake.Shutdown(sctx); err != nil {
		a.log.Warn("intake shutdown", "err", err)
	}
	// The workers' spans have ended: send what is queued.
	flushTracing(a.log, a.stopTracing)
	if err := a.rdb.Close(); err != nil {
		a.log.Warn("redis close", "err", err)
	}
	if a.sentinels != nil {
		_ = a.sentinels.Close()
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	a.log.Info("stopped")
	return nil
}

// meteredService counts invitation outcomes around the domain service.
type meteredService struct {
	*invite.Service
	m *metrics.Metrics
}

func (s *meteredService) Invite(ctx context.Context, req invite.InviteRequest) (*invite.InviteResult, error) {
	res, err := s.Service.Invite(ctx, req)
	s.count(req.Portal, res, err)
	return res, err
}

func (s *meteredService) Resend(ctx context.Context, id string) (*invite.InviteResult, error) {
	res, err := s.Service.Resend(ctx, id)
	portal := ""
	if res != nil && res.Invitation != nil {
		portal = res.Invitation.Portal
	}
	s.count(portal, res, err)
	return res, err
}

func (s *meteredService) count(portal string, res *invite.InviteResult, err error) {
	s.m.ObserveInvite(portal, res, err)
}

func (s *meteredService) Redeem(ctx context.Context, req invite.RedeemRequest) (*invite.Account, error) {
	acc, err := s.Service.Redeem(ctx, req)
	if err == nil {
		s.m.Redeemed(acc.Portal)
	}
	return acc, err
}

// contactFinder resolves an email address to the active contact that has it.
type contactFinder struct{ dv *dataverse.Client }

func (f contactFinder) FindContactByEmail(ctx context.Context, email string) (string, error) {
	page, err := f.dv.QueryPage(ctx, "contacts", &dataverse.Query{
		Select: []string{"contactid"},
		Filter: "emailaddress1 eq " + dataverse.Quote(strings.TrimSpace(email)) + " and statecode eq 0",
		Top:    2,
	}, "")
	if err != nil {
		return "", fmt.Errorf("find contact by email: %w", err)
	}
	switch len(page.Records) {
	case 0:
		return "", fmt.Errorf("no active contact has email %q: %w", email, invite.ErrNotFound)
	case 1:
		return page.Records[0].Str("contactid"), nil
	default:
		return "", fmt.Errorf("find contact by email: %w", api.ErrAmbiguousEmail)
	}
}
