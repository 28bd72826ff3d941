package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

type deliveryChaosResult struct {
	Contacts      int                `json:"contacts"`
	Replicas      int                `json:"replicas"`
	Delivered     int                `json:"delivered"`
	Failed        int                `json:"failed"`
	FailedNoText  int                `json:"failed_without_reason"`
	StillSent     int                `json:"still_sent"`
	Other         int                `json:"other"`
	Invitations   int                `json:"invitations"`
	MaxPerContact int                `json:"max_invitations_per_contact"`
	Activities    int                `json:"email_activities"`
	MaxActivities int                `json:"max_email_activities_per_contact"`
	EmailStatus   map[int]int        `json:"email_status"`
	OutboxMax     int                `json:"max_sent_to_one_recipient"`
	Reasons       []string           `json:"reasons"`
	QueueLeft     int64              `json:"queue_left"`
	DeadLetters   int64              `json:"dead_letters"`
	Counters      map[string]float64 `json:"counters"`
	Events        []string           `json:"events"`
	Elapsed       string             `json:"elapsed"`
}

// chaosDelivery: invitations split over two portals whose emails leave
// through two sender mailboxes (the demo mailer user and the demo queue);
// halfway through the clicks the queue's mailbox loses its approval, so
// server-side sync holds its emails in Pending Send with an alert. Every
// contact must end Delivered or Failed with a reason, none Sent, with one
// invitation and one email activity each.
func chaosDelivery(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "delivery", Title: "Every invitation email followed to Delivered or Failed: two sender mailboxes, one unapproved halfway"}
	n := 1000
	if o.quick {
		n = 100
	}
	if o.contacts > 0 {
		n = o.contacts
	}
	res, err := runDeliveryChaos(ctx, h, n, o.quick)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	sec.Columns = []string{"check", "expected", "got"}
	sec.row("contacts Delivered + Failed", n, res.Delivered+res.Failed)
	sec.row("contacts still Sent / other", "0 / 0", fmt.Sprintf("%d / %d", res.StillSent, res.Other))
	sec.row("Failed without a reason", 0, res.FailedNoText)
	sec.row("invitations (most for one contact)", fmt.Sprintf("%d (1)", n), fmt.Sprintf("%d (%d)", res.Invitations, res.MaxPerContact))
	sec.row("email activities (most for one contact)", fmt.Sprintf("%d (1)", n), fmt.Sprintf("%d (%d)", res.Activities, res.MaxActivities))
	sec.row("most emails sent to one recipient", "≤ 1", res.OutboxMax)
	sec.row("dead letters / left in the queue", "0 / 0", fmt.Sprintf("%d / %d", res.DeadLetters, res.QueueLeft))
	sec.check(res.Delivered+res.Failed == n && res.StillSent == 0 && res.Other == 0, "outcomes: %d Delivered, %d Failed, %d still Sent, %d other of %d", res.Delivered, res.Failed, res.StillSent, res.Other, n)
	sec.check(res.FailedNoText == 0, "%d Failed contacts without a reason", res.FailedNoText)
	sec.check(res.Invitations == n && res.MaxPerContact == 1, "invitations: %d (max %d per contact), want %d", res.Invitations, res.MaxPerContact, n)
	sec.check(res.Activities == n && res.MaxActivities == 1, "email activities: %d (max %d per contact), want %d", res.Activities, res.MaxActivities, n)
	sec.check(res.OutboxMax <= 1, "an address got %d emails", res.OutboxMax)
	sec.check(res.DeadLetters == 0 && res.QueueLeft == 0, "queue: %d dead letters, %d left", res.DeadLetters, res.QueueLeft)
	sec.note("%d replicas of `connector serve`; emulated server-side sync: 300 ms in Pending Send, mailbox limits compressed 60× (30 messages per second, retry after 1 s), every webhook delivered twice with probability 0.5; `pending_alert_after: 20s`, poll every 2s. Half the contacts are invited to the partner portal (sender: the mailer user's mailbox), half to the customer portal (sender: the queue's mailbox).", res.Replicas)
	sec.note("Failed reasons: %s.", strings.Join(res.Reasons, "; "))
	sec.note("Email activities by statuscode: %v (3 Sent, 6 Pending Send held by the unapproved mailbox, 8 Failed).", res.EmailStatus)
	k := res.Counters
	sec.note("Replica counters: invitation emails delivered %.0f, failed %.0f, stuck %.0f; webhook deliveries accepted %.0f, duplicate %.0f, ignored %.0f.",
		k[`connector_invitation_emails_total{channel="dataverse",outcome="delivered"}`], k[`connector_invitation_emails_total{channel="dataverse",outcome="failed"}`],
		k[`connector_invitation_emails_total{channel="dataverse",outcome="stuck"}`],
		k[`connector_webhook_deliveries_total{outcome="accepted"}`], k[`connector_webhook_deliveries_total{outcome="duplicate"}`], k[`connector_webhook_deliveries_total{outcome="ignored"}`])
	sec.note("Timeline: %s. Settled after %s.", strings.Join(res.Events, "; "), res.Elapsed)
	sec.Data = res
	return sec
}

