package invite

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/d365portal/connector/internal/dataverse"
)

// ErrNoOpenInvitation: a Resend or Revoke for a contact that has no active,
// unredeemed invitation.
var ErrNoOpenInvitation = errors.New("the contact has no open invitation")

// contactChanged turns a failed If-Match on the contact into
// ErrContactChanged; the Dataverse error is not wrapped, so callers that
// treat 4xx as permanent retry it.
func contactChanged(err error, etag string) error {
	if etag != "*" && errors.Is(err, dataverse.ErrPreconditionFailed) {
		return fmt.Errorf("%w: %v", ErrContactChanged, err)
	}
	return err
}

// NoOpenInvitationText is what the contact's error column says after a
// Resend or Revoke found nothing to act on.
const NoOpenInvitationText = "No open invitation to %s: the contact has no active, unredeemed invitation. Use Invite to portal to send a new one."

// openInvitations are the contact's active invitations that can still be
// redeemed, newest first.
func (s *Service) openInvitations(ctx context.Context, contactID string) ([]Invitation, error) {
	all, err := s.List(ctx, ListFilter{ContactID: contactID, Status: "open"})
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, inv := range all {
		if !inv.usedUp() {
			out = append(out, inv)
		}
	}
	return out, nil
}

// noOpen writes the readable error on the contact and leaves every other
// column alone; the error is returned so the caller settles the request.
func (s *Service) noOpen(ctx context.Context, contactID, verb string) error {
	text := fmt.Sprintf(NoOpenInvitationText, verb)
	if _, err := s.dv.Update(ctx, "contacts", contactID, map[string]any{s.cols.Error: text}, &dataverse.WriteOptions{IfMatch: "*"}); err != nil {
		if dataverse.IsNotFound(err) {
			return fmt.Errorf("%s for contact %s: %w", verb, contactID, ErrNotFound)
		}
		return fmt.Errorf("%s for contact %s: write error text: %w", verb, contactID, err)
	}
	return fmt.Errorf("%s for contact %s: %w", verb, contactID, ErrNoOpenInvitation)
}

// ResendForContact resends the contact's newest open invitation (Resend
// writes Sent back). contactETag is the row version the caller read the
// command from ("" = any): a later click makes the whole change set fail
// with ErrContactChanged instead of being overwritten. Errors:
// ErrNoOpenInvitation after writing the reason on the contact,
// ErrContactChanged, and those of Resend.
func (s *Service) ResendForContact(ctx context.Context, contactID, contactETag string) (*InviteResult, error) {
	id, ok := normalizeGUID(contactID)
	if !ok {
		return nil, fmt.Errorf("resend for contact %q: %w", contactID, ErrNotFound)
	}
	open, err := s.openInvitations(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("resend for contact %s: %w", id, err)
	}
	if len(open) == 0 {
		return nil, s.noOpen(ctx, id, "resend")
	}
	return s.resend(ctx, open[0].ID, etagOrAny(contactETag))
}

// RevokeForContact deactivates every open invitation of the contact and
// writes Revoked back, in one change set: either all are revoked and the
// contact says so, or nothing changed. contactETag works as in
// ResendForContact. Errors: ErrNoOpenInvitation after writing the reason
// on the contact, ErrContactChanged.
func (s *Service) RevokeForContact(ctx context.Context, contactID, contactETag string) ([]string, error) {
	id, ok := normalizeGUID(contactID)
	if !ok {
		return nil, fmt.Errorf("revoke for contact %q: %w", contactID, ErrNotFound)
	}
	open, err := s.openInvitations(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("revoke for contact %s: %w", id, err)
	}
	if len(open) == 0 {
		return nil, s.noOpen(ctx, id, "revoke")
	}
	ids := make([]string, 0, len(open))
	ops := make([]dataverse.BatchOp, 0, len(open)+1)
	for _, inv := range open {
		ids = append(ids, inv.ID)
		ops = append(ops, dataverse.BatchOp{Method: http.MethodPatch, Path: "adx_invitations(" + inv.ID + ")",
			Body: map[string]any{"statecode": invStateInactive, "statuscode": invStatusInactive}, Headers: ifMatch("*")})
	}
	ops = append(ops, dataverse.BatchOp{Method: http.MethodPatch, Path: "contacts(" + id + ")",
		Body: map[string]any{s.cols.Status: s.cols.Revoked, s.cols.Error: nil}, Headers: ifMatch(etagOrAny(contactETag))})
	if _, err := s.changeSet(ctx, "revoke for contact "+id, ops); err != nil {
		return nil, contactChanged(err, etagOrAny(contactETag))
	}
	s.log.InfoContext(ctx, "invitations revoked", "contact", id, "invitations", ids)
	return ids, nil
}
