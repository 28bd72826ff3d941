package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/delivery"
	intake "github.com/d365portal/connector/internal/sync"
)

// newDeliveries builds the follower of invitation emails: each portal's
// pending_alert_after, and the SMTP sender when a portal uses the smtp
// channel.
func newDeliveries(c *config.Config, dv *dataverse.Client, svc intake.InvitationDeliveries, hooks delivery.Hooks, log *slog.Logger, tp trace.TracerProvider) (intake.Deliveries, error) {
	sender, err := smtpSender(c, log)
	if err != nil {
		return nil, err
	}
	after := map[string]time.Duration{}
	for _, p := range c.Portals {
		after[strings.ToLower(p.Name)] = p.PendingAlertAfterOf()
	}
	fc := delivery.FollowerConfig{
		Dataverse: dv, Logger: log, Hooks: hooks, Tracing: tp,
		PendingAlertAfter: func(portal string) time.Duration {
			if d, ok := after[strings.ToLower(portal)]; ok {
				return d
			}
			return config.DefaultPendingAlertAfter
		},
	}
	if sender != nil {
		fc.SMTP = sender
	}
	d, err := intake.NewDeliveries(svc, fc)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	return d, nil
}

// smtpSender is the smtp block's sender, or nil when no portal uses it.
func smtpSender(c *config.Config, log *slog.Logger) (*delivery.SMTPSender, error) {
	if !c.UsesSMTP() {
		return nil, nil
	}
	s := c.SMTP
	sender, err := delivery.NewSMTPSender(delivery.SMTPOptions{
		Host: s.Host, Port: s.Port, Security: delivery.Security(s.Security), Username: s.Username, Password: s.Password,
		From: s.From, Logger: log.With("component", "smtp"),
	})
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	return sender, nil
}

// deliveryRecheck is how often the delivery poll looks again at a contact
// still Sent: a quarter of the shortest pending_alert_after, between 5s and
// a minute, so a stuck email is reported soon after its time.
func deliveryRecheck(c *config.Config) time.Duration {
	d := time.Minute
	for _, p := range c.Portals {
		d = min(d, p.PendingAlertAfterOf()/4)
	}
	return max(d, 5*time.Second)
}

// checkMailboxes checks each portal's sender mailbox: what server-side sync
// needs to send (approved, outgoing through server-side sync, active,
// enabled, last test passed) and its newest alert.
func checkMailboxes(ctx context.Context, cl *checklist, c *config.Config, dv *dataverse.Client) {
	seen := map[string]bool{}
	for _, p := range c.Portals {
		if p.Email.Channel == config.ChannelSMTP {
			cl.ok("portal %q: email through the SMTP server %s (no Dataverse mailbox involved)", p.Name, c.SMTP.Host)
			continue
		}
		kind, id, ok := strings.Cut(p.Email.Sender, ":")
		if !ok || (kind != "systemuser" && kind != "queue") {
			cl.ok("portal %q: emails are sent from the CRM user who clicks Invite; each such user's mailbox must be approved and enabled for outgoing email", p.Name)
			continue
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		mb, err := delivery.FindMailbox(ctx, dv, kind+"s", id)
		switch {
		case err != nil:
			cl.fail("give the connector's security role Read on Mailbox (prvReadMailbox, organization level) and Read on Trace Log (prvReadTraceLog); see docs/ADMIN.md",
				"portal %q: mailbox of %s: %s", p.Name, p.Email.Sender, firstLine(err))
			continue
		case mb == nil:
			cl.fail("open the "+kind+" in Dynamics 365 and give it a mailbox (Settings → Email → Mailboxes → New), then approve and Test & Enable it",
				"portal %q: %s has no mailbox", p.Name, p.Email.Sender)
			continue
		}
		cl.ok("portal %q: sender mailbox %s exists", p.Name, mb.Label())
		for _, it := range mb.Check() {
			if it.OK {
				cl.ok("mailbox %s: %s", mb.Label(), it.What)
			} else {
				cl.fail(it.Fix, "mailbox %s: %s", mb.Label(), it.What)
			}
		}
		alerts, err := delivery.Alerts(ctx, dv, mb.ID, 1)
		switch {
		case err != nil:
			cl.fail("give the connector's security role Read on Trace Log (prvReadTraceLog), so failed emails show the mailbox's alert on the contact",
				"mailbox %s: alerts: %s", mb.Label(), firstLine(err))
		case len(alerts) > 0:
			fmt.Fprintf(cl.w, "  newest alert of %s (%s): %s\n", mb.Label(), alerts[0].At.UTC().Format(time.RFC3339), firstLine(fmt.Errorf("%s", alerts[0].Text)))
		}
	}
}