func runDeliveryChaos(ctx context.Context, h *harness, n int, quick bool) (*deliveryChaosResult, error) {
	st, err := h.stage("chaos-delivery")
	if err != nil {
		return nil, err
	}
	defer st.close()
	c, err := st.startCluster(ctx, clusterOptions{
		Emulator: emulator.Options{
			Webhooks: emulator.WebhookOptions{Duplicate: 0.5},
			EmailSync: emulator.EmailSyncOptions{Delay: 300 * time.Millisecond, Retry: time.Second,
				Limits: emulator.MailboxLimits{MessageWindow: time.Second, Messages: 30, RecipientWindow: 24 * time.Minute, Recipients: 10000}},
		},
		Replicas: 3,
		Config: connectorConfig{PollSchedule: "@every 2s", Lease: 10 * time.Second,
			EmailExtra:     "      pending_alert_after: 20s\n",
			CustomerSender: func(g *org) string { return "queue:" + g.seed.QueueID }},
	})
	if err != nil {
		return nil, err
	}
	cs, err := c.org.insertContacts("delivery", n, nil)
	if err != nil {
		return nil, err
	}
	res := &deliveryChaosResult{Contacts: n, Replicas: len(c.replicas)}
	start := time.Now()
	var evMu sync.Mutex
	event := func(format string, args ...any) {
		msg := fmt.Sprintf("%.1fs ", time.Since(start).Seconds()) + fmt.Sprintf(format, args...)
		evMu.Lock()
		res.Events = append(res.Events, msg)
		evMu.Unlock()
		st.logf("%s", msg)
	}
	queueMailbox := c.org.seed.Mailboxes["queue"]
	var once sync.Once
	err = parallel(ctx, 8, n, func(i int) error {
		if i == n/2 {
			once.Do(func() {
				if err := c.org.SetMailbox(queueMailbox, map[string]any{"emailrouteraccessapproval": emulator.ApprovalPending}); err != nil {
					event("could not unapprove the queue's mailbox: %v", err)
					return
				}
				event("the queue's mailbox is pending approval (click %d of %d)", i, n)
			})
		}
		if i%2 == 0 {
			return c.org.clickPortal(ctx, cs[i].ID, partnerPortal, clickRoles)
		}
		return c.org.clickPortal(ctx, cs[i].ID, customerPortal, []string{"Customers"})
	})
	if err != nil {
		return nil, err
	}
	event("all %d clicks done", n)
	timeout := 6 * time.Minute
	if quick {
		timeout = 2 * time.Minute
	}
	counts, werr := c.org.waitOutcomes(ctx, cs, timeout, func(m map[int]int) {
		st.logf("Requested %d, Sent %d, Delivered %d, Failed %d", m[emulator.InviteRequested], m[emulator.InviteSent], m[emulator.InviteDelivered], m[emulator.InviteFailed])
	})
	if werr == nil {
		event("no contact Requested or Sent")
	}
	res.Elapsed = time.Since(start).Round(100 * time.Millisecond).String()
	left, dead, derr := drainQueue(ctx, c.redis, 60*time.Second)
	res.QueueLeft, res.DeadLetters = left, dead
	res.Delivered, res.Failed, res.StillSent = counts[emulator.InviteDelivered], counts[emulator.InviteFailed], counts[emulator.InviteSent]
	res.Other = n - res.Delivered - res.Failed - res.StillSent
	out := c.org.outcome(cs)
	res.Invitations, res.MaxPerContact, res.OutboxMax = out.Invitations, out.MaxPerContact, out.MaxEmailsPerOne
	res.Activities, res.MaxActivities, res.EmailStatus = c.org.emailActivities(cs)
	res.FailedNoText, res.Reasons = c.org.reasonSummary(cs)
	res.Counters = scrapeCounters(c.replicas, "connector_invitation_emails_total", "connector_webhook_deliveries_total")
	if werr != nil {
		for _, r := range c.replicas {
			st.logf("%s log tail:\n%s", r.Name, r.logTail(10))
		}
		return res, werr
	}
	return res, derr
}

type smtpChaosResult struct {
	Contacts    int         `json:"contacts"`
	Delivered   int         `json:"delivered"`
	Statuses    map[int]int `json:"statuses"`
	Received    int         `json:"messages_received"`
	Recipients  int         `json:"recipients_reached"`
	Duplicates  int         `json:"duplicates"`
	Cuts        int         `json:"connections_cut_after_dot"`
	MixedIDs    int         `json:"recipients_with_different_message_ids"`
	Invitations int         `json:"invitations"`
	MaxPer      int         `json:"max_invitations_per_contact"`
	Activities  int         `json:"email_activities"`
	EmailStatus map[int]int `json:"email_status"`
	DeadLetters int64       `json:"dead_letters"`
	QueueLeft   int64       `json:"queue_left"`
	Elapsed     string      `json:"elapsed"`
}

