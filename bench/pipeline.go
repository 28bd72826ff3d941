package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
	intake "github.com/d365portal/connector/internal/sync"
)

// inProcess is the connector's intake pipeline wired in this process the
// way cmd/connector wires it (the same packages and defaults), for the parts
// that need a knob the binary does not expose: the pacer's window when the
// emulator's limits are scaled down, or a byte-counting transport.
type inProcess struct {
	dv     *dataverse.Client
	invite *invite.Service
	intake *intake.Intake
	rdb    redis.UniversalClient
}

type inProcessOptions struct {
	Org        *org
	Redis      *redisServer
	Window     time.Duration // the emulator's service-protection window (pacer); 0 = Dataverse's 300s
	Workers    int
	Poll       bool
	Hooks      intake.Hooks
	DVHooks    dataverse.Hooks
	HTTPClient *http.Client // default: the emulator's client
}

func newInProcess(o inProcessOptions) (*inProcess, error) {
	g := o.Org
	dv, err := g.client(g.ClientID, g.ClientSecret, dataverse.Config{},
		&dataverse.Options{RateLimitWindow: o.Window, Hooks: o.DVHooks, HTTPClient: o.HTTPClient})
	if err != nil {
		return nil, err
	}
	rdb := o.Redis.client()
	cols := invite.DefaultContactColumns
	svc, err := invite.New(dv, invite.Config{
		Portals: []invite.Portal{{
			Name: partnerPortal, DataModel: invite.ModelEnhanced, WebsiteID: g.seed.SiteID,
			BaseURL: "https://partners.contoso.example", DefaultRoles: clickRoles,
			ExpiresAfter: 14 * 24 * time.Hour, MaxRedemptions: 1, CodeStorage: invite.CodeHashed,
			Email: invite.EmailSettings{Sender: "systemuser:" + g.seed.MailerUserID, Subject: "You're invited to {{.PortalName}}"},
		}},
		Contact: cols, PasswordHash: invite.HashAspNetV3, TokenSecret: []byte(tokenSecret),
		Locker: intake.NewLocker(rdb, "pinv:"), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("invite: %w", err)
	}
	in, err := intake.New(intake.Config{
		Redis: rdb, KeyPrefix: "pinv:", Invites: svc, Dataverse: dv, Contact: cols, DefaultPortal: partnerPortal,
		Poll: intake.PollConfig{Enabled: o.Poll, Schedule: "@every 1h"}, Workers: o.Workers,
		Logger: slog.New(slog.DiscardHandler), Hooks: o.Hooks,
	})
	if err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("intake: %w", err)
	}
	return &inProcess{dv: dv, invite: svc, intake: in, rdb: rdb}, nil
}
