package metrics

import (
	"errors"
	"fmt"
	"testing"

	"github.com/d365portal/connector/internal/invite"
)

func TestObserveInvite(t *testing.T) {
	m := New()
	m.InitPortals("p")
	m.ObserveInvite("p", &invite.InviteResult{Created: true, EmailSent: true}, nil)
	m.ObserveInvite("p", &invite.InviteResult{Reused: true}, nil)               // reuse: nothing
	m.ObserveInvite("p", &invite.InviteResult{EmailSent: true}, nil)            // resend
	m.ObserveInvite("p", nil, fmt.Errorf("x: %w", invite.ErrNoEmail))           // permanent
	m.ObserveInvite("p", nil, errors.New("dataverse: 503 Service Unavailable")) // transient: retried, not failed
	fams := scrape(t, m)
	for name, want := range map[string]float64{
		"connector_invitations_created_total": 1,
		"connector_invitations_sent_total":    2,
		"connector_invitations_failed_total":  1,
	} {
		if got := counter(t, fams, name, map[string]string{"portal": "p"}); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
