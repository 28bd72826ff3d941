package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
)

var (
	// settleScript moves a message this consumer still owns to the retry set
	// or the dead-letter stream and acknowledges it, atomically. When another
	// consumer has reclaimed the message meanwhile it does nothing: the new
	// owner decides.
	settleScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
if ARGV[4] == 'retry' then
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5])
else
  redis.call('XADD', KEYS[2], '*', 'job', ARGV[5], 'reason', ARGV[6], 'id', ARGV[2])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1`)

	// heartbeatScript resets the idle time of a message this consumer owns,
	// so XAUTOCLAIM leaves it alone while the worker is alive.
	heartbeatScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1`)

	// moveDueScript feeds retries whose backoff has elapsed back into the
	// stream.
	moveDueScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'job', m)
  redis.call('ZREM', KEYS[1], m)
end
return #due`)
)

// Outcomes reported to Hooks.Processed.
const (
	OutcomeSent    = "sent"
	OutcomeSkipped = "skipped"
	OutcomeRetry   = "retry"
	OutcomeFailed  = "failed"
)

func (i *Intake) blockFor() time.Duration {
	return min(time.Second, max(i.cfg.Lease/4, 10*time.Millisecond))
}

func (i *Intake) claimEvery() time.Duration {
	return min(30*time.Second, max(i.cfg.Lease/4, 50*time.Millisecond))
}

// worker reads and processes messages until Shutdown or ctx ends.
func (i *Intake) worker(ctx context.Context) {
	defer i.workers.Done()
	pause := 50 * time.Millisecond
	for !i.stopping.Load() && ctx.Err() == nil {
		m, claimed, err := i.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if isNoGroup(err) { // Redis lost its data (restart without persistence)
				if err := i.ensureGroup(ctx); err == nil {
					continue
				}
			}
			i.log.Warn("queue read failed", "consumer", i.cfg.Consumer, "err", err)
			sleep(ctx, pause)
			pause = min(pause*2, 5*time.Second)
			continue
		}
		pause = 50 * time.Millisecond
		if m != nil {
			i.handle(ctx, *m, claimed)
		}
	}
}

// next returns the next message for this consumer: a stale one reclaimed
// from a dead consumer when a sweep is due, else a new one (nil after the
// block timeout).
func (i *Intake) next(ctx context.Context) (*redis.XMessage, bool, error) {
	now := time.Now().UnixNano()
	if due := i.nextClaim.Load(); now >= due && i.nextClaim.CompareAndSwap(due, now+int64(i.claimEvery())) {
		msgs, _, err := i.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: i.keys.stream, Group: groupName, Consumer: i.cfg.Consumer,
			MinIdle: i.cfg.Lease, Start: "0-0", Count: 1,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, false, fmt.Errorf("xautoclaim: %w", err)
		}
		if len(msgs) > 0 {
			i.nextClaim.Store(now) // there may be more: sweep again right away
			return &msgs[0], true, nil
		}
	}
	res, err := i.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: groupName, Consumer: i.cfg.Consumer, Streams: []string{i.keys.stream, ">"},
		Count: 1, Block: i.blockFor(),
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("xreadgroup: %w", err)
	}
	for _, s := range res {
		if len(s.Messages) > 0 {
			return &s.Messages[0], false, nil
		}
	}
	return nil, false, nil
}

