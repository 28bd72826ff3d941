package invite

import (
	"errors"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/lifecycle"
	"github.com/d365portal/connector/internal/redistest"
)

var codeLinkRE = regexp.MustCompile(`/invitation\?code=([A-Za-z0-9_-]+)`)

// TestLifecycleRemindersAndExpiry drives the scheduler over the emulator
// and a real Redis with the service's clock: each reminder arrives once
// with a link whose code redeems (the old hashed code is replaced), a
// redeemed invitation gets none, and an expired unredeemed invitation
// turns its contact Expired once.
func TestLifecycleRemindersAndExpiry(t *testing.T) {
	const day = 24 * time.Hour
	e := newEnv(t, func(c *Config) { c.Portals[0].ExpiresAfter = 14 * day })
	rdb := redistest.Start(t).Client(t)
	lc := e.svc.Lifecycle(LifecycleConfig{PageSize: 1}) // one row a page: Due must follow the pages
	sched, err := lifecycle.New(lifecycle.Config{
		Portals:     []lifecycle.Portal{{Name: partnerPortal, ExpiresAfter: 14 * day, Reminders: []time.Duration{7 * day, day}}},
		Invitations: lc, Reminder: lc, Expirer: lc, Redis: rdb, Clock: e.clock.Now, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	first := e.invite(e.contact(0), partnerPortal)
	redeemed := e.invite(e.contact(1), partnerPortal)
	addr := str(e.row("contact", e.contact(0))["emailaddress1"])
	tick := func(want lifecycle.Report) {
		t.Helper()
		rep, err := sched.Tick(e.ctx)
		if err != nil || rep.RemindersSent != want.RemindersSent || rep.Expired != want.Expired ||
			rep.RemindersFailed != 0 || rep.ExpiryFailed != 0 {
			t.Fatalf("tick at +%v: %+v, %v; want %+v", e.clock.Now().Sub(first.Invitation.CreatedOn), rep, err, want)
		}
	}

	tick(lifecycle.Report{}) // nothing due yet
	if n := len(e.emailsTo(addr)); n != 1 {
		t.Fatalf("%d emails before any reminder is due; want the invitation only", n)
	}
	// Contact 1 redeems its invitation: it gets no reminders.
	if _, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(redeemed.Code), Username: "redeemer1", Password: goodPassword}); err != nil {
		t.Fatalf("redeem: %v", err)
	}

	e.clock.Add(8 * day) // 6 days left: reminder 0 (7d)
	tick(lifecycle.Report{RemindersSent: 1})
	mails := e.emailsTo(addr)
	if len(mails) != 2 || !strings.HasPrefix(mails[1].Subject, "Reminder: ") || mails[1].RegardingID != first.Invitation.ID {
		t.Fatalf("after the 7d reminder: %d emails, last %q regarding %s", len(mails), mails[len(mails)-1].Subject, mails[len(mails)-1].RegardingID)
	}
	m := codeLinkRE.FindStringSubmatch(mails[1].HTML)
	if m == nil {
		t.Fatalf("no invitation link in the reminder %q", mails[1].HTML)
	}
	if inv, err := e.svc.Lookup(e.ctx, m[1]); err != nil || inv.ID != first.Invitation.ID {
		t.Fatalf("reminder link code: %v, %v; want the open invitation", inv, err)
	}
	if _, err := e.svc.Lookup(e.ctx, string(first.Code)); !errors.Is(err, ErrCodeUnknown) {
		t.Fatalf("old hashed code after the reminder: %v; want unknown (replaced)", err)
	}
	tick(lifecycle.Report{}) // recorded: not again
	// A replica that crashed after sending retries without the record: the
	// reminder email it finds stops a second one.
	if err := lc.Send(e.ctx, lifecycle.Invitation{ID: first.Invitation.ID, Portal: partnerPortal}, 0); !errors.Is(err, lifecycle.ErrNothingToDo) {
		t.Fatalf("repeated reminder 0: %v; want nothing to do", err)
	}
	if n := len(e.emailsTo(addr)); n != 2 {
		t.Fatalf("%d emails after a repeated reminder 0; want 2", n)
	}

	e.clock.Add(5*day + 12*time.Hour) // 12 hours left: reminder 1 (1d)
	tick(lifecycle.Report{RemindersSent: 1})
	mails = e.emailsTo(addr)
	if len(mails) != 3 {
		t.Fatalf("%d emails after the 1d reminder; want 3", len(mails))
	}
	if m := codeLinkRE.FindStringSubmatch(mails[2].HTML); m == nil {
		t.Fatal("no link in the second reminder")
	} else if inv, err := e.svc.Lookup(e.ctx, m[1]); err != nil || inv.ID != first.Invitation.ID {
		t.Fatalf("second reminder's code: %v", err)
	}
	if n := len(e.emailsTo(str(e.row("contact", e.contact(1))["emailaddress1"]))); n != 1 {
		t.Fatalf("the redeemed contact got %d emails; want its invitation only", n)
	}

	e.clock.Add(day) // expired
	tick(lifecycle.Report{Expired: 1})
	c := e.row("contact", e.contact(0))
	if num(c["pinv_portalinvitestatus"]) != DefaultExpiredStatus || !strings.Contains(str(c["pinv_lastinviteerror"]), "expired") {
		t.Fatalf("contact after expiry: status %v, error %v", c["pinv_portalinvitestatus"], c["pinv_lastinviteerror"])
	}
	// Once: a later status (someone set it back) is not overwritten by the
	// next tick, which finds the expiry recorded.
	if _, err := e.dv.Update(e.ctx, "contacts", e.contact(0), map[string]any{"pinv_portalinvitestatus": DefaultContactColumns.Sent}, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := sched.Tick(e.ctx)
	if err != nil || rep.Expired != 0 || rep.Done != 1 {
		t.Fatalf("tick after expiry: %+v, %v; want the expiry done before", rep, err)
	}
	if got := num(e.row("contact", e.contact(0))["pinv_portalinvitestatus"]); got != DefaultContactColumns.Sent {
		t.Fatalf("contact status %d after a second tick; want it left alone", got)
	}
	if n := len(e.emailsTo(addr)); n != 3 {
		t.Fatalf("%d emails in the end; want 3", n)
	}
}
