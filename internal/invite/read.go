package invite

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/d365portal/connector/internal/dataverse"
)

// ReadContact reads a contact as Invite needs it, with its open invitations
// to every configured website and the extra columns the caller asks for (the
// intake's status, portal and roles columns). The caller checks the contact
// still asks for an invitation and passes the record as
// InviteRequest.Contact, so one read serves both: an invitation then costs
// this read and the change set that creates and sends it. Invite picks the
// portal's website from the expanded rows.
func (s *Service) ReadContact(ctx context.Context, contactID string, extra ...string) (dataverse.Record, error) {
	id, ok := normalizeGUID(contactID)
	if !ok {
		return nil, fmt.Errorf("read contact %q: %w", contactID, ErrNotFound)
	}
	cols := append(slices.Clone(contactSelect), s.cols.Status, s.cols.Portal)
	for _, c := range extra {
		if c != "" && !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
	}
	rec, err := s.dv.Retrieve(ctx, "contacts", id, &dataverse.Query{
		Select: cols,
		Expand: []string{"adx_invitation_invitecontact($select=" + strings.Join(s.invitationSelect(), ",") +
			";$filter=statecode eq 0;$orderby=createdon desc)"},
	})
	if err != nil {
		if dataverse.IsNotFound(err) {
			return nil, fmt.Errorf("read contact %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("read contact %s: %w", id, err)
	}
	return rec, nil
}