// handle processes one message and settles it: ack on success or skip,
// retry later on a transient error, dead-letter on a permanent one or when
// attempts run out. When ctx ends mid-way (a crash or a forced stop) the
// message stays pending and another worker reclaims it after the lease.
func (i *Intake) handle(ctx context.Context, m redis.XMessage, claimed bool) {
	raw, _ := m.Values["job"].(string)
	var j job
	if err := json.Unmarshal([]byte(raw), &j); err != nil || (j.ContactID == "" && j.EmailID == "") {
		if len(m.Values) == 0 { // entry deleted under a pending id: nothing to do
			i.ack(ctx, m.ID)
			return
		}
		i.log.Error("unreadable queue message", "msg", m.ID)
		i.settle(ctx, m.ID, "dead", raw, "unreadable queue message")
		return
	}
	log := i.log.With("msg", m.ID, "contact", j.ContactID, "source", j.Source, "attempt", j.Attempts+1)
	if j.Kind != KindInvite {
		log = log.With("kind", j.Kind, "email", j.EmailID)
	}
	if j.RequestID != "" {
		log = log.With("request_id", j.RequestID)
	}
	if claimed {
		log.Info("reclaimed a message from a stalled consumer")
		if n := i.deliveries(ctx, m.ID); n > int64(i.cfg.MaxAttempts)+1 {
			i.fail(ctx, log, m.ID, j, nil, fmt.Sprintf("Invitation not sent: the request was picked up %d times without finishing.", n))
			return
		}
	}
	ctx, span := i.processSpan(ctx, &j, m.ID, claimed)
	stop := i.heartbeat(ctx, m.ID)
	outcome, err := i.run(ctx, &j)
	stop()
	defer endProcess(span, outcome, err)
	since := time.Duration(0)
	if j.Enqueued > 0 {
		since = i.cfg.Now().Sub(time.UnixMilli(j.Enqueued))
	}
	switch {
	case err == nil:
		if i.ack(ctx, m.ID) {
			log.Info("request done", "outcome", outcome, "since_enqueued", since)
			i.hookProcessed(outcome, since)
		}
	case ctx.Err() != nil:
		log.Warn("stopped mid-request; it stays pending for another worker", "err", err)
	case errors.Is(err, invite.ErrNoOpenInvitation):
		// The reason is on the contact's error column; nothing else changes.
		if i.ack(ctx, m.ID) {
			log.Info("resend or revoke for a contact with no open invitation")
			i.hookProcessed(OutcomeSkipped, since)
		}
	case errors.Is(err, invite.ErrAlreadyPortalUser):
		// Invite recorded the outcome (status Redeemed) on the contact.
		if i.ack(ctx, m.ID) {
			log.Info("contact is already a portal user; no invitation sent")
			i.hookProcessed(OutcomeSkipped, since)
		}
	case errors.As(err, new(*parkedError)):
		var pk *parkedError
		errors.As(err, &pk)
		i.park(ctx, log, m.ID, j, pk.until)
	case isPermanent(err):
		i.fail(ctx, log, m.ID, j, err, "Invitation not sent: "+readable(err))
	default:
		j.Attempts++
		j.LastError = truncate(err.Error(), 1000)
		if j.Attempts >= i.cfg.MaxAttempts {
			i.fail(ctx, log, m.ID, j, err, failReason(j, err))
			return
		}
		delay := i.backoff(j.Attempts)
		j.Prev = m.ID
		body, _ := json.Marshal(j)
		due := i.cfg.Now().Add(delay).UnixMilli()
		if i.settle(ctx, m.ID, "retry", string(body), fmt.Sprint(due)) {
			log.Warn("request failed; will retry", "err", err, "retry_in", delay)
			i.hookProcessed(OutcomeRetry, since)
		}
	}
}

// process invites the contact if it still asks for it. The per-contact lock
// makes the re-read and Invite one step across replicas: a second message for
// the same click waits, then finds the contact Sent. It returns the portal's
// email channel with OutcomeSent.
func (i *Intake) process(ctx context.Context, j job) (string, string, error) {
	lockCtx, cancel := context.WithTimeout(ctx, i.cfg.Lease)
	unlock, err := i.locker.Lock(lockCtx, j.ContactID, i.cfg.Lease)
	cancel()
	if err != nil {
		return "", "", fmt.Errorf("contact %s is busy: %w", j.ContactID, err)
	}
	defer unlock()
	// The sender's budget first: a parked request costs no Dataverse read.
	reservedFor := j.Portal
	if reservedFor == "" {
		reservedFor = i.cfg.DefaultPortal
	}
	// A contact invited moments ago is most likely a duplicate message for
	// the same click: read first and reserve only if it still asks.
	sender, reserved := "", false
	if !i.recentlyInvited(ctx, j.ContactID) {
		if sender, err = i.reserve(ctx, reservedFor); err != nil {
			return "", "", err
		}
		reserved = true
	}
	rec, full, err := i.readContact(ctx, j.ContactID)
	if dataverse.IsNotFound(err) || errors.Is(err, invite.ErrNotFound) {
		return OutcomeSkipped, "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("re-read contact: %w", err)
	}
	st, ok := intValue(rec[i.cols.Status])
	if !ok || !i.wanted(st) {
		return OutcomeSkipped, "", nil
	}
	if st != i.cols.Requested {
		return i.command(ctx, j.ContactID, rec.ETag(), st)
	}
	portal := ""
	if i.cols.Portal != "" {
		portal = strings.TrimSpace(rec.Str(i.cols.Portal))
	}
	if portal == "" {
		portal = j.Portal
	}
	if portal == "" {
		portal = i.cfg.DefaultPortal
	}
	roles := j.Roles
	if i.cols.Roles != "" {
		if r := splitRoles(rec.Str(i.cols.Roles)); len(r) > 0 {
			roles = r
		}
	}
	if !reserved || !strings.EqualFold(portal, reservedFor) {
		// The contact names another portal, with senders of its own.
		if sender, err = i.reserve(ctx, portal); err != nil {
			return "", "", err
		}
	}
	req := invite.InviteRequest{
		ContactID: j.ContactID, Portal: portal, Roles: roles,
		InitiatingUserID: j.InitiatingUserID, Source: j.Source, Sender: sender,
	}
	if full {
		req.Contact = rec
	}
	res, err := i.cfg.Invites.Invite(ctx, req)
	if err != nil {
		return "", "", err
	}
	i.markInvited(ctx, j.ContactID)
	if res != nil && res.EmailSent {
		i.sent(ctx, sender)
		i.rememberInvitationTrace(ctx, j.ContactID)
	}
	channel := ""
	if res != nil && res.EmailSent {
		channel = res.Channel
	}
	return OutcomeSent, channel, nil
}

