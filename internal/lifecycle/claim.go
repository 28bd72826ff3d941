package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// claimResult is the outcome of trying to claim an action.
type claimResult int

const (
	claimHeld  claimResult = iota // another replica holds an unexpired claim
	claimTaken                    // this replica now holds the claim
	claimDone                     // the action was completed before
)

// claimScript claims an action unless it is done or someone else's claim
// has not lapsed. The lease is checked against the scheduler's clock (the
// "until" stored in the claim), and the key's own TTL removes it after the
// lease in real time.
//
// KEYS: claim, done. ARGV: token, now ms, until ms, lease ms.
// Returns 0 held, 1 taken, 2 done.
var claimScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
local cur = redis.call('GET', KEYS[1])
if cur then
  local till = tonumber(string.match(cur, '|(%d+)$'))
  if till and till > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3], 'PX', ARGV[4])
return 1`)

// completeScript records the action as done and drops the claim if this
// replica still holds it. The record is written either way: the action did
// happen. Returns 1 when the claim was still held.
//
// KEYS: claim, done. ARGV: token, completion time ms, record TTL ms.
var completeScript = redis.NewScript(`
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0`)

// claims keeps action claims and completion records in Redis.
type claims struct {
	rdb    redis.Scripter
	prefix string
	lease  time.Duration
}

// action names one thing to do once: a reminder (index >= 0) or the expiry
// (index -1) of an invitation with a given expiry time.
type action struct {
	invitation string
	expires    time.Time
	index      int
}

// keys returns the claim and done keys. The invitation id is the hash tag,
// so both keys live on one Redis Cluster slot.
func (c *claims) keys(a action) (claim, done string) {
	what := "expiry"
	if a.index >= 0 {
		what = "reminder:" + strconv.Itoa(a.index)
	}
	base := c.prefix + "{" + strings.ToLower(a.invitation) + "}:" + what + ":" + strconv.FormatInt(a.expires.UnixMilli(), 10)
	return base + ":claim", base + ":done"
}

// claim tries to take a for one lease from now; token identifies the claim.
func (c *claims) claim(ctx context.Context, a action, now time.Time) (token string, res claimResult, err error) {
	token = newToken()
	claimKey, doneKey := c.keys(a)
	n, err := claimScript.Run(ctx, c.rdb, []string{claimKey, doneKey},
		token, now.UnixMilli(), now.Add(c.lease).UnixMilli(), c.lease.Milliseconds()).Int()
	if err != nil {
		return "", claimHeld, fmt.Errorf("claim %s: %w", claimKey, err)
	}
	return token, claimResult(n), nil
}

// complete records a as done at now, the record kept for keep, and drops
// the claim; held is false when the claim had lapsed and been taken by
// another replica meanwhile.
func (c *claims) complete(ctx context.Context, a action, token string, now time.Time, keep time.Duration) (held bool, err error) {
	claimKey, doneKey := c.keys(a)
	n, err := completeScript.Run(ctx, c.rdb, []string{claimKey, doneKey},
		token, now.UnixMilli(), max(keep, time.Millisecond).Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("complete %s: %w", doneKey, err)
	}
	return n == 1, nil
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
