package config

import (
	"time"

	"github.com/robfig/cron/v3"

	"github.com/d365portal/connector/internal/lifecycle"
)

// Lifecycle is how often replicas look for reminders to send and
// invitations that expired.
type Lifecycle struct {
	// Schedule is a cron spec (five fields or a descriptor such as
	// "@every 5m"). Default lifecycle.DefaultSchedule.
	Schedule string `yaml:"schedule"`
	// Lease is how long a replica's claim on one reminder or expiry keeps
	// the others off it: a replica that dies holding a claim delays that
	// action by up to a lease. Default lifecycle.DefaultLease.
	Lease Duration `yaml:"lease"`
}

func (c *Config) applyLifecycleDefaults(present map[string]bool) {
	if !present["intake.lifecycle.schedule"] && c.Intake.Lifecycle.Schedule == "" {
		c.Intake.Lifecycle.Schedule = lifecycle.DefaultSchedule
	}
	if !present["intake.lifecycle.lease"] && c.Intake.Lifecycle.Lease == 0 {
		c.Intake.Lifecycle.Lease = Duration(lifecycle.DefaultLease)
	}
}

// LifecyclePortal is portal p's reminder and expiry settings as the
// scheduler takes them.
func (p Portal) LifecyclePortal() lifecycle.Portal {
	out := lifecycle.Portal{Name: p.Name, ExpiresAfter: p.Invitation.ExpiresAfter.D()}
	for _, d := range p.Invitation.Reminders {
		out.Reminders = append(out.Reminders, d.D())
	}
	return out
}

// validateLifecycle checks the schedule and each portal's reminders
// (positive, shorter than expires_after, not repeated).
func (c *Config) validateLifecycle(v *validator) {
	if _, err := cron.ParseStandard(c.Intake.Lifecycle.Schedule); err != nil {
		v.add("intake.lifecycle.schedule", "must be a cron spec such as \"@every 5m\": %v", err)
	}
	// Send and Expire run under half the lease: below 10s a slow Dataverse
	// answer would outlive the claim and another replica could act too.
	if c.Intake.Lifecycle.Lease.D() < 10*time.Second {
		v.add("intake.lifecycle.lease", "must be at least 10s")
	}
	for i, p := range c.Portals {
		if p.Invitation.ExpiresAfter < 0 {
			continue // reported by the portal checks
		}
		for _, pr := range lifecycle.CheckPortal(p.LifecyclePortal()) {
			v.add(portalKey(i, "invitation."+pr.Key), "%s", pr.Message)
		}
	}
}
