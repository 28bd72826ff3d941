package delivery

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Exchange Online's per-mailbox sending limits, the defaults of
// Sender.PerMinute and Sender.PerDay: 30 messages a minute, and 10,000
// recipients in any 24 hours (an invitation email has one recipient, so the
// pacer counts messages for both).
const (
	DefaultPerMinute = 30
	DefaultPerDay    = 10000
)

// The windows the limits are counted over: a rolling minute and a rolling
// 24 hours.
const (
	minuteWindow = time.Minute
	dayWindow    = 24 * time.Hour
)

// ErrOverLimit is returned by Reserve when no sender could ever take n
// messages at once (n is above every sender's per-minute or per-day cap).
var ErrOverLimit = errors.New("more messages than any sender's limit")

// Sender is one sending mailbox and its limits.
type Sender struct {
	// Name is systemuser:<guid> or queue:<guid>. Letter case of the GUID
	// does not matter: both spellings share one budget.
	Name      string
	PerMinute int // messages in any rolling minute; 0 means DefaultPerMinute
	PerDay    int // messages in any rolling 24 hours; 0 means DefaultPerDay
}

func (s Sender) limits() (perMinute, perDay int) {
	perMinute, perDay = s.PerMinute, s.PerDay
	if perMinute == 0 {
		perMinute = DefaultPerMinute
	}
	if perDay == 0 {
		perDay = DefaultPerDay
	}
	return perMinute, perDay
}

