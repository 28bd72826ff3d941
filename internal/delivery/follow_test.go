package delivery_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	smtpd "github.com/emersion/go-smtp"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/delivery"
	"github.com/d365portal/connector/internal/dvtest"
	"github.com/d365portal/connector/internal/invite"
	intake "github.com/d365portal/connector/internal/sync"
)

const followPortal = "Contoso Partner Portal"

// followEnv is the emulator (server-side sync run by hand, on a settable
// clock), the invitation service and a follower over both: real parts, with
// a Dataverse wrapper where a test needs a refusal the emulator does not
// give.
type followEnv struct {
	t        *testing.T
	ctx      context.Context
	em       *emulator.Running
	dv       *dataverse.Client
	clock    *dvtest.Clock
	svc      *invite.Service
	follow   intake.Deliveries
	outcomes *outcomeLog
}

type followOpts struct {
	channel string             // invite channel; default dataverse
	smtp    delivery.Submitter // for the smtp channel
	wrap    func(delivery.Dataverse) delivery.Dataverse
	sync    emulator.EmailSyncOptions // Manual is always set
	tracing trace.TracerProvider      // nil = off
}

type outcomeLog struct {
	mu   sync.Mutex
	list []string
}

func (o *outcomeLog) add(channel, outcome string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.list = append(o.list, channel+"/"+outcome)
}

func (o *outcomeLog) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.list...)
}

