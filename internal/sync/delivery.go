package sync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/delivery"
	"github.com/d365portal/connector/internal/invite"
)

// Deliveries follows invitation emails to their outcome; NewDeliveries
// builds one from a delivery.Follower and the invitation domain.
type Deliveries interface {
	// Follow records the contact's invitation email outcome when there is
	// one (see delivery.Follower.Follow).
	Follow(ctx context.Context, contactID string) (delivery.Result, error)
	// ContactForEmail maps an email's regarding row to the invited contact.
	ContactForEmail(ctx context.Context, regardingTable, regardingID string) (contactID string, ok bool, err error)
	// ContactsAwaiting calls fn with every contact that shows Sent.
	ContactsAwaiting(ctx context.Context, fn func(contactID string) error) error
}

// InvitationDeliveries is the invitation domain's delivery write-back;
// *invite.Service satisfies it.
type InvitationDeliveries interface {
	AwaitingDelivery(ctx context.Context, contactID string) (*invite.AwaitingEmail, error)
	RecordDelivered(ctx context.Context, a *invite.AwaitingEmail) error
	RecordDeliveryFailed(ctx context.Context, a *invite.AwaitingEmail, reason string) error
	RecordDeliveryPending(ctx context.Context, a *invite.AwaitingEmail, reason string) error
	InvitationContact(ctx context.Context, regardingTable, regardingID string) (string, bool, error)
	ContactsAwaitingDelivery(ctx context.Context, fn func(contactID string) error) error
}

var _ InvitationDeliveries = (*invite.Service)(nil)

// NewDeliveries builds the follower of cfg over the invitation domain svc
// (cfg.Invitations is set here).
func NewDeliveries(svc InvitationDeliveries, cfg delivery.FollowerConfig) (Deliveries, error) {
	cfg.Invitations = invitations{svc}
	f, err := delivery.NewFollower(cfg)
	if err != nil {
		return nil, err
	}
	return &deliveries{Follower: f, svc: svc}, nil
}

type deliveries struct {
	*delivery.Follower
	svc InvitationDeliveries
}

func (d *deliveries) ContactsAwaiting(ctx context.Context, fn func(string) error) error {
	return d.svc.ContactsAwaitingDelivery(ctx, fn)
}

// invitations adapts invite's write-back to delivery.Invitations; the
// delivery package stays free of the Power Pages schema.
type invitations struct{ svc InvitationDeliveries }

func (a invitations) AwaitingDelivery(ctx context.Context, contactID string) (*delivery.Awaiting, error) {
	aw, err := a.svc.AwaitingDelivery(ctx, contactID)
	if errors.Is(err, invite.ErrNotFound) { // the contact was deleted: nothing to follow
		return nil, nil
	}
	if err != nil || aw == nil {
		return nil, err
	}
	return &delivery.Awaiting{
		ContactID: aw.ContactID, Portal: aw.Portal, Channel: aw.Channel, EmailID: aw.EmailID, Email: aw.Email,
		To: aw.To, ToName: aw.ToName, SenderTable: aw.SenderTable, SenderID: aw.SenderID,
		HandedAt: aw.InvitedOn, Ref: aw,
	}, nil
}

func (a invitations) RecordDelivered(ctx context.Context, d *delivery.Awaiting) error {
	aw, _ := d.Ref.(*invite.AwaitingEmail)
	if aw == nil {
		return fmt.Errorf("record delivered: no invitation handle for contact %s", d.ContactID)
	}
	return a.svc.RecordDelivered(ctx, aw)
}

func (a invitations) RecordDeliveryFailed(ctx context.Context, d *delivery.Awaiting, reason string) error {
	aw, _ := d.Ref.(*invite.AwaitingEmail)
	if aw == nil {
		return fmt.Errorf("record delivery failed: no invitation handle for contact %s", d.ContactID)
	}
	return a.svc.RecordDeliveryFailed(ctx, aw, reason)
}

func (a invitations) RecordDeliveryPending(ctx context.Context, d *delivery.Awaiting, reason string) error {
	aw, _ := d.Ref.(*invite.AwaitingEmail)
	if aw == nil {
		return fmt.Errorf("record delivery pending: no invitation handle for contact %s", d.ContactID)
	}
	return a.svc.RecordDeliveryPending(ctx, aw, reason)
}