// ValidSender reports whether name is systemuser:<guid> or queue:<guid>,
// the GUID in its 36-character hyphenated form.
func ValidSender(name string) bool {
	kind, id, ok := strings.Cut(name, ":")
	return ok && (kind == "systemuser" || kind == "queue") && isGUID(id)
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// PacerOptions configure a Pacer. The zero value gives the defaults.
type PacerOptions struct {
	// KeyPrefix is put in front of every Redis key. Default "pinv:".
	KeyPrefix string
	// Clock tells the time. Default: the Redis server's clock (TIME inside
	// the script), so every replica counts on one clock whatever the skew
	// between hosts. Tests inject a fake one.
	Clock func() time.Time
	// Guard lengthens the minute window a reservation counts in. The mail
	// server counts a message when it is submitted, a moment after the
	// reservation (the Dataverse requests in between, their retries): with
	// a guard at least that moment, no rolling minute of submissions holds
	// more than the cap. Default 0.
	Guard time.Duration
}

// Pacer spends per-sender budgets kept in Redis, so the limits hold across
// every replica that shares the Redis.
//
// Each sender has a sorted set of its sends in the last 24 hours (score and
// member carry the send time in milliseconds). One Lua script trims it,
// counts the last minute and the last day, and either records the new sends
// or computes when they would fit, for each sender in round-robin order, in
// one atomic step. Redis runs scripts one at a time, so concurrent callers
// on any number of connections can never overspend.
//
// The log is used instead of redis_rate's GCRA because GCRA is a leaky
// bucket: after 10,000 sends at once it refills continuously, allowing
// 5,000 more twelve hours later, 15,000 in one rolling day, where Exchange
// counts 10,000. Two GCRA limiters (minute and day) also could not be
// checked and spent together atomically, nor the round-robin choice made in
// the same step. The log costs one sorted-set entry per message in the
// window (10,000 per mailbox at the default cap).
type Pacer struct {
	rdb    redis.Scripter
	prefix string
	clock  func() time.Time
	// reserve, state and confirm are the scripts with the minute window
	// (plus Guard) written in.
	reserve, state, confirm *redis.Script
}

// NewPacer returns a Pacer over rdb.
func NewPacer(rdb redis.Scripter, opts *PacerOptions) *Pacer {
	var o PacerOptions
	if opts != nil {
		o = *opts
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "pinv:"
	}
	// All keys share the {pace} hash tag so one script can touch any set of
	// senders on a Redis Cluster too.
	p := &Pacer{rdb: rdb, prefix: o.KeyPrefix + "pace:{pace}:", clock: o.Clock,
		reserve: reserveScript, state: stateScript, confirm: confirmScript}
	if o.Guard > 0 {
		minute := "local MINUTE, DAY = " + strconv.FormatInt((minuteWindow+o.Guard).Milliseconds(), 10) + ", 86400000"
		p.reserve = redis.NewScript(strings.Replace(reserveSrc, "local MINUTE, DAY = 60000, 86400000", minute, 1))
		p.state = redis.NewScript(strings.Replace(stateSrc, "local MINUTE, DAY = 60000, 86400000", minute, 1))
		p.confirm = redis.NewScript(strings.Replace(confirmSrc, "local MINUTE, DAY = 60000, 86400000", minute, 1))
	}
	return p
}

// Reservation is the answer of Reserve.
type Reservation struct {
	// Sender is the name of the sender whose budget now carries the
	// messages; "" when every sender's budget is spent.
	Sender string
	// At is the time of the reservation on the pacer's clock.
	At time.Time
	// NotBefore is set when Sender is "": the earliest time at which one of
	// the senders can take the messages (a minute's sends leaving the
	// rolling minute, or a day's leaving the rolling 24 hours). Park the
	// request until then and call Reserve again; another request may have
	// taken the budget in between.
	NotBefore time.Time
}

// OK reports whether a sender was reserved.
func (r Reservation) OK() bool { return r.Sender != "" }

// reserveScript picks the first sender, from the round-robin cursor on,
// that can send n messages now, records them and moves the cursor past it.
// When none can, it returns the earliest time one could.
//
// KEYS: seq, cursor, sender logs...  ARGV: now ms ("" = server clock), n,
// then per-minute and per-day caps per sender.
// Returns {index or -1, now ms, not-before ms or -1}.
var reserveScript = redis.NewScript(reserveSrc)

const reserveSrc = paceLua + `
local now = clock(ARGV[1])
local n = tonumber(ARGV[2])
local k = #KEYS - 2
local start = tonumber(redis.call('GET', KEYS[2]) or '0') % k
local earliest = -1
for j = 0, k - 1 do
  local i = (start + j) % k
  local key = KEYS[3 + i]
  local _, _, free = state(key, now, n, tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i]))
  if free == now then
    for m = 1, n do
      local seq = redis.call('INCR', KEYS[1])
      redis.call('ZADD', key, ms(now), ms(now) .. ':' .. seq)
    end
    redis.call('PEXPIRE', key, DAY + MINUTE)
    redis.call('SET', KEYS[2], (i + 1) % k, 'PX', DAY)
    return {i, now, -1}
  end
  if free >= 0 and (earliest < 0 or free < earliest) then earliest = free end
end
return {-1, now, earliest}
`

// confirmScript moves the sender's oldest unconfirmed send of the last
// minute (and guard) to now and marks it confirmed (":c"). Sends are
// interchangeable: whichever entry moves, every message still in flight
// keeps an entry no older than its own reservation.
//
// KEYS: sender log.  ARGV: now ms ("" = server clock). Returns 1 when an
// entry moved.
var confirmScript = redis.NewScript(confirmSrc)

const confirmSrc = paceLua + `
local now = clock(ARGV[1])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ms(now - MINUTE), ms(now))) do
  if string.sub(m, -2) ~= ':c' then
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZADD', KEYS[1], ms(now), m .. ':c')
    return 1
  end
end
return 0
`

// stateScript reads each sender's counts for Schedule.
//
// KEYS: sender logs...  ARGV: now ms ("" = server clock), then caps per
// sender. Returns {now ms, then per sender: last minute, last day, oldest
// send in the day window ms or -1, next free ms or -1}.
var stateScript = redis.NewScript(stateSrc)

const stateSrc = paceLua + `
local now = clock(ARGV[1])
local out = {now}
for i = 0, #KEYS - 1 do
  local key = KEYS[1 + i]
  local cd, cm, free = state(key, now, 1, tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i]))
  local oldest = -1
  if cd > 0 then oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]) end
  table.insert(out, cm)
  table.insert(out, cd)
  table.insert(out, oldest)
  table.insert(out, free)
end
return out
`

// paceLua is shared by both scripts. Times are integer milliseconds,
// formatted with %d because Lua's default number formatting would round
// them. A send at t counts in the minute window for [t, t+1m) and in the
// day window for [t, t+24h).
const paceLua = `
local MINUTE, DAY = 60000, 86400000
local function ms(x) return string.format('%d', x) end
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function scoreAt(key, idx)
  return tonumber(redis.call('ZRANGE', key, idx, idx, 'WITHSCORES')[2])
end
-- state trims the sender's log to the day window and returns the sends in
-- the last day and the last minute, and when n more fit: now when they fit
-- now, -1 when they never can.
local function state(key, now, n, perMinute, perDay)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ms(now - DAY))
  local cd = redis.call('ZCARD', key)
  local cm = redis.call('ZCOUNT', key, '(' .. ms(now - MINUTE), '+inf')
  if n > perMinute or n > perDay then return cd, cm, -1 end
  local free = now
  if cm + n > perMinute then
    -- the minute's sends are the newest cm; the oldest cm+n-perMinute must leave
    free = math.max(free, scoreAt(key, cd - cm + (cm + n - perMinute) - 1) + MINUTE)
  end
  if cd + n > perDay then
    free = math.max(free, scoreAt(key, cd + n - perDay - 1) + DAY)
  end
  return cd, cm, free
end
`

// Reserve spends n messages of one sender's budget: the next sender in
// round-robin order (shared by all replicas) that has room for all n now.
// When every sender's budget is spent it reserves nothing and returns
// NotBefore. It fails with ErrOverLimit when n exceeds every sender's caps,
// and with the Redis error when Redis fails; a sender that is not
// systemuser:<guid> or queue:<guid>, a repeated sender or a negative limit
// is an error too.
func (p *Pacer) Reserve(ctx context.Context, senders []Sender, n int) (Reservation, error) {
	if n <= 0 {
		return Reservation{}, fmt.Errorf("pacer reserve: %d messages: want at least 1", n)
	}
	keys, args, err := p.senderArgs(senders)
	if err != nil {
		return Reservation{}, fmt.Errorf("pacer reserve: %w", err)
	}
	fits := false
	for _, s := range senders {
		pm, pd := s.limits()
		fits = fits || (n <= pm && n <= pd)
	}
	if !fits {
		return Reservation{}, fmt.Errorf("pacer reserve: %d messages: %w", n, ErrOverLimit)
	}
	keys = append([]string{p.prefix + "seq", p.cursorKey(keys)}, keys...)
	args = append([]any{p.now(), n}, args...)
	res, err := p.reserve.Run(ctx, p.rdb, keys, args...).Int64Slice()
	if err != nil {
		return Reservation{}, fmt.Errorf("pacer reserve: %w", err)
	}
	if len(res) != 3 {
		return Reservation{}, fmt.Errorf("pacer reserve: script returned %d values", len(res))
	}
	r := Reservation{At: time.UnixMilli(res[1])}
	if res[0] >= 0 {
		r.Sender = senders[res[0]].Name
	} else {
		r.NotBefore = time.UnixMilli(res[2])
	}
	return r, nil
}

// Confirm records that one message reserved on sender's budget has just
// been submitted: the sender's oldest unconfirmed reservation of the last
// minute now counts from this moment. A reservation counts from when it was
// made, but the mail server counts the message when it is submitted, after
// the Dataverse requests in between; when those take longer than Guard
// (retries, a slow change set), a minute of submissions could otherwise
// hold more than the cap. Calling it after each submission bounds that
// window to messages still unsubmitted a whole minute after their
// reservation. Nothing to confirm is not an error.
func (p *Pacer) Confirm(ctx context.Context, sender string) error {
	if !ValidSender(sender) {
		return fmt.Errorf("pacer confirm: sender %q: want systemuser:<guid> or queue:<guid>", sender)
	}
	key := p.prefix + "sent:" + strings.ToLower(sender)
	if err := p.confirm.Run(ctx, p.rdb, []string{key}, p.now()).Err(); err != nil {
		return fmt.Errorf("pacer confirm %s: %w", sender, err)
	}
	return nil
}

// SenderState is where one sender's budget stands.
type SenderState struct {
	Sender    string `json:"sender"`
	PerMinute int    `json:"per_minute"`
	PerDay    int    `json:"per_day"`
	// LastMinute and LastDay count the sends in the rolling minute and the
	// rolling 24 hours ending now.
	LastMinute int `json:"sent_last_minute"`
	LastDay    int `json:"sent_last_24h"`
	// WindowStart is the oldest send still in the 24-hour window; zero when
	// there is none.
	WindowStart time.Time `json:"window_start,omitzero"`
	// NextFree is when the sender can take one more message: now when it
	// has room now.
	NextFree time.Time `json:"next_free"`
}

// Schedule reports each sender's counts at one instant, returned as at.
// It fails for the reasons Reserve does.
func (p *Pacer) Schedule(ctx context.Context, senders []Sender) (at time.Time, states []SenderState, err error) {
	keys, args, err := p.senderArgs(senders)
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("pacer schedule: %w", err)
	}
	args = append([]any{p.now()}, args...)
	res, err := p.state.Run(ctx, p.rdb, keys, args...).Int64Slice()
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("pacer schedule: %w", err)
	}
	if len(res) != 1+4*len(senders) {
		return time.Time{}, nil, fmt.Errorf("pacer schedule: script returned %d values for %d senders", len(res), len(senders))
	}
	at = time.UnixMilli(res[0])
	states = make([]SenderState, len(senders))
	for i, s := range senders {
		v := res[1+4*i:]
		pm, pd := s.limits()
		st := SenderState{Sender: s.Name, PerMinute: pm, PerDay: pd, LastMinute: int(v[0]), LastDay: int(v[1])}
		if v[2] >= 0 {
			st.WindowStart = time.UnixMilli(v[2])
		}
		if v[3] >= 0 {
			st.NextFree = time.UnixMilli(v[3])
		}
		states[i] = st
	}
	return at, states, nil
}

