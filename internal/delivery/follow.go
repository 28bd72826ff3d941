package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/telemetry"
)

// Awaiting is an invitation email that was handed over and whose outcome is
// not recorded yet, as the invitation domain describes it.
type Awaiting struct {
	ContactID string
	Portal    string
	Channel   string // ChannelDataverse or ChannelSMTP
	EmailID   string // the email activity to follow; "" when there is none
	// Email is that email's row when the caller read it already (the
	// columns of EmailColumns, and description on the SMTP channel); nil
	// makes Follow read it.
	Email  dataverse.Record
	To     string // recipient address (SMTP channel)
	ToName string
	// SenderTable ("systemusers" or "queues") and SenderID name whose
	// mailbox sends the email; "" when unknown.
	SenderTable, SenderID string
	// HandedAt is when the email was handed over (the contact's invited-on
	// time); zero means the email's createdon is used.
	HandedAt time.Time
	// Ref is the domain's own handle, passed back to Record*.
	Ref any
}

// Channels.
const (
	ChannelDataverse = "dataverse"
	ChannelSMTP      = "smtp"
)

// Invitations is what the follower needs from the invitation domain, which
// alone knows the contact and invitation schema.
type Invitations interface {
	// AwaitingDelivery returns the contact's invitation email awaiting an
	// outcome, or nil when the contact does not show Sent.
	AwaitingDelivery(ctx context.Context, contactID string) (*Awaiting, error)
	// RecordDelivered and RecordDeliveryFailed write the outcome on the
	// contact, conditional on it not having changed since AwaitingDelivery.
	RecordDelivered(ctx context.Context, a *Awaiting) error
	RecordDeliveryFailed(ctx context.Context, a *Awaiting, reason string) error
	// RecordDeliveryPending writes why the email is not out yet while the
	// contact stays Sent (it is tried again).
	RecordDeliveryPending(ctx context.Context, a *Awaiting, reason string) error
	// InvitationContact maps an email's regarding row to the invited
	// contact; ok is false when the row is not an invitation.
	InvitationContact(ctx context.Context, regardingTable, regardingID string) (contactID string, ok bool, err error)
}

// Dataverse is the part of the Web API client the follower uses;
// *dataverse.Client satisfies it.
type Dataverse interface {
	Reader
	Update(ctx context.Context, set, id string, body any, o *dataverse.WriteOptions) (dataverse.Record, error)
	CallAction(ctx context.Context, name string, bound *dataverse.EntityRef, params any, out any) error
}

var _ Dataverse = (*dataverse.Client)(nil)

// Submitter submits one message over SMTP; *SMTPSender satisfies it.
type Submitter interface {
	Send(ctx context.Context, m Message) (Receipt, error)
}

var _ Submitter = (*SMTPSender)(nil)

// Outcomes of Follow.
const (
	OutcomeDelivered = "delivered" // the mail server accepted the email; the contact shows Delivered
	OutcomeFailed    = "failed"    // Dataverse set Failed, or the SMTP server refused; the contact shows Failed
	OutcomeStuck     = "stuck"     // still not sent after PendingAlertAfter; the contact shows Failed
	OutcomePending   = "pending"   // not sent yet; look again later
	OutcomeNone      = "none"      // nothing to follow (the contact does not show Sent)
)

// Hooks are optional metrics callbacks, called synchronously.
type Hooks struct {
	// Outcome reports each recorded outcome (delivered, failed, stuck) by
	// channel, with the time from handing the email over to the outcome.
	Outcome func(channel, outcome string, handedToOutcome time.Duration)
}

// FollowerConfig configures a Follower. Zero values mean the defaults
// beside each field.
type FollowerConfig struct {
	Dataverse   Dataverse   // required
	Invitations Invitations // required
	// SMTP submits the emails of ChannelSMTP portals; nil when none uses it.
	SMTP Submitter
	// PendingAlertAfter is how long an email of portal may stay unsent
	// before the contact is marked Failed; default 30 minutes.
	PendingAlertAfter func(portal string) time.Duration
	Now               func() time.Time // default time.Now
	Logger            *slog.Logger     // nil discards
	Hooks             Hooks
	// Tracing makes each SMTP submission a client span; nil = off.
	Tracing trace.TracerProvider
}

