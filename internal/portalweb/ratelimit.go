package portalweb

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-redis/redis_rate/v10"
)

// rateLimited says a limit was hit and when the next attempt is allowed.
type rateLimited struct {
	action     string
	retryAfter time.Duration
}

func (e *rateLimited) Error() string {
	return fmt.Sprintf("rate limit %s: retry after %s", e.action, e.retryAfter)
}

// Rate-limited actions.
const (
	actLookup   = "lookup"
	actRedeem   = "redeem"
	actSignIn   = "signin"
	actRegister = "register"
	actReset    = "reset"
	actConfirm  = "confirm" // confirmation emails and links; shares the password-reset rate
)

func (s *Server) perMinute(action string) int {
	switch action {
	case actLookup:
		return s.limits.CodeLookups
	case actRedeem:
		return s.limits.Redemptions
	case actSignIn:
		return s.limits.SignIns
	case actRegister:
		return s.limits.Registrations
	default:
		return s.limits.PasswordResets
	}
}

// allow spends one attempt of action for the client address and for each
// target (a code, a user name, an email). Targets are hashed into the key,
// so Redis never holds codes or addresses. It returns *rateLimited when any
// bucket is empty, or an outage error when Redis fails.
func (s *Server) allow(c *gin.Context, action string, targets ...string) error {
	n := s.perMinute(action)
	if n < 0 {
		return nil
	}
	limit := redis_rate.PerMinute(n)
	keys := []string{s.prefix + "rl:" + action + ":ip:" + ipBucket(clientIP(c))}
	for _, t := range targets {
		t = strings.ToLower(strings.TrimSpace(t))
		if t == "" {
			continue
		}
		sum := sha256.Sum256([]byte(t))
		keys = append(keys, s.prefix+"rl:"+action+":t:"+hex.EncodeToString(sum[:12]))
	}
	var wait time.Duration
	for _, k := range keys {
		res, err := s.limiter.Allow(c.Request.Context(), k, limit)
		if err != nil {
			return unavailable(fmt.Errorf("rate limit %s: %w", action, err))
		}
		if res.Allowed == 0 && res.RetryAfter > wait {
			wait = res.RetryAfter
		}
	}
	if wait > 0 {
		return &rateLimited{action: action, retryAfter: wait}
	}
	return nil
}

// ipBucket groups IPv6 clients by /64, the block one subscriber usually
// holds, so rotating addresses inside it does not reset the limit.
func ipBucket(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