// fail records the failure on the contact and dead-letters the message.
func (i *Intake) fail(ctx context.Context, log *slog.Logger, id string, j job, cause error, reason string) {
	reason = truncate(reason, 2000)
	if j.ContactID != "" && !errors.Is(cause, invite.ErrNotFound) {
		if err := i.cfg.Invites.MarkFailed(ctx, j.ContactID, reason); err != nil {
			// Leave the message pending: it is reclaimed after the lease and
			// fails again, which retries the write-back.
			log.Error("could not mark the contact failed; will try again", "err", err, "reason", reason)
			return
		}
	}
	if j.LastError == "" && cause != nil {
		j.LastError = truncate(cause.Error(), 1000)
	}
	body, _ := json.Marshal(j)
	if i.settle(ctx, id, "dead", string(body), reason) {
		log.Error("request failed for good; moved to the dead-letter stream", "reason", reason)
		i.hookProcessed(OutcomeFailed, i.cfg.Now().Sub(time.UnixMilli(j.Enqueued)))
	}
}

// isPermanent reports errors a retry cannot fix: the domain's (no email,
// unknown portal, ...) and Dataverse's 4xx other than throttling, which the
// client marks with a Permanent method.
func isPermanent(err error) bool {
	if invite.IsPermanent(err) {
		return true
	}
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// readable is the user-facing part of a permanent error: the invite
// sentinel's message, which is written for people.
func readable(err error) string {
	for _, s := range []error{invite.ErrUnknownPortal, invite.ErrUnknownRole, invite.ErrNoEmail,
		invite.ErrInactiveContact, invite.ErrAlreadyPortalUser, invite.ErrNotFound} {
		if errors.Is(err, s) {
			msg := s.Error()
			if errors.Is(err, invite.ErrUnknownPortal) || errors.Is(err, invite.ErrUnknownRole) {
				msg = err.Error() // names the portal or role
			}
			return strings.ToUpper(msg[:1]) + msg[1:] + "."
		}
	}
	return err.Error()
}

func (i *Intake) ack(ctx context.Context, id string) bool {
	// Acknowledge even if the work context just ended: the work is done.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := i.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, i.keys.stream, groupName, id)
		p.XDel(ctx, i.keys.stream, id)
		return nil
	})
	if err != nil {
		i.log.Error("ack failed; the message will be redelivered and skipped", "msg", id, "err", err)
		return false
	}
	return true
}

func (i *Intake) settle(ctx context.Context, id, mode, body, arg string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	target := i.keys.dead
	if mode == "retry" {
		target = i.keys.retry
	}
	n, err := settleScript.Run(ctx, i.rdb, []string{i.keys.stream, target},
		groupName, id, i.cfg.Consumer, mode, body, arg).Int()
	if err != nil {
		i.log.Error("settling a message failed; it will be reclaimed", "msg", id, "mode", mode, "err", err)
		return false
	}
	if n == 0 {
		i.log.Info("message was reclaimed by another consumer meanwhile", "msg", id)
		return false
	}
	return true
}