func (a invitations) InvitationContact(ctx context.Context, table, id string) (string, bool, error) {
	return a.svc.InvitationContact(ctx, table, id)
}

// Outcomes of delivery work reported to Hooks.Processed.
const (
	OutcomeDelivered   = "delivered"   // the contact now shows Delivered
	OutcomeUndelivered = "undelivered" // the contact now shows Failed with the reason
)

// decideEmail turns an email event into a delivery request: only status
// changes to an outcome (Sent, Failed) of emails regarding an invitation
// are queued; anything else is answered 200 and ignored. Errors wrapping
// errMalformed mean a 400.
func (i *Intake) decideEmail(ctx context.Context, h http.Header, rc *RemoteExecutionContext) (*Request, string, error) {
	if i.cfg.Deliveries == nil {
		return nil, "invitation emails are not followed", nil
	}
	msg := rc.MessageName
	if msg == "" {
		msg = h.Get(headerRequestName)
	}
	if !strings.EqualFold(msg, "Update") {
		return nil, "email message " + msg + " is not Update", nil
	}
	target := rc.Target()
	id := rc.PrimaryEntityID
	if id == "" && target != nil && target.ID != nilGUID {
		id = target.ID
	}
	if id == "" || id == nilGUID {
		return nil, "", fmt.Errorf("%w: email Update event without an email id", errMalformed)
	}
	var (
		status               int
		haveStatus, haveRef  bool
		refTable, refID      string
		sources              = []*Entity{target}
		trimmed              = h.Get(headerSizeExceeded) != ""
		statusCol, regardCol = "statuscode", "regardingobjectid"
	)
	for _, name := range slices.Sorted(maps.Keys(rc.PostEntityImages)) {
		sources = append(sources, rc.PostEntityImages[name])
	}
	for _, e := range sources {
		if trimmed {
			break
		}
		if v, ok := e.Attr(statusCol); ok && !haveStatus {
			if status, haveStatus = intValue(v); !haveStatus {
				return nil, "", fmt.Errorf("%w: email %s statuscode is not a number", errMalformed, id)
			}
		}
		if v, ok := e.Attr(regardCol); ok && !haveRef {
			haveRef = true
			switch r := v.(type) {
			case EntityReference:
				refTable, refID = r.LogicalName, r.ID
			case *EntityReference:
				if r != nil {
					refTable, refID = r.LogicalName, r.ID
				}
			case nil:
			default:
				return nil, "", fmt.Errorf("%w: email %s regardingobjectid is not a reference", errMalformed, id)
			}
		}
	}
	if !haveStatus || !haveRef {
		rec, err := i.cfg.Dataverse.Retrieve(ctx, "emails", id, &dataverse.Query{
			Select:      []string{"activityid", "statuscode", "_regardingobjectid_value"},
			Annotations: "Microsoft.Dynamics.CRM.lookuplogicalname",
		})
		if dataverse.IsNotFound(err) {
			return nil, "email no longer exists", nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("read email %s: %w", id, err)
		}
		status, refID = rec.Int("statuscode"), rec.Str("_regardingobjectid_value")
		refTable = rec.Str("_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname")
	}
	if refID == "" || !strings.EqualFold(refTable, invite.InvitationTable) {
		return nil, "email is not regarding an invitation", nil
	}
	if status != delivery.EmailSent && status != delivery.EmailFailed {
		return nil, fmt.Sprintf("email status %d is not an outcome", status), nil
	}
	return &Request{
		Kind: KindEmail, EmailID: id, RegardingTable: invite.InvitationTable, RegardingID: refID,
		Source: "webhook", InitiatingUserID: rc.InitiatingUserID,
		DedupeKey: fmt.Sprintf("email:%s:%d", id, status),
	}, "", nil
}

