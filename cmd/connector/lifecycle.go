package main

import (
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/lifecycle"
)

// newLifecycle builds the reminder and expiry scheduler over the invite
// service. Reminders of portals on the SMTP channel are left out (with a
// warning): a reminder is created as a Dataverse email, and only the
// invitation flow hands drafts to the SMTP channel. Their expiry still runs.
func newLifecycle(c *config.Config, svc *invite.Service, rdb redis.UniversalClient, m lifecycle.Metrics, log *slog.Logger) (*lifecycle.Scheduler, error) {
	lc := svc.Lifecycle(invite.LifecycleConfig{ExpiredStatus: c.Intake.Contact.Status.Expired})
	var portals []lifecycle.Portal
	for _, p := range c.Portals {
		lp := p.LifecyclePortal()
		if p.Email.Channel == config.ChannelSMTP && len(lp.Reminders) > 0 {
			log.Warn("reminders are not sent for portals on the smtp email channel; invitations still expire", "portal", p.Name)
			lp.Reminders = nil
		}
		portals = append(portals, lp)
	}
	s, err := lifecycle.New(lifecycle.Config{
		Portals: portals, Invitations: lc, Reminder: lc, Expirer: lc, Redis: rdb, Metrics: m, Logger: log,
		Schedule: c.Intake.Lifecycle.Schedule, Lease: c.Intake.Lifecycle.Lease.D(), KeyPrefix: c.Redis.KeyPrefix,
	})
	if err != nil {
		return nil, fmt.Errorf("lifecycle: %w", err)
	}
	return s, nil
}