// deliveries is how often the message was delivered (XPENDING), 0 if unknown.
func (i *Intake) deliveries(ctx context.Context, id string) int64 {
	p, err := i.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: i.keys.stream, Group: groupName, Start: id, End: id, Count: 1,
	}).Result()
	if err != nil || len(p) == 0 {
		return 0
	}
	return p[0].RetryCount
}

// heartbeat keeps the message's idle time low while it is processed.
func (i *Intake) heartbeat(ctx context.Context, id string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(max(i.cfg.Lease/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := heartbeatScript.Run(ctx, i.rdb, []string{i.keys.stream}, groupName, id, i.cfg.Consumer).Err(); err != nil && ctx.Err() == nil {
					i.log.Warn("heartbeat failed", "msg", id, "err", err)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// backoff is RetryDelay doubled per attempt, capped, with jitter in [d/2, d].
func (i *Intake) backoff(attempt int) time.Duration {
	d := i.cfg.RetryDelay
	for n := 1; n < attempt && d < i.cfg.MaxRetryDelay; n++ {
		d *= 2
	}
	d = min(d, i.cfg.MaxRetryDelay)
	return d/2 + rand.N(d/2+1)
}

// maintain moves due retries back into the stream and, now and then, drops
// consumers left behind by replicas that are gone, until the intake stops.
func (i *Intake) maintain(ctx context.Context) {
	defer i.workers.Done()
	every := min(time.Second, max(i.cfg.RetryDelay/4, 20*time.Millisecond))
	t := time.NewTicker(every)
	defer t.Stop()
	lastSweep := time.Now()
	for !i.stopping.Load() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := i.cfg.Now().UnixMilli()
		if err := moveDueScript.Run(ctx, i.rdb, []string{i.keys.retry, i.keys.stream}, now, 100).Err(); err != nil && ctx.Err() == nil {
			i.log.Warn("moving due retries failed", "err", err)
		}
		if err := i.moveParked(ctx, now); err != nil && ctx.Err() == nil {
			i.log.Warn("moving parked requests failed", "err", err)
		}
		if time.Since(lastSweep) > consumerSweepEvery {
			lastSweep = time.Now()
			i.dropIdleConsumers(ctx, consumerIdleLimit)
		}
	}
}

const (
	consumerSweepEvery = 10 * time.Minute
	consumerIdleLimit  = time.Hour
)

// dropConsumerScript deletes a consumer only if it holds no pending
// messages, checked atomically: deleting one with pending entries would
// lose them.
var dropConsumerScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return -1 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])`)

// dropIdleConsumers removes consumers idle longer than limit with nothing
// pending. Every replica start adds a consumer name; without this the group
// would list every replica that ever ran. A live consumer that happens to be
// dropped is recreated by its next read.
func (i *Intake) dropIdleConsumers(ctx context.Context, limit time.Duration) {
	cs, err := i.rdb.XInfoConsumers(ctx, i.keys.stream, groupName).Result()
	if err != nil {
		return
	}
	for _, c := range cs {
		if c.Name == i.cfg.Consumer || c.Pending > 0 || c.Idle < limit {
			continue
		}
		if n, err := dropConsumerScript.Run(ctx, i.rdb, []string{i.keys.stream}, groupName, c.Name).Int(); err == nil && n >= 0 {
			i.log.Info("dropped an idle consumer", "consumer", c.Name, "idle", c.Idle)
		}
	}
}

func (i *Intake) hookProcessed(outcome string, d time.Duration) {
	if i.cfg.Hooks.Processed != nil {
		i.cfg.Hooks.Processed(outcome, d)
	}
}

// contactColumns are the columns intake reads: status, portal, roles (and
// who changed the row last, for the poller).
func (i *Intake) contactColumns(withUser bool) []string {
	cols := []string{"contactid", i.cols.Status}
	if i.cols.Portal != "" {
		cols = append(cols, i.cols.Portal)
	}
	if i.cols.Roles != "" {
		cols = append(cols, i.cols.Roles)
	}
	if withUser {
		cols = append(cols, "_modifiedby_value")
	}
	return cols
}

// splitRoles reads the comma-separated roles column.
func splitRoles(s string) []string {
	var out []string
	for r := range strings.SplitSeq(s, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