// run does one queued job. Email events become delivery work for their
// contact; an invitation sent through the SMTP channel is submitted at once
// (its retries come back as delivery jobs, so the invitation is never
// created twice).
func (i *Intake) run(ctx context.Context, j *job) (string, error) {
	switch j.Kind {
	case KindEmail:
		if i.cfg.Deliveries == nil {
			return OutcomeSkipped, nil
		}
		contact, ok, err := i.cfg.Deliveries.ContactForEmail(ctx, j.RegardingTable, j.RegardingID)
		if err != nil {
			return "", err
		}
		if !ok {
			return OutcomeSkipped, nil
		}
		j.Kind, j.ContactID = KindDelivery, contact
		return i.follow(ctx, *j)
	case KindDelivery:
		if i.cfg.Deliveries == nil {
			return OutcomeSkipped, nil
		}
		return i.follow(ctx, *j)
	}
	outcome, channel, err := i.process(ctx, *j)
	if err != nil || outcome != OutcomeSent || channel != invite.ChannelSMTP || i.cfg.Deliveries == nil {
		return outcome, err
	}
	j.Kind, j.Attempts, j.LastError = KindDelivery, 0, ""
	return i.follow(ctx, *j)
}

// follow records the contact's invitation email outcome under the contact
// lock, so replicas handling the same contact's webhook, poll and SMTP work
// take turns and each finds what the previous one wrote.
func (i *Intake) follow(ctx context.Context, j job) (string, error) {
	lockCtx, cancel := context.WithTimeout(ctx, i.cfg.Lease)
	unlock, err := i.locker.Lock(lockCtx, j.ContactID, i.cfg.Lease)
	cancel()
	if err != nil {
		return "", fmt.Errorf("contact %s is busy: %w", j.ContactID, err)
	}
	defer unlock()
	ctx, span := i.followSpan(ctx, j.ContactID)
	res, err := i.cfg.Deliveries.Follow(ctx, j.ContactID)
	outcome := OutcomeSkipped
	switch res.Outcome {
	case delivery.OutcomeDelivered:
		outcome = OutcomeDelivered
	case delivery.OutcomeFailed, delivery.OutcomeStuck:
		outcome = OutcomeUndelivered
	}
	i.endFollow(ctx, span, j.ContactID, res.EmailID, outcome, err)
	if err != nil {
		return "", err
	}
	return outcome, nil
}

// PollDeliveries is the safety net under the email webhook (delivered at
// most twice, or not at all): it queues a delivery check for every contact
// that shows Sent, at most once per Config.DeliveryRecheck per contact. Only
// one replica runs it at a time; the others get ErrPollBusy.
func (i *Intake) PollDeliveries(ctx context.Context) (enqueued int, err error) {
	if i.cfg.Deliveries == nil {
		return 0, nil
	}
	token, ok, err := tryLock(ctx, i.rdb, i.keys.deliveryPollLock, i.cfg.Lease)
	if err != nil {
		return 0, fmt.Errorf("delivery poll: %w", err)
	}
	if !ok {
		return 0, ErrPollBusy
	}
	l := &redisLocker{rdb: i.rdb, log: i.log}
	defer l.hold(i.keys.deliveryPollLock, token, i.cfg.Lease)()
	err = i.cfg.Deliveries.ContactsAwaiting(ctx, func(id string) error {
		queued, err := i.Enqueue(ctx, Request{ContactID: id, Kind: KindDelivery, Source: "poll",
			DedupeKey: "delivery:" + id, DedupeTTL: i.cfg.DeliveryRecheck})
		if queued {
			enqueued++
		}
		return err
	})
	if err != nil {
		return enqueued, fmt.Errorf("delivery poll: %w", err)
	}
	return enqueued, nil
}

// failReason is the sentence written on the contact when a job gives up.
func failReason(j job, err error) string {
	if j.Kind == KindDelivery || j.Kind == KindEmail {
		var se *delivery.SendError
		if errors.As(err, &se) {
			return fmt.Sprintf("Invitation email not delivered after %d attempts: %s", j.Attempts, se.Error())
		}
		return fmt.Sprintf("Invitation email not delivered after %d attempts: %s", j.Attempts, err)
	}
	return fmt.Sprintf("Invitation not sent after %d attempts: %s", j.Attempts, err)
}