// chaosSMTP: the SMTP channel against a server that cuts 10% of the
// connections after the message's final dot. Every invitation must be
// delivered at least once; each cut costs one duplicate with the same
// Message-ID, which the report counts.
func chaosSMTP(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "smtp", Title: "SMTP channel with 10% of connections cut after the message"}
	n := 1000
	if o.quick {
		n = 100
	}
	if o.contacts > 0 {
		n = o.contacts
	}
	res, err := runSMTPChaos(ctx, h, n, o.quick)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	sec.Columns = []string{"check", "expected", "got"}
	sec.row("recipients that received the invitation", n, res.Recipients)
	sec.row("contacts Delivered", n, res.Delivered)
	sec.row("messages received (duplicates)", fmt.Sprintf("≥ %d", n), fmt.Sprintf("%d (%d)", res.Received, res.Duplicates))
	sec.row("connections cut after the dot", "≈ 10%", fmt.Sprintf("%d (%.1f%% of sessions)", res.Cuts, 100*float64(res.Cuts)/float64(max(res.Received, 1))))
	sec.row("duplicates with a different Message-ID", 0, res.MixedIDs)
	sec.row("invitations / email activities", fmt.Sprintf("%d / %d", n, n), fmt.Sprintf("%d / %d", res.Invitations, res.Activities))
	sec.row("dead letters / left in the queue", "0 / 0", fmt.Sprintf("%d / %d", res.DeadLetters, res.QueueLeft))
	sec.check(res.Recipients == n, "%d of %d invitations reached their recipient", res.Recipients, n)
	sec.check(res.Delivered == n, "contacts Delivered: %d of %d (%v)", res.Delivered, n, res.Statuses)
	sec.check(res.Duplicates <= res.Cuts, "%d duplicates for %d cuts", res.Duplicates, res.Cuts)
	sec.check(res.MixedIDs == 0, "%d recipients got copies with different Message-IDs", res.MixedIDs)
	sec.check(res.Invitations == n && res.MaxPer == 1 && res.Activities == n, "invitations %d (max %d per contact), email activities %d; want %d each", res.Invitations, res.MaxPer, res.Activities, n)
	sec.check(res.DeadLetters == 0 && res.QueueLeft == 0, "queue: %d dead letters, %d left", res.DeadLetters, res.QueueLeft)
	sec.note("2 replicas of `connector serve`, `email.channel: smtp` to an in-process go-smtp server on loopback (security none), which cuts a seeded 10%% of connections after the final dot without replying. The connector retries those through the queue (intake retry backoff from 5 s); every copy carries the email activity's Message-ID. %d invitations: %d duplicates (%.1f%% of invitations) for %d cuts; email activities by statuscode %v. Settled after %s.",
		n, res.Duplicates, 100*float64(res.Duplicates)/float64(n), res.Cuts, res.EmailStatus, res.Elapsed)
	sec.Data = res
	return sec
}

func runSMTPChaos(ctx context.Context, h *harness, n int, quick bool) (*smtpChaosResult, error) {
	st, err := h.stage("chaos-smtp")
	if err != nil {
		return nil, err
	}
	defer st.close()
	sink, err := startSMTPSink(0.10, uint64(time.Now().UnixNano()))
	if err != nil {
		return nil, err
	}
	st.onClose(sink.close)
	c, err := st.startCluster(ctx, clusterOptions{
		Replicas: 2,
		Config: connectorConfig{PollSchedule: "@every 5s", Lease: 10 * time.Second,
			EmailExtra: "      channel: smtp\n", TopLevel: sink.smtpYAML()},
	})
	if err != nil {
		return nil, err
	}
	cs, err := c.org.insertContacts("smtp", n, nil)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if _, err := c.org.clickAll(ctx, cs, 8, 0); err != nil {
		return nil, err
	}
	timeout := 6 * time.Minute
	if quick {
		timeout = 2 * time.Minute
	}
	counts, werr := c.org.waitOutcomes(ctx, cs, timeout, func(m map[int]int) {
		st.logf("Requested %d, Sent %d, Delivered %d, Failed %d", m[emulator.InviteRequested], m[emulator.InviteSent], m[emulator.InviteDelivered], m[emulator.InviteFailed])
	})
	res := &smtpChaosResult{Contacts: n, Statuses: counts, Delivered: counts[emulator.InviteDelivered]}
	res.Elapsed = time.Since(start).Round(100 * time.Millisecond).String()
	left, dead, derr := drainQueue(ctx, c.redis, 60*time.Second)
	res.QueueLeft, res.DeadLetters = left, dead
	got, cuts := sink.received()
	res.Cuts = cuts
	for _, ct := range cs {
		ids := got[strings.ToLower(ct.Email)]
		res.Received += len(ids)
		if len(ids) > 0 {
			res.Recipients++
			res.Duplicates += len(ids) - 1
			for _, id := range ids[1:] {
				if id != ids[0] {
					res.MixedIDs++
					break
				}
			}
		}
	}
	out := c.org.outcome(cs)
	res.Invitations, res.MaxPer = out.Invitations, out.MaxPerContact
	res.Activities, _, res.EmailStatus = c.org.emailActivities(cs)
	if werr != nil {
		for _, r := range c.replicas {
			st.logf("%s log tail:\n%s", r.Name, r.logTail(10))
		}
		return res, werr
	}
	return res, derr
}
