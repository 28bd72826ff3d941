package metrics

import "github.com/d365portal/connector/internal/invite"

// ObserveInvite counts the outcome of one invite.Service.Invite or Resend
// call for portal: a created invitation, a sent email, or a permanent
// failure (invite.IsPermanent). Transient errors are not counted here: the
// queue retries them, and a request that finally gives up is counted with
// InvitationFailed when it is dead-lettered. A reused open invitation counts
// nothing.
func (m *Metrics) ObserveInvite(portal string, res *invite.InviteResult, err error) {
	switch {
	case err != nil:
		if invite.IsPermanent(err) {
			m.InvitationFailed(portal)
		}
	case res != nil:
		if res.Created {
			m.InvitationCreated(portal)
		}
		if res.EmailSent {
			m.InvitationSent(portal)
		}
	}
}
