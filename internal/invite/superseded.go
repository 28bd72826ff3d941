package invite

import (
	"context"
	"errors"
	"time"
)

// ErrCodeSuperseded: the code was replaced by a resend; the newest email
// holds the link that works. Lookup returns it only when Config.Superseded
// is set.
var ErrCodeSuperseded = errors.New("a newer invitation was sent")

// Superseded remembers the stored codes a resend replaced, so the old link
// can say that a newer invitation was sent instead of "not recognised".
// Dataverse keeps only the current code; the record lives as long as the
// old code would have.
type Superseded interface {
	Remember(ctx context.Context, storedCode string, ttl time.Duration) error
	Superseded(ctx context.Context, storedCode string) (bool, error)
}

// rememberSuperseded records old (a stored code value) until it would have
// expired, at least a day. Best effort: a failure only costs the friendlier
// page.
func (s *Service) rememberSuperseded(ctx context.Context, old string, expires time.Time) {
	if s.cfg.Superseded == nil || old == "" {
		return
	}
	ttl := max(expires.Sub(s.now()), 24*time.Hour)
	if err := s.cfg.Superseded.Remember(ctx, old, ttl); err != nil {
		s.log.WarnContext(ctx, "remember superseded invitation code", "err", err)
	}
}

// supersededLookup tells whether a code no invitation holds was replaced
// by a resend.
func (s *Service) supersededLookup(ctx context.Context, cq codeQuery) bool {
	if s.cfg.Superseded == nil {
		return false
	}
	for _, st := range []string{CodeHashed, CodePlain} {
		for _, v := range cq.byStorage[st] {
			if ok, err := s.cfg.Superseded.Superseded(ctx, v); err == nil && ok {
				return true
			}
		}
	}
	return false
}