// senderArgs checks the senders and returns their log keys and caps.
func (p *Pacer) senderArgs(senders []Sender) (keys []string, args []any, err error) {
	if len(senders) == 0 {
		return nil, nil, errors.New("no senders")
	}
	keys = make([]string, 0, len(senders))
	args = make([]any, 0, 2*len(senders))
	seen := make(map[string]bool, len(senders))
	for _, s := range senders {
		if !ValidSender(s.Name) {
			return nil, nil, fmt.Errorf("sender %q: want systemuser:<guid> or queue:<guid>", s.Name)
		}
		norm := strings.ToLower(s.Name)
		if seen[norm] {
			return nil, nil, fmt.Errorf("sender %q: listed twice", s.Name)
		}
		seen[norm] = true
		pm, pd := s.limits()
		if pm < 0 || pd < 0 {
			return nil, nil, fmt.Errorf("sender %q: negative limit (per minute %d, per day %d)", s.Name, pm, pd)
		}
		keys = append(keys, p.prefix+"sent:"+norm)
		args = append(args, pm, pd)
	}
	return keys, args, nil
}

// cursorKey names the round-robin cursor of one list of senders, in order.
func (p *Pacer) cursorKey(senderKeys []string) string {
	h := fnv.New64a()
	for _, k := range senderKeys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return p.prefix + "rr:" + strconv.FormatUint(h.Sum64(), 16)
}

// now is the script's clock argument: milliseconds, or "" for the server's.
func (p *Pacer) now() string {
	if p.clock == nil {
		return ""
	}
	return strconv.FormatInt(p.clock().UnixMilli(), 10)
}
