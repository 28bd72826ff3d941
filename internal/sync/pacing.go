package sync

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/dataverse"
)

// Pacer spends the sender budgets of a portal's mailboxes (see
// delivery.PortalPacer). Reserve returns the mailbox that now carries one
// more email; sender "" with a not-before time means every budget is spent
// until then; sender "" with a zero time means the portal is not paced.
type Pacer interface {
	Reserve(ctx context.Context, portal string) (sender string, notBefore time.Time, err error)
}

// SentRecorder is implemented by a Pacer that counts a reserved email from
// the moment it was submitted (delivery.PortalPacer): the mail server
// counts it then, after the Dataverse requests that follow the
// reservation.
type SentRecorder interface {
	Sent(ctx context.Context, sender string) error
}

// ContactReader is implemented by an Inviter that can read a contact the way
// its Invite needs it, so the worker's read serves both (invite.Service).
type ContactReader interface {
	ReadContact(ctx context.Context, contactID string, extra ...string) (dataverse.Record, error)
}

// parkedError says every sender's budget is spent until the time given: the
// request waits in the parked set, not failed and not counted as an attempt.
type parkedError struct{ until time.Time }

func (e *parkedError) Error() string {
	return fmt.Sprintf("every sender's budget is spent until %s", e.until.UTC().Format(time.RFC3339))
}

// parkedKey is the sorted set of requests waiting for a sender's budget:
// score = not-before (unix ms), member = order key "|" job, where the order
// key is the stream id the request had when first parked, zero-padded, so
// requests due at the same time go back to the stream in their first order.
func (i *Intake) parkedKey() string { return strings.TrimSuffix(i.keys.retry, "retry") + "parked" }

// moveParkedScript feeds parked requests whose time has come back into the
// stream, oldest first, in one atomic step (nothing lost across a crash: an
// entry is in the set or in the stream).
var moveParkedScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  local sep = string.find(m, '|', 1, true)
  redis.call('XADD', KEYS[2], '*', 'job', string.sub(m, sep + 1))
  redis.call('ZREM', KEYS[1], m)
end
return #due`)

// orderKey makes a stream id ("<ms>-<seq>") sort as text.
func orderKey(id string) string {
	ms, seq, _ := strings.Cut(id, "-")
	return fmt.Sprintf("%015s-%010s", ms, seq)
}

// park moves the message to the parked set until the not-before time and
// acknowledges it, atomically and only while this consumer owns it.
func (i *Intake) park(ctx context.Context, log *slog.Logger, id string, j job, until time.Time) bool {
	if j.Order == "" {
		j.Order = orderKey(id)
	}
	j.Prev = id
	body, _ := json.Marshal(j)
	ok := i.settleTo(ctx, id, i.parkedKey(), j.Order+"|"+string(body), fmt.Sprint(until.UnixMilli()))
	if ok {
		log.Info("every sender's budget is spent; the request waits", "not_before", until)
	}
	return ok
}

// settleTo is settle's retry mode into another sorted set.
func (i *Intake) settleTo(ctx context.Context, id, zset, member, score string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	n, err := settleScript.Run(ctx, i.rdb, []string{i.keys.stream, zset},
		groupName, id, i.cfg.Consumer, "retry", member, score).Int()
	if err != nil {
		i.log.Error("parking a message failed; it will be reclaimed", "msg", id, "err", err)
		return false
	}
	return n == 1
}

// moveParked moves due parked requests back into the stream.
func (i *Intake) moveParked(ctx context.Context, now int64) error {
	return moveParkedScript.Run(ctx, i.rdb, []string{i.parkedKey(), i.keys.stream}, now, 500).Err()
}

// reserve spends one email of the portal's sender budgets. A spent budget
// is a *parkedError.
func (i *Intake) reserve(ctx context.Context, portal string) (string, error) {
	if i.cfg.Pacer == nil {
		return "", nil
	}
	sender, until, err := i.cfg.Pacer.Reserve(ctx, portal)
	if err != nil {
		return "", fmt.Errorf("reserve a sender for %s: %w", portal, err)
	}
	if sender == "" && !until.IsZero() {
		return "", &parkedError{until: until}
	}
	return sender, nil
}

// readContact reads the contact under the worker's lock: through the
// Inviter when it can (one read for the worker and Invite), else the
// intake's own columns.
func (i *Intake) readContact(ctx context.Context, id string) (dataverse.Record, bool, error) {
	if r, ok := i.cfg.Invites.(ContactReader); ok {
		rec, err := r.ReadContact(ctx, id, i.contactColumns(false)...)
		return rec, true, err
	}
	rec, err := i.cfg.Dataverse.Retrieve(ctx, "contacts", id, &dataverse.Query{Select: i.contactColumns(false)})
	return rec, false, err
}

// parkedContactsScript counts the distinct contacts among the parked
// requests (a request without a contact counts on its own).
var parkedContactsScript = redis.NewScript(`
local seen, n = {}, 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local id = string.match(m, '"contact":"([^"]*)"')
  if not id or id == '' then
    n = n + 1
  elseif not seen[id] then
    seen[id] = true
    n = n + 1
  end
end
return n`)

// Parked counts the contacts whose invitation email waits for a sender's
// budget (all replicas). A contact counts once however many messages wait
// for it: the command line queues a bulk row and the webhook its Requested
// mark fires queues it again, and only one of them sends an email.
func (i *Intake) Parked(ctx context.Context) (int64, error) {
	n, err := parkedContactsScript.Run(ctx, i.rdb, []string{i.parkedKey()}).Int64()
	if err != nil {
		return 0, fmt.Errorf("parked requests: %w", err)
	}
	return n, nil
}

// invitedFor is how long a contact counts as just invited: duplicate
// messages for one click (webhook retries, a second event, the poll) come
// within it.
const invitedFor = 10 * time.Minute

func (i *Intake) invitedKey(contactID string) string {
	return strings.TrimSuffix(i.keys.retry, "retry") + "invited:" + contactID
}

// recentlyInvited reports whether this contact was invited within
// invitedFor (false when paced sending is off or Redis does not answer: the
// cautious answer only costs a read before reserving).
func (i *Intake) recentlyInvited(ctx context.Context, contactID string) bool {
	if i.cfg.Pacer == nil {
		return false
	}
	n, err := i.rdb.Exists(ctx, i.invitedKey(contactID)).Result()
	return err == nil && n > 0
}

// sent tells the pacer that an email reserved on sender went out.
func (i *Intake) sent(ctx context.Context, sender string) {
	r, ok := i.cfg.Pacer.(SentRecorder)
	if !ok || sender == "" {
		return
	}
	if err := r.Sent(ctx, sender); err != nil {
		i.log.Warn("could not record a send with the pacer; it counts from its reservation", "sender", sender, "err", err)
	}
}

// markInvited notes an invitation sent, so duplicates do not spend budget.
func (i *Intake) markInvited(ctx context.Context, contactID string) {
	if i.cfg.Pacer == nil {
		return
	}
	if err := i.rdb.Set(ctx, i.invitedKey(contactID), "1", invitedFor).Err(); err != nil {
		i.log.Warn("could not note the invitation; a duplicate message may spend a sender's budget", "contact", contactID, "err", err)
	}
}