func newFollowEnv(t *testing.T, o followOpts) *followEnv {
	t.Helper()
	clk := dvtest.NewClock()
	o.sync.Manual = true
	em, err := emulator.Start(emulator.Options{Auth: emulator.AuthOptions{Disabled: true}, Now: clk.Now, EmailSync: o.sync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	if _, err := emulator.SeedDemo(em.Server); err != nil {
		t.Fatal(err)
	}
	dv, err := dataverse.New(dataverse.Config{URL: em.OrgURL}, nil, &dataverse.Options{HTTPClient: em.HTTPClient,
		RetryDelay: time.Millisecond, MaxRetryDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := invite.New(dv, invite.Config{
		Portals: []invite.Portal{{Name: followPortal, WebsiteID: emulator.DemoSiteID, BaseURL: "https://partners.contoso.example",
			DefaultRoles: []string{"Partners"}, Email: invite.EmailSettings{Sender: "systemuser:" + emulator.DemoMailerUserID, Channel: o.channel}}},
		PasswordHash: invite.HashAspNetV2, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	var fdv delivery.Dataverse = dv
	if o.wrap != nil {
		fdv = o.wrap(dv)
	}
	log := &outcomeLog{}
	f, err := intake.NewDeliveries(svc, delivery.FollowerConfig{
		Dataverse: fdv, SMTP: o.smtp, Now: clk.Now,
		PendingAlertAfter: func(string) time.Duration { return 30 * time.Minute },
		Hooks:             delivery.Hooks{Outcome: log.add}, Tracing: o.tracing,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &followEnv{t: t, ctx: context.Background(), em: em, dv: dv, clock: clk, svc: svc, follow: f, outcomes: log}
}

// invite invites a new contact with address email and returns its id.
func (e *followEnv) invite(email string) string {
	e.t.Helper()
	id, err := e.em.Insert("contact", map[string]any{"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": email})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.svc.Invite(e.ctx, invite.InviteRequest{ContactID: id, Portal: followPortal}); err != nil {
		e.t.Fatal(err)
	}
	if st := e.status(id); st != emulator.InviteSent {
		e.t.Fatalf("after Invite the contact status is %d, want Sent", st)
	}
	return id
}

func (e *followEnv) status(contact string) int {
	row, _ := e.em.Row("contact", contact)
	n, _ := row[emulator.ColInviteStatus].(int)
	return n
}

func (e *followEnv) contactError(contact string) string {
	row, _ := e.em.Row("contact", contact)
	s, _ := row[emulator.ColInviteError].(string)
	return s
}

func (e *followEnv) followOnce(contact, want string) delivery.Result {
	e.t.Helper()
	res, err := e.follow.Follow(e.ctx, contact)
	if err != nil {
		e.t.Fatalf("Follow: %v", err)
	}
	if res.Outcome != want {
		e.t.Fatalf("Follow outcome %q (email status %d, reason %q), want %q", res.Outcome, res.Status, res.Reason, want)
	}
	return res
}

func (e *followEnv) mailerMailbox() string {
	e.t.Helper()
	id, ok := e.em.MailboxOf(emulator.DemoMailerUserID)
	if !ok {
		e.t.Fatal("the demo mailer has no mailbox")
	}
	return id
}

func TestFollowPendingThenDelivered(t *testing.T) {
	e := newFollowEnv(t, followOpts{})
	c := e.invite("ada@example.com")
	e.followOnce(c, delivery.OutcomePending)
	if st := e.status(c); st != emulator.InviteSent {
		t.Fatalf("pending email: contact status %d, want Sent", st)
	}
	if r := e.em.RunEmailSync(); r.Sent != 1 {
		t.Fatalf("sync cycle %+v, want one sent", r)
	}
	res := e.followOnce(c, delivery.OutcomeDelivered)
	if res.Status != delivery.EmailSent {
		t.Errorf("email status %d, want Sent", res.Status)
	}
	if st := e.status(c); st != emulator.InviteDelivered || e.contactError(c) != "" {
		t.Errorf("contact status %d error %q, want Delivered and no error", st, e.contactError(c))
	}
	e.followOnce(c, delivery.OutcomeNone) // recorded once; a duplicate event changes nothing
	if got := e.outcomes.all(); len(got) != 1 || got[0] != "dataverse/delivered" {
		t.Errorf("outcome hooks %v", got)
	}
}

func TestFollowStuckOnUnapprovedMailbox(t *testing.T) {
	e := newFollowEnv(t, followOpts{})
	if err := e.em.SetMailbox(e.mailerMailbox(), map[string]any{"emailrouteraccessapproval": emulator.ApprovalPending}); err != nil {
		t.Fatal(err)
	}
	c := e.invite("grace@example.com")
	if r := e.em.RunEmailSync(); r.Held != 1 {
		t.Fatalf("sync cycle %+v, want the email held", r)
	}
	e.clock.Add(29 * time.Minute)
	e.followOnce(c, delivery.OutcomePending)
	e.clock.Add(2 * time.Minute)
	res := e.followOnce(c, delivery.OutcomeStuck)
	if st := e.status(c); st != emulator.InviteFailed {
		t.Fatalf("contact status %d, want Failed", st)
	}
	got := e.contactError(c)
	if got != res.Reason || !strings.Contains(got, "have not been approved") {
		t.Errorf("contact error %q, want the mailbox's alert", got)
	}
	// The admin approves the mailbox: the email goes out, but the contact
	// keeps the recorded outcome until it is invited again.
	if err := e.em.SetMailbox(e.mailerMailbox(), map[string]any{"emailrouteraccessapproval": emulator.ApprovalApproved}); err != nil {
		t.Fatal(err)
	}
	e.followOnce(c, delivery.OutcomeNone)
}

// denyTracelogs answers 403 for trace logs, as Dataverse does when the
// application user lacks prvReadTraceLog.
type denyTracelogs struct{ delivery.Dataverse }

func (d denyTracelogs) QueryPage(ctx context.Context, set string, q *dataverse.Query, next string) (*dataverse.Page, error) {
	if set == "tracelogs" {
		return nil, &dataverse.Error{StatusCode: http.StatusForbidden, Code: "0x80040220", Message: "Principal user is missing prvReadTraceLog privilege"}
	}
	return d.Dataverse.QueryPage(ctx, set, q, next)
}

func TestFollowStuckWithoutReadableAlerts(t *testing.T) {
	e := newFollowEnv(t, followOpts{wrap: func(dv delivery.Dataverse) delivery.Dataverse { return denyTracelogs{dv} }})
	mb := e.mailerMailbox()
	if err := e.em.SetMailbox(mb, map[string]any{"enabledforoutgoingemail": false}); err != nil {
		t.Fatal(err)
	}
	c := e.invite("alan@example.com")
	e.em.RunEmailSync()
	e.clock.Add(90 * time.Minute)
	e.followOnce(c, delivery.OutcomeStuck)
	row, _ := e.em.Row("mailbox", mb)
	want := "still Pending Send after 30m: check mailbox " + row["name"].(string)
	if got := e.contactError(c); !strings.HasPrefix(got, want) {
		t.Errorf("contact error %q, want it to start with %q", got, want)
	}
}

func TestFollowBounceIsFailedWithAlert(t *testing.T) {
	e := newFollowEnv(t, followOpts{})
	c := e.invite("nobody@contoso.invalid")
	if r := e.em.RunEmailSync(); r.Failed != 1 {
		t.Fatalf("sync cycle %+v, want one failed", r)
	}
	res := e.followOnce(c, delivery.OutcomeFailed)
	if res.Status != delivery.EmailFailed {
		t.Errorf("email status %d, want Failed", res.Status)
	}
	if got := e.contactError(c); !strings.Contains(got, "refused its recipient") || !strings.Contains(got, "nobody@contoso.invalid") {
		t.Errorf("contact error %q, want the bounce alert", got)
	}
	if e.status(c) != emulator.InviteFailed {
		t.Errorf("contact status %d, want Failed", e.status(c))
	}
}

func TestFollowLeavesAContactRequestedAgain(t *testing.T) {
	e := newFollowEnv(t, followOpts{})
	c := e.invite("edsger@example.com")
	e.em.RunEmailSync()
	// The CRM user clicks Invite again before the outcome is recorded.
	if _, err := e.dv.Update(e.ctx, "contacts", c, map[string]any{emulator.ColInviteStatus: emulator.InviteRequested}, nil); err != nil {
		t.Fatal(err)
	}
	e.followOnce(c, delivery.OutcomeNone)
	if e.status(c) != emulator.InviteRequested {
		t.Errorf("contact status %d, want Requested kept", e.status(c))
	}
}

// smtpEnv is a followEnv on the SMTP channel with a plain loopback go-smtp
// server scripted by cfg.
func smtpEnv(t *testing.T, cfg serverConfig) (*followEnv, *testServer) {
	t.Helper()
	cfg.security = "none"
	srv := startServer(t, testPKI{}, cfg)
	sender := newSender(t, srv.host, srv.port, delivery.SMTPOptions{Security: delivery.SecurityNone})
	return newFollowEnv(t, followOpts{channel: invite.ChannelSMTP, smtp: sender}), srv
}

func TestSMTPChannelDelivers(t *testing.T) {
	e, srv := smtpEnv(t, serverConfig{})
	c := e.invite("ada@example.com")
	emailRow := func() map[string]any {
		t.Helper()
		rows := e.em.Rows("email")
		if len(rows) != 1 {
			t.Fatalf("%d email rows, want 1", len(rows))
		}
		return rows[0]
	}
	if st, _ := emailRow()["statuscode"].(int); st != delivery.EmailDraft {
		t.Fatalf("before submission the email is %d, want a draft", st)
	}
	if len(e.em.Outbox()) != 0 {
		t.Fatal("the SMTP channel must not go through server-side sync")
	}
	e.followOnce(c, delivery.OutcomeDelivered)
	msgs := srv.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages at the server, want 1", len(msgs))
	}
	em := emailRow()
	id, _ := em["activityid"].(string)
	wantID := "<" + strings.ToLower(id) + "@contoso.test>"
	if !strings.Contains(string(msgs[0].Data), "Message-ID: "+wantID) {
		t.Errorf("message lacks Message-ID %s:\n%s", wantID, msgs[0].Data)
	}
	// Undo quoted-printable's soft line breaks and escaped "=".
	body := strings.ReplaceAll(strings.ReplaceAll(string(msgs[0].Data), "=\r\n", ""), "=3D", "=")
	if !strings.Contains(body, "https://partners.contoso.example/invitation?code=") {
		t.Errorf("the message does not carry the invitation link:\n%s", body)
	}
	if st, _ := em["statuscode"].(int); st != delivery.EmailSent || em["messageid"] != wantID {
		t.Errorf("email row status %v messageid %v, want Sent and %s", em["statuscode"], em["messageid"], wantID)
	}
	inv := e.em.Rows("adx_invitation")[0]
	if st, _ := inv["statuscode"].(int); st != 756150000 {
		t.Errorf("invitation status %v, want Sent once the server accepted", inv["statuscode"])
	}
	if e.status(c) != emulator.InviteDelivered {
		t.Errorf("contact status %d, want Delivered", e.status(c))
	}
	e.followOnce(c, delivery.OutcomeNone)
	if len(srv.messages()) != 1 {
		t.Error("a second Follow submitted again")
	}
}

func TestSMTPChannelRefusalEndsFailed(t *testing.T) {
	e, _ := smtpEnv(t, serverConfig{onRcpt: func(_ *smtpd.Conn, _ string) error {
		return &smtpd.SMTPError{Code: 550, EnhancedCode: smtpd.EnhancedCode{5, 1, 1}, Message: "mailbox unavailable"}
	}})
	c := e.invite("gone@example.com")
	e.followOnce(c, delivery.OutcomeFailed)
	if got := e.contactError(c); !strings.Contains(got, "550 5.1.1 mailbox unavailable") {
		t.Errorf("contact error %q, want the server's reply", got)
	}
	if st, _ := e.em.Rows("email")[0]["statuscode"].(int); st != delivery.EmailFailed {
		t.Errorf("email status %d, want Failed", st)
	}
}

func TestSMTPChannelTemporaryFailureIsRetried(t *testing.T) {
	var refuse sync.Mutex
	busy := true
	e, srv := smtpEnv(t, serverConfig{onMail: func(_ *smtpd.Conn, _ string) error {
		refuse.Lock()
		defer refuse.Unlock()
		if busy {
			return &smtpd.SMTPError{Code: 451, EnhancedCode: smtpd.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
		return nil
	}})
	c := e.invite("later@example.com")
	_, err := e.follow.Follow(e.ctx, c)
	if !delivery.IsTemporary(err) {
		t.Fatalf("Follow error %v, want a temporary one", err)
	}
	if e.status(c) != emulator.InviteSent {
		t.Errorf("contact status %d after a 451, want Sent kept", e.status(c))
	}
	if got := e.contactError(c); !strings.Contains(got, "451 4.3.0 try again later") || !strings.Contains(got, "tried again") {
		t.Errorf("contact error %q while pending, want the server's 451 and that it is retried", got)
	}
	refuse.Lock()
	busy = false
	refuse.Unlock()
	e.followOnce(c, delivery.OutcomeDelivered)
	if got := e.contactError(c); got != "" {
		t.Errorf("contact error %q after delivery, want it cleared", got)
	}
	if len(srv.messages()) != 1 || len(e.em.Rows("adx_invitation")) != 1 {
		t.Errorf("%d messages, %d invitations; want one each", len(srv.messages()), len(e.em.Rows("adx_invitation")))
	}
}

func TestMailboxCheck(t *testing.T) {
	e := newFollowEnv(t, followOpts{})
	mb, err := delivery.FindMailbox(e.ctx, e.dv, "systemusers", emulator.DemoMailerUserID)
	if err != nil || mb == nil {
		t.Fatalf("FindMailbox: %v, %v", mb, err)
	}
	for _, it := range mb.Check() {
		if !it.OK && !strings.HasPrefix(it.What, "last outgoing test") {
			t.Errorf("demo mailbox: ✗ %s", it.What)
		}
	}
	if err := e.em.SetMailbox(mb.ID, map[string]any{"emailrouteraccessapproval": emulator.ApprovalRejected, "outgoingemaildeliverymethod": emulator.OutgoingNone}); err != nil {
		t.Fatal(err)
	}
	mb, err = delivery.FindMailbox(e.ctx, e.dv, "systemusers", emulator.DemoMailerUserID)
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]string{}
	for _, it := range mb.Check() {
		if !it.OK {
			failed[it.What] = it.Fix
		}
	}
	approval := "email address approved (emailrouteraccessapproval: rejected)"
	method := "outgoing email through server-side synchronization (outgoingemaildeliverymethod: none)"
	if !strings.Contains(failed[approval], "Approve Email") || !strings.Contains(failed[method], "Server-Side Synchronization") {
		t.Errorf("failed items %v", failed)
	}
	if none, err := delivery.FindMailbox(e.ctx, e.dv, "systemusers", "00000000-0000-4000-8000-0000000000ff"); err != nil || none != nil {
		t.Errorf("mailbox of an unknown user: %v, %v", none, err)
	}
}

// After a failed email, asking again sends a new email for the same
// invitation (no second invitation), and its outcome is followed.
func TestInviteAgainAfterFailedEmail(t *testing.T) {
	e := newFollowEnv(t, followOpts{})
	c := e.invite("typo@contoso.invalid")
	e.em.RunEmailSync()
	e.followOnce(c, delivery.OutcomeFailed)
	if _, err := e.dv.Update(e.ctx, "contacts", c, map[string]any{"emailaddress1": "fixed@example.com"}, nil); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	if _, err := e.svc.Invite(e.ctx, invite.InviteRequest{ContactID: c, Portal: followPortal}); err != nil {
		t.Fatal(err)
	}
	if n, m := len(e.em.Rows("adx_invitation")), len(e.em.Rows("email")); n != 1 || m != 2 {
		t.Fatalf("%d invitations and %d emails, want 1 and 2", n, m)
	}
	e.followOnce(c, delivery.OutcomePending)
	e.em.RunEmailSync()
	e.followOnce(c, delivery.OutcomeDelivered)
	// A further click with the email delivered sends nothing new.
	if _, err := e.svc.Invite(e.ctx, invite.InviteRequest{ContactID: c, Portal: followPortal}); err != nil {
		t.Fatal(err)
	}
	if m := len(e.em.Rows("email")); m != 2 {
		t.Errorf("%d emails after a click on a delivered invitation, want 2", m)
	}
}

// The reason is what holds the email now: a quota alert written earlier
// gives way to the newer approval alert.
func TestStuckReasonIsTheNewestAlert(t *testing.T) {
	e := newFollowEnv(t, followOpts{sync: emulator.EmailSyncOptions{Limits: emulator.MailboxLimits{Messages: 1, Recipients: -1}}})
	first := e.invite("first@example.com")
	second := e.invite("second@example.com")
	if r := e.em.RunEmailSync(); r.Sent != 1 || r.Held != 1 {
		t.Fatalf("sync cycle %+v, want one sent and one held by the quota", r)
	}
	e.followOnce(first, delivery.OutcomeDelivered)
	e.clock.Add(time.Minute)
	if err := e.em.SetMailbox(e.mailerMailbox(), map[string]any{"emailrouteraccessapproval": emulator.ApprovalRejected}); err != nil {
		t.Fatal(err)
	}
	e.em.RunEmailSync()
	e.clock.Add(30 * time.Minute)
	e.followOnce(second, delivery.OutcomeStuck)
	if got := e.contactError(second); !strings.Contains(got, "have not been approved") {
		t.Errorf("reason %q, want the approval alert rather than the older quota one", got)
	}
}
