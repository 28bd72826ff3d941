package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/dataverse"
)

func runServe(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "serve", "--config FILE",
		"Run the connector against a real Dataverse organization and Redis: the webhook, the\npoller and workers, the redemption site, the JSON API, /metrics, /healthz and /readyz.")
	path := fs.String("config", "", "configuration file")
	if code, done := parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	c, code, ok := loadConfig(e, *path, config.Options{})
	if !ok {
		return code
	}
	log := newLogger(c.Log, e.Stderr)
	tp, stopTracing, err := newTracing(ctx, c, e, log)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector serve: %v\n", err)
		return exitUsage
	}
	defer flushTracing(log, stopTracing)
	rdb, err := newRedis(c)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector serve: %v\n", err)
		return exitUsage
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pingRedis(startCtx, rdb); err != nil {
		log.Error("startup: Redis is not reachable", "err", err)
		return exitFail
	}
	a, err := newApp(c, log, appOptions{Redis: rdb, Tracing: tp, StopTracing: stopTracing})
	if err != nil {
		log.Error("startup", "err", err)
		return exitFail
	}
	who, err := whoAmIAtStartup(startCtx, a)
	if err != nil {
		log.Error("startup: Dataverse WhoAmI failed; check dataverse.url and dataverse.auth", "err", err)
		return exitFail
	}
	ln, err := net.Listen("tcp", c.Server.Addr)
	if err != nil {
		log.Error("startup: listen", "addr", c.Server.Addr, "err", err)
		return exitFail
	}
	log.Info("connector ready",
		"version", readBuildInfo().Version, "addr", ln.Addr().String(), "public_url", c.Server.PublicURL,
		"dataverse", c.Dataverse.URL, "app_user", who.UserID, "portals", strings.Join(portalNames(c), ", "),
		"webhook", c.Intake.Webhook.Enabled, "poll", pollSummary(c), "workers", c.Intake.Workers, "api", len(c.API.Keys) > 0)
	if err := a.run(ctx, ln); err != nil {
		log.Error("serve", "err", err)
		return exitFail
	}
	return exitOK
}

func portalNames(c *config.Config) []string {
	var names []string
	for _, p := range c.Portals {
		names = append(names, p.Name)
	}
	return names
}

func pollSummary(c *config.Config) string {
	if !c.Intake.Poll.Enabled {
		return "off"
	}
	return c.Intake.Poll.Schedule
}

// whoAmIAtStartup retries a failed WhoAmI until the startup deadline: a
// replica started while Dataverse has a passing fault should wait, not exit.
// Authentication failures are not retried; they need an admin.
func whoAmIAtStartup(ctx context.Context, a *app) (*dataverse.WhoAmIResponse, error) {
	wait := 500 * time.Millisecond
	for {
		who, err := a.dv.WhoAmI(ctx)
		if err == nil || errors.Is(err, dataverse.ErrUnauthorized) || errors.Is(err, dataverse.ErrForbidden) {
			return who, err
		}
		a.log.Warn("startup: WhoAmI failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}
