package sync

import (
	"context"
	"fmt"
	"strings"

	"github.com/d365portal/connector/internal/invite"
)

// Commander resends and revokes a contact's invitation for the Resend
// invitation and Revoke invitation buttons; *invite.Service satisfies it.
// When Config.Invites is not one, the command statuses are not picked up.
type Commander interface {
	// ResendForContact resends the newest open invitation and writes Sent.
	ResendForContact(ctx context.Context, contactID, contactETag string) (*invite.InviteResult, error)
	// RevokeForContact deactivates the open invitations and writes Revoked.
	RevokeForContact(ctx context.Context, contactID, contactETag string) ([]string, error)
}

var _ Commander = (*invite.Service)(nil)

// OutcomeRevoked is reported to Hooks.Processed after a Revoke.
const OutcomeRevoked = "revoked"

// commander is the Commander behind Config.Invites, nil if there is none.
func (i *Intake) commander() Commander {
	c, _ := i.cfg.Invites.(Commander)
	return c
}

// wanted reports whether a contact status asks the intake for work:
// Requested, or Resend or Revoke when commands are handled.
func (i *Intake) wanted(status int) bool {
	if status == i.cols.Requested {
		return true
	}
	if i.commander() == nil {
		return false
	}
	return (i.cols.Resend != 0 && status == i.cols.Resend) || (i.cols.Revoke != 0 && status == i.cols.Revoke)
}

// wantedFilter is the OData filter for contacts whose status asks for work.
func (i *Intake) wantedFilter() string {
	vals := []int{i.cols.Requested}
	if i.commander() != nil {
		for _, v := range []int{i.cols.Resend, i.cols.Revoke} {
			if v != 0 {
				vals = append(vals, v)
			}
		}
	}
	parts := make([]string, len(vals))
	for n, v := range vals {
		parts[n] = fmt.Sprintf("%s eq %d", i.cols.Status, v)
	}
	return strings.Join(parts, " or ")
}

// command runs a Resend or Revoke for a contact whose re-read status asks
// for one; the caller holds the contact lock. The status read under the
// lock decides, not the message: a Resend click followed by a Revoke click
// ends revoked however their messages interleave, and the second message
// finds Sent or Revoked and does nothing. The write-back is conditional on
// the row version read under the lock, so a click landing while the
// command runs is not overwritten: the change set fails, nothing is
// written, and the retry acts on the newer status.
func (i *Intake) command(ctx context.Context, contactID, etag string, status int) (string, string, error) {
	c := i.commander()
	switch {
	case status == i.cols.Resend:
		res, err := c.ResendForContact(ctx, contactID, etag)
		if err != nil {
			return "", "", err
		}
		return OutcomeSent, res.Channel, nil
	default:
		if _, err := c.RevokeForContact(ctx, contactID, etag); err != nil {
			return "", "", err
		}
		return OutcomeRevoked, "", nil
	}
}
