package invite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
)

// ErrContactChanged is returned by the delivery write-back when the contact
// changed after AwaitingDelivery read it (a new click, a redemption): the
// caller reads it again and decides afresh. It is not permanent.
var ErrContactChanged = errors.New("the contact changed meanwhile")

// InvitationTable is the table invitation emails are regarding.
const InvitationTable = "adx_invitation"

// AwaitingEmail is a contact whose invitation email was handed over (the
// contact shows Sent) and whose delivery outcome is not yet recorded.
type AwaitingEmail struct {
	ContactID   string
	ContactETag string // the row version read; the write-back is conditional on it
	Portal      string
	Channel     string // ChannelDataverse or ChannelSMTP
	// InvitationID is the contact's newest open invitation to Portal, and
	// InvitationEmailed whether its status already says Sent (the SMTP
	// channel sets it once the server accepted the message).
	InvitationID      string
	InvitationEmailed bool
	// EmailID is the newest email activity regarding the invitation; ""
	// when there is none.
	EmailID string
	// Email is that email's row with the columns in EmailColumns (and
	// description on the SMTP channel), read with the query that found
	// it, so the follower need not read it again.
	Email  dataverse.Record
	To     string // the contact's emailaddress1
	ToName string // the contact's fullname
	// SenderTable and SenderID name the sender whose mailbox sends the
	// email: the portal's configured systemuser or queue, or for
	// initiating_user the invitation's owner. "" when Dataverse picks (the
	// caller).
	SenderTable, SenderID string
	InvitedOn             time.Time // the contact's invited-on column
}

