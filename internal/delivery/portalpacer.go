package delivery

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// PortalPacer reserves senders by portal name: each paced portal lists its
// sending mailboxes with their limits. A portal it does not list (one that
// sends as the initiating user) is not paced.
type PortalPacer struct {
	pacer   *Pacer
	senders map[string][]Sender // lower-case portal name
}

// NewPortalPacer returns a PortalPacer over p; senders is keyed by portal
// name (any letter case).
func NewPortalPacer(p *Pacer, senders map[string][]Sender) *PortalPacer {
	m := make(map[string][]Sender, len(senders))
	for name, s := range senders {
		if len(s) > 0 {
			m[strings.ToLower(name)] = s
		}
	}
	return &PortalPacer{pacer: p, senders: m}
}

// Reserve spends one email of the portal's senders' budgets. It returns the
// sender, or "" and the time one will have room, or "" and a zero time for
// a portal that is not paced.
func (pp *PortalPacer) Reserve(ctx context.Context, portal string) (string, time.Time, error) {
	senders := pp.senders[strings.ToLower(portal)]
	if len(senders) == 0 {
		return "", time.Time{}, nil
	}
	r, err := pp.pacer.Reserve(ctx, senders, 1)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("pace portal %s: %w", portal, err)
	}
	if r.OK() {
		return r.Sender, time.Time{}, nil
	}
	return "", r.NotBefore, nil
}

// Sent records that an email reserved on sender was submitted (see
// Pacer.Confirm).
func (pp *PortalPacer) Sent(ctx context.Context, sender string) error {
	return pp.pacer.Confirm(ctx, sender)
}

// Senders returns the portal's senders (nil when it is not paced).
func (pp *PortalPacer) Senders(portal string) []Sender {
	return pp.senders[strings.ToLower(portal)]
}