// Follower follows invitation emails to their outcome and has the
// invitation domain write it on the contact. It is safe for concurrent use;
// callers serialise work on one contact (sync holds a per-contact lock).
type Follower struct {
	dv    Dataverse
	inv   Invitations
	smtp  Submitter
	after func(string) time.Duration
	now   func() time.Time
	log   *slog.Logger
	hooks Hooks
	// tracer is nil with tracing off.
	tracer trace.Tracer
}

// DefaultPendingAlertAfter is the default of FollowerConfig.PendingAlertAfter.
const DefaultPendingAlertAfter = 30 * time.Minute

// NewFollower checks cfg and returns a Follower.
func NewFollower(cfg FollowerConfig) (*Follower, error) {
	if cfg.Dataverse == nil || cfg.Invitations == nil {
		return nil, errors.New("delivery.NewFollower: Dataverse and Invitations are required")
	}
	f := &Follower{dv: cfg.Dataverse, inv: cfg.Invitations, smtp: cfg.SMTP, after: cfg.PendingAlertAfter,
		now: cfg.Now, log: cfg.Logger, hooks: cfg.Hooks}
	if f.after == nil {
		f.after = func(string) time.Duration { return DefaultPendingAlertAfter }
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if !telemetry.Off(cfg.Tracing) {
		f.tracer = cfg.Tracing.Tracer(telemetry.ScopeName)
	}
	return f, nil
}

// Result is what Follow found and did.
type Result struct {
	Outcome string // one of the Outcome constants
	EmailID string
	Status  int    // the email's statuscode as read
	Reason  string // for failed and stuck: the text written on the contact
}

// ContactForEmail maps an email event to the contact to follow: ok is false
// when the email is not regarding an invitation.
func (f *Follower) ContactForEmail(ctx context.Context, regardingTable, regardingID string) (string, bool, error) {
	return f.inv.InvitationContact(ctx, regardingTable, regardingID)
}

// EmailColumns are the email columns Follow reads; a caller that passes
// Awaiting.Email reads at least these.
var EmailColumns = []string{"activityid", "subject", "statuscode", "statecode", "senton", "createdon", "_sendermailboxid_value"}

// Follow looks at the contact's invitation email and records its outcome
// when there is one: Sent → Delivered; Failed → Failed with the mailbox's
// alert; still Pending Send or Sending after PendingAlertAfter → Failed with
// the alert's text, or "still Pending Send after <d>: check mailbox <name>"
// when no alert can be read. For the SMTP channel a draft is submitted
// first, and recorded in Dataverse with SendEmail(IssueSend=false).
//
// Errors: a temporary SMTP failure (IsTemporary), the contact changed
// meanwhile, or Dataverse failures; all worth retrying later. Permanent
// SMTP refusals are outcomes (failed), not errors.
func (f *Follower) Follow(ctx context.Context, contactID string) (Result, error) {
	a, err := f.inv.AwaitingDelivery(ctx, contactID)
	if err != nil {
		return Result{}, fmt.Errorf("follow contact %s: %w", contactID, err)
	}
	if a == nil || a.EmailID == "" {
		return Result{Outcome: OutcomeNone}, nil
	}
	cols := EmailColumns
	if a.Channel == ChannelSMTP {
		cols = append(append([]string(nil), cols...), "description")
	}
	email, err := a.Email, error(nil)
	if email == nil {
		email, err = f.dv.Retrieve(ctx, "emails", a.EmailID, &dataverse.Query{Select: cols})
	}
	if err != nil {
		if dataverse.IsNotFound(err) { // deleted by a CRM user: nothing left to follow
			return Result{Outcome: OutcomeNone, EmailID: a.EmailID}, nil
		}
		return Result{}, fmt.Errorf("follow contact %s: read email %s: %w", contactID, a.EmailID, err)
	}
	if a.HandedAt.IsZero() {
		a.HandedAt = email.Time("createdon")
	}
	res := Result{EmailID: a.EmailID, Status: email.Int("statuscode")}
	if a.Channel == ChannelSMTP && res.Status == EmailDraft {
		return f.submit(ctx, a, email)
	}
	switch res.Status {
	case EmailSent:
		res.Outcome = OutcomeDelivered
		at := email.Time("senton")
		if at.IsZero() {
			at = f.now()
		}
		return f.record(ctx, a, res, at)
	case EmailFailed:
		res.Outcome = OutcomeFailed
		res.Reason = f.failedReason(ctx, a, email)
		return f.record(ctx, a, res, f.now())
	case EmailPendingSend, EmailSending, EmailDraft:
		wait := f.after(a.Portal)
		age := f.now().Sub(a.HandedAt)
		if age < wait {
			res.Outcome = OutcomePending
			return res, nil
		}
		res.Outcome = OutcomeStuck
		res.Reason = f.stuckReason(ctx, a, email, wait)
		return f.record(ctx, a, res, f.now())
	default:
		res.Outcome = OutcomeFailed
		res.Reason = fmt.Sprintf("The invitation email was not sent: its status in Dynamics 365 is %s.", statusName(res.Status))
		return f.record(ctx, a, res, f.now())
	}
}

func (f *Follower) record(ctx context.Context, a *Awaiting, res Result, at time.Time) (Result, error) {
	var err error
	if res.Outcome == OutcomeDelivered {
		err = f.inv.RecordDelivered(ctx, a)
	} else {
		err = f.inv.RecordDeliveryFailed(ctx, a, res.Reason)
	}
	if err != nil {
		return Result{}, fmt.Errorf("follow contact %s: %w", a.ContactID, err)
	}
	if f.hooks.Outcome != nil {
		f.hooks.Outcome(a.Channel, res.Outcome, max(at.Sub(a.HandedAt), 0))
	}
	f.log.InfoContext(ctx, "invitation email outcome", "contact", a.ContactID, "portal", a.Portal, "email", a.EmailID,
		"channel", a.Channel, "outcome", res.Outcome, "reason", res.Reason)
	return res, nil
}

// submit sends a draft through the SMTP channel and records it in Dataverse
// as sent (SendEmail with IssueSend=false), so CRM users see the same
// history as for server-side sync.
func (f *Follower) submit(ctx context.Context, a *Awaiting, email dataverse.Record) (Result, error) {
	res := Result{EmailID: a.EmailID, Status: EmailDraft}
	if f.smtp == nil {
		res.Outcome = OutcomeFailed
		res.Reason = "The invitation email was not sent: the portal's email channel is smtp but no SMTP server is configured."
		return f.record(ctx, a, res, f.now())
	}
	msg := Message{ActivityID: a.EmailID, To: a.To, ToName: a.ToName, Subject: email.Str("subject"), HTML: email.Str("description")}
	sctx, span := f.smtpSpan(ctx, a)
	rec, err := f.smtp.Send(sctx, msg)
	endSMTP(span, err)
	if err != nil {
		var se *SendError
		isSend := errors.As(err, &se)
		if IsTemporary(err) || !isSend {
			// Still Sent, now with the reason; the queue tries again.
			if se != nil {
				reason := "The SMTP server did not take the invitation email yet; it will be tried again: " + se.Error()
				if perr := f.inv.RecordDeliveryPending(ctx, a, reason); perr != nil {
					f.log.WarnContext(ctx, "could not note the delivery problem on the contact", "contact", a.ContactID, "err", perr)
				}
			}
			return Result{}, fmt.Errorf("follow contact %s: %w", a.ContactID, err)
		}
		// Refused for good: show the server's words on the contact and
		// Failed on the email, which stays a record of what was tried.
		if _, uerr := f.dv.Update(ctx, "emails", a.EmailID, map[string]any{"statecode": 0, "statuscode": EmailFailed}, nil); uerr != nil {
			f.log.WarnContext(ctx, "could not mark the refused email Failed", "email", a.EmailID, "err", uerr)
		}
		res.Outcome = OutcomeFailed
		res.Status = EmailFailed
		res.Reason = "The SMTP server refused the invitation email: " + serverWords(se)
		return f.record(ctx, a, res, f.now())
	}
	// The Message-ID goes on the email so replies correlate (In-Reply-To),
	// then SendEmail(IssueSend=false) moves it to Sent without sending.
	if _, err := f.dv.Update(ctx, "emails", a.EmailID, map[string]any{"messageid": rec.MessageID}, nil); err != nil {
		return Result{}, fmt.Errorf("follow contact %s: record message id: %w", a.ContactID, err)
	}
	if err := f.dv.CallAction(ctx, "SendEmail", &dataverse.EntityRef{Set: "emails", ID: a.EmailID},
		map[string]any{"IssueSend": false, "TrackingToken": ""}, nil); err != nil {
		return Result{}, fmt.Errorf("follow contact %s: record the email sent: %w", a.ContactID, err)
	}
	res.Outcome = OutcomeDelivered
	res.Status = EmailSent
	return f.record(ctx, a, res, f.now())
}

// serverWords is the SMTP server's reply as CRM users read it.
func serverWords(se *SendError) string {
	var b strings.Builder
	if se.Code != 0 {
		fmt.Fprintf(&b, "%d ", se.Code)
		if se.EnhancedCode != "" && !strings.HasPrefix(se.Text, se.EnhancedCode) {
			b.WriteString(se.EnhancedCode + " ")
		}
	}
	b.WriteString(se.Text)
	return strings.TrimSpace(b.String())
}

// failedReason explains an email Dataverse set to Failed.
func (f *Follower) failedReason(ctx context.Context, a *Awaiting, email dataverse.Record) string {
	mbx, alert := f.alert(ctx, a, email)
	if alert != "" {
		return alert
	}
	return fmt.Sprintf("Dataverse could not send the invitation email (status Failed): check mailbox %s.", mbx)
}

// stuckReason explains an email still not sent after wait.
func (f *Follower) stuckReason(ctx context.Context, a *Awaiting, email dataverse.Record, wait time.Duration) string {
	mbx, alert := f.alert(ctx, a, email)
	if alert != "" {
		return alert
	}
	return fmt.Sprintf("still %s after %s: check mailbox %s", statusName(email.Int("statuscode")), humanDuration(wait), mbx)
}

// alert finds the sender's mailbox and its alert about this email (one
// that names the recipient), else its newest warning or error: the text
// Microsoft writes, e.g. the OutgoingEmailS2SApprovalNeeded or
// ErrorSubmissionQuotaExceeded alerts.
// It returns the mailbox's label for the fallback text and "" when no alert
// can be read.
func (f *Follower) alert(ctx context.Context, a *Awaiting, email dataverse.Record) (mailbox, alert string) {
	mailbox = "of the email's sender"
	var mb *Mailbox
	var err error
	if id := email.Str("_sendermailboxid_value"); id != "" {
		mb, err = readMailbox(ctx, f.dv, strings.ToLower(id))
	} else if a.SenderID != "" {
		mb, err = FindMailbox(ctx, f.dv, a.SenderTable, a.SenderID)
	}
	if err != nil {
		f.log.WarnContext(ctx, "could not read the sender's mailbox", "email", a.EmailID, "err", err)
	}
	if mb == nil {
		return mailbox, ""
	}
	mailbox = mb.Label()
	alerts, err := Alerts(ctx, f.dv, mb.ID, 20)
	if err != nil {
		f.log.WarnContext(ctx, "could not read the mailbox's alerts", "mailbox", mb.ID, "err", err)
		return mailbox, ""
	}
	// An alert that names the recipient is about this email (a refused
	// recipient); otherwise the mailbox's newest alert says what holds it
	// now. Subjects do not tell emails apart: every invitation of a portal
	// has the same one.
	if to := strings.ToLower(strings.TrimSpace(a.To)); to != "" {
		for _, al := range alerts {
			if strings.Contains(strings.ToLower(al.Text), to) {
				return mailbox, al.Text
			}
		}
	}
	for _, al := range alerts {
		if al.Text != "" {
			return mailbox, al.Text
		}
	}
	return mailbox, ""
}

func statusName(code int) string {
	switch code {
	case EmailDraft:
		return "Draft"
	case EmailCompleted:
		return "Completed"
	case EmailSent:
		return "Sent"
	case EmailReceived:
		return "Received"
	case EmailCanceled:
		return "Canceled"
	case EmailPendingSend:
		return "Pending Send"
	case EmailSending:
		return "Sending"
	case EmailFailed:
		return "Failed"
	}
	return fmt.Sprintf("statuscode %d", code)
}

// humanDuration writes 30m, 1h30m or 45s rather than 30m0s.
func humanDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m := d % time.Hour / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s := d % time.Minute / time.Second; s > 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}