// AwaitingDelivery returns what the contact's invitation email is waiting
// for, or nil when there is nothing to follow: the contact does not show
// Sent (it is Delivered, Failed, Redeemed, requested again...), its portal
// is not configured, or it has no open invitation. Errors: ErrNotFound for
// an unknown contact; Dataverse errors otherwise.
func (s *Service) AwaitingDelivery(ctx context.Context, contactID string) (*AwaitingEmail, error) {
	id, ok := normalizeGUID(contactID)
	if !ok {
		return nil, fmt.Errorf("awaiting delivery %q: %w", contactID, ErrNotFound)
	}
	contact, err := s.dv.Retrieve(ctx, "contacts", id, &dataverse.Query{
		Select: []string{"contactid", "fullname", "emailaddress1", s.cols.Status, s.cols.Portal, s.cols.InvitedOn},
		Expand: []string{"adx_invitation_invitecontact($select=" + strings.Join(s.invitationSelect(), ",") +
			";$filter=statecode eq 0;$orderby=createdon desc)"},
	})
	if err != nil {
		if dataverse.IsNotFound(err) {
			return nil, fmt.Errorf("awaiting delivery %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("awaiting delivery %s: read contact: %w", id, err)
	}
	if contact.Int(s.cols.Status) != s.cols.Sent {
		return nil, nil
	}
	pc, err := s.portal(contact.Str(s.cols.Portal))
	if err != nil {
		s.log.WarnContext(ctx, "contact shows Sent for a portal that is not configured; its delivery is not followed",
			"contact", id, "portal", contact.Str(s.cols.Portal))
		return nil, nil
	}
	var inv *Invitation
	if list, ok := contact["adx_invitation_invitecontact"].([]any); ok {
		for _, x := range list {
			if rec, ok := x.(map[string]any); ok {
				if cand := s.toInvitation(rec); cand.WebsiteID == pc.WebsiteID && cand.StateCode == invStateActive {
					inv = cand
					break
				}
			}
		}
	}
	if inv == nil {
		return nil, nil
	}
	a := &AwaitingEmail{
		ContactID: id, ContactETag: contact.ETag(), Portal: pc.Name, Channel: pc.Email.Channel,
		InvitationID: inv.ID, InvitationEmailed: inv.StatusCode == invStatusSent,
		To: strings.TrimSpace(contact.Str("emailaddress1")), ToName: contact.Str("fullname"),
		SenderTable: pc.sender.set, SenderID: pc.sender.id, InvitedOn: contact.Time(s.cols.InvitedOn),
	}
	if pc.sender.initiatingUser && inv.OwnerID != "" {
		a.SenderTable, a.SenderID = "systemusers", inv.OwnerID
	}
	cols := EmailColumns
	if a.Channel == ChannelSMTP {
		cols = append(append([]string(nil), cols...), "description")
	}
	page, err := s.dv.QueryPage(ctx, "emails", &dataverse.Query{
		Select:  cols,
		Filter:  "_regardingobjectid_value eq " + inv.ID,
		OrderBy: []string{"createdon desc"},
		Top:     5,
	}, "")
	if err != nil {
		return nil, fmt.Errorf("awaiting delivery %s: read invitation emails: %w", id, err)
	}
	a.EmailID, a.Email = newestEmail(page.Records)
	return a, nil
}

// EmailColumns are the email columns following a delivery needs.
var EmailColumns = []string{"activityid", "subject", "statuscode", "statecode", "senton", "createdon", "_sendermailboxid_value"}

// newestEmail picks the newest email (rows ordered by createdon desc);
// among rows created in the same second (a click again right after a
// failure) the one still in progress wins over a finished one.
func newestEmail(rows []dataverse.Record) (string, dataverse.Record) {
	if len(rows) == 0 {
		return "", nil
	}
	best := rows[0]
	for _, r := range rows[1:] {
		if !r.Time("createdon").Equal(best.Time("createdon")) {
			break
		}
		if finished(best.Int("statuscode")) && !finished(r.Int("statuscode")) {
			best = r
		}
	}
	return strings.ToLower(best.Str("activityid")), best
}

// finished: Sent, Failed or Canceled.
func finished(status int) bool {
	return status == 3 || status == emailStatusFailed || status == emailStatusCanceled
}

// RecordDelivered writes Delivered on the contact (and clears its error),
// and marks the invitation Sent when it was not yet (the SMTP channel), in
// one change set. It fails with ErrContactChanged when the contact changed
// since a was read.
func (s *Service) RecordDelivered(ctx context.Context, a *AwaitingEmail) error {
	ops := []dataverse.BatchOp{{Method: http.MethodPatch, Path: "contacts(" + a.ContactID + ")",
		Body: map[string]any{s.cols.Status: s.cols.Delivered, s.cols.Error: nil}, Headers: ifMatch(etagOrAny(a.ContactETag))}}
	if !a.InvitationEmailed && a.InvitationID != "" {
		ops = append(ops, dataverse.BatchOp{Method: http.MethodPatch, Path: "adx_invitations(" + a.InvitationID + ")",
			Body: map[string]any{"statuscode": invStatusSent}, Headers: ifMatch("*")})
	}
	if _, err := s.changeSet(ctx, "record delivered", ops); err != nil {
		return deliveryWriteError(a.ContactID, err)
	}
	s.log.InfoContext(ctx, "invitation email delivered", "contact", a.ContactID, "portal", a.Portal, "email", a.EmailID)
	return nil
}

// RecordDeliveryFailed writes Failed and reason on the contact. It fails
// with ErrContactChanged when the contact changed since a was read.
func (s *Service) RecordDeliveryFailed(ctx context.Context, a *AwaitingEmail, reason string) error {
	_, err := s.dv.Update(ctx, "contacts", a.ContactID, map[string]any{s.cols.Status: s.cols.Failed,
		s.cols.Error: truncate(reason, 2000)}, &dataverse.WriteOptions{IfMatch: etagOrAny(a.ContactETag)})
	if err != nil {
		return deliveryWriteError(a.ContactID, err)
	}
	s.log.WarnContext(ctx, "invitation email not delivered", "contact", a.ContactID, "portal", a.Portal, "email", a.EmailID, "reason", reason)
	return nil
}

// RecordDeliveryPending writes reason in the contact's error column and
// keeps it Sent: the email is not out yet and will be tried again (an SMTP
// server that answered 4xx or dropped the connection). RecordDelivered
// clears it. It fails with ErrContactChanged when the contact changed since
// a was read.
func (s *Service) RecordDeliveryPending(ctx context.Context, a *AwaitingEmail, reason string) error {
	rec, err := s.dv.Update(ctx, "contacts", a.ContactID, map[string]any{s.cols.Error: truncate(reason, 2000)},
		&dataverse.WriteOptions{IfMatch: etagOrAny(a.ContactETag)})
	if err != nil {
		return deliveryWriteError(a.ContactID, err)
	}
	if e := rec.ETag(); e != "" {
		a.ContactETag = e
	}
	return nil
}

func deliveryWriteError(contactID string, err error) error {
	switch {
	case dataverse.IsPreconditionFailed(err):
		return fmt.Errorf("record delivery on contact %s: %w", contactID, ErrContactChanged)
	case dataverse.IsNotFound(err):
		return fmt.Errorf("record delivery on contact %s: %w", contactID, ErrNotFound)
	}
	return fmt.Errorf("record delivery on contact %s: %w", contactID, err)
}

func etagOrAny(etag string) string {
	if etag == "" {
		return "*"
	}
	return etag
}

// InvitationContact maps the row an email is regarding to the invited
// contact. ok is false when the row is not an invitation, or is one
// without a contact, or no longer exists.
func (s *Service) InvitationContact(ctx context.Context, regardingTable, regardingID string) (contactID string, ok bool, err error) {
	id, valid := normalizeGUID(regardingID)
	if !strings.EqualFold(regardingTable, InvitationTable) || !valid {
		return "", false, nil
	}
	rec, err := s.dv.Retrieve(ctx, "adx_invitations", id, &dataverse.Query{Select: []string{"adx_invitationid", "_adx_invitecontact_value"}})
	if dataverse.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("invitation %s: %w", id, err)
	}
	c, valid := normalizeGUID(rec.Str("_adx_invitecontact_value"))
	return c, valid, nil
}

// ContactsAwaitingDelivery calls fn with every contact that shows Sent, page
// by page, for the delivery poll. It stops at fn's first error.
func (s *Service) ContactsAwaitingDelivery(ctx context.Context, fn func(contactID string) error) error {
	q := &dataverse.Query{
		Select:   []string{"contactid"},
		Filter:   fmt.Sprintf("%s eq %d", s.cols.Status, s.cols.Sent),
		PageSize: 1000,
	}
	next := ""
	for {
		page, err := s.dv.QueryPage(ctx, "contacts", q, next)
		if err != nil {
			return fmt.Errorf("contacts awaiting delivery: %w", err)
		}
		for _, r := range page.Records {
			if id, ok := normalizeGUID(r.Str("contactid")); ok {
				if err := fn(id); err != nil {
					return err
				}
			}
		}
		if next = page.NextLink; next == "" {
			return nil
		}
	}
}

// Email statuscodes after which an invitation email did not go out.
const (
	emailStatusCanceled = 5
	emailStatusFailed   = 8
)

// lastEmailUndelivered reports whether the newest email regarding the
// invitation failed or was canceled, so that asking again sends a new one.
func (s *Service) lastEmailUndelivered(ctx context.Context, invitationID string) (bool, error) {
	page, err := s.dv.QueryPage(ctx, "emails", &dataverse.Query{
		Select:  []string{"activityid", "statuscode"},
		Filter:  "_regardingobjectid_value eq " + invitationID,
		OrderBy: []string{"createdon desc"},
		Top:     1,
	}, "")
	if err != nil {
		return false, fmt.Errorf("read invitation emails: %w", err)
	}
	if len(page.Records) == 0 {
		return true, nil
	}
	st := page.Records[0].Int("statuscode")
	return st == emailStatusFailed || st == emailStatusCanceled, nil
}
