package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/codes"
)

// Request asks for one contact to be invited.
type Request struct {
	ContactID        string
	Portal           string   // "" = the contact's portal column, then Config.DefaultPortal
	Roles            []string // "" = the contact's roles column, then the portal's defaults
	InitiatingUserID string   // the CRM user who asked
	Source           string   // webhook, poll, cli, api; for logs and metrics
	// DedupeKey makes Enqueue a no-op while a request with the same key was
	// enqueued within Config.DedupeTTL; "" = no dedupe. Use something that
	// names the event, e.g. "webhook:<contact>:<operation id>".
	DedupeKey string
	// DedupeTTL overrides Config.DedupeTTL for this request (the delivery
	// poll re-checks a contact once per DedupeTTL).
	DedupeTTL time.Duration
	RequestID string // correlation id for logs (webhook x-ms-correlation-request-id)
	// Kind is KindInvite ("", the default), KindDelivery (follow the
	// contact's invitation email) or KindEmail (an email's status changed:
	// EmailID with the row it is regarding; ContactID is then empty).
	Kind                        string
	EmailID                     string
	RegardingTable, RegardingID string
}

// Request kinds.
const (
	KindInvite   = ""
	KindDelivery = "delivery"
	KindEmail    = "email"
)

// job is a Request as stored in the stream (one JSON field, "job").
type job struct {
	ContactID        string   `json:"contact"`
	Portal           string   `json:"portal,omitempty"`
	Roles            []string `json:"roles,omitempty"`
	InitiatingUserID string   `json:"user,omitempty"`
	Source           string   `json:"source,omitempty"`
	DedupeKey        string   `json:"dedupe,omitempty"`
	RequestID        string   `json:"request_id,omitempty"`
	Enqueued         int64    `json:"enqueued"`           // unix ms of the first enqueue
	Attempts         int      `json:"attempts,omitempty"` // failed attempts so far
	LastError        string   `json:"last_error,omitempty"`
	Prev             string   `json:"prev,omitempty"` // stream id of the previous attempt (keeps retry entries unique)
	Kind             string   `json:"kind,omitempty"`
	EmailID          string   `json:"email,omitempty"`
	RegardingTable   string   `json:"regarding_table,omitempty"`
	RegardingID      string   `json:"regarding,omitempty"`
	// Order is the stream id, zero-padded, the request had when it was first
	// parked for a sender's budget: parked requests keep their order.
	Order string `json:"order,omitempty"`
	// Trace is the W3C trace context of the enqueue (traceparent,
	// tracestate) when tracing is on: the worker's span continues that
	// trace, through retries and parking.
	Trace map[string]string `json:"trace,omitempty"`
}

// QueueStats describe the shared queue (all replicas).
type QueueStats struct {
	Depth       int64         // messages in the stream: waiting plus being worked on
	Pending     int64         // delivered to a worker and not yet acknowledged
	Retrying    int64         // waiting for a retry backoff to elapse
	OldestAge   time.Duration // age of the oldest message in the stream (0 when empty)
	DeadLetters int64         // messages in the dead-letter stream
}

// ErrStopping is returned by Enqueue after Shutdown.
var ErrStopping = errors.New("intake is shutting down")

// enqueueScript adds the job unless its dedupe key exists, atomically, so a
// crash cannot leave a dedupe key without its message.
var enqueueScript = redis.NewScript(`
if ARGV[3] == '1' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return false end
end
return redis.call('XADD', KEYS[1], '*', 'job', ARGV[1])`)

// Enqueue queues r durably. enqueued is false when r.DedupeKey was seen
// within Config.DedupeTTL (the earlier request is, or was, in the queue).
// Errors are Redis errors (the caller should answer 503 / retry) or a bad
// contact id.
func (i *Intake) Enqueue(ctx context.Context, r Request) (enqueued bool, err error) {
	if i.stopping.Load() {
		return false, fmt.Errorf("enqueue: %w", ErrStopping)
	}
	id, ok := normalizeGUID(r.ContactID)
	var emailID string
	switch {
	case r.Kind == KindEmail:
		if emailID, ok = normalizeGUID(r.EmailID); !ok {
			return false, fmt.Errorf("enqueue: email id %q is not a GUID", r.EmailID)
		}
		id = ""
	case !ok:
		return false, fmt.Errorf("enqueue: contact id %q is not a GUID", r.ContactID)
	case r.Kind != KindInvite && r.Kind != KindDelivery:
		return false, fmt.Errorf("enqueue: unknown request kind %q", r.Kind)
	}
	ctx, span, carrier := i.enqueueSpan(ctx, r)
	defer span.End()
	j := job{
		Trace:     carrier,
		ContactID: id, Portal: r.Portal, Roles: r.Roles, InitiatingUserID: r.InitiatingUserID,
		Source: r.Source, DedupeKey: r.DedupeKey, RequestID: r.RequestID, Enqueued: i.cfg.Now().UnixMilli(),
		Kind: r.Kind, EmailID: emailID, RegardingTable: r.RegardingTable, RegardingID: strings.ToLower(r.RegardingID),
	}
	body, err := json.Marshal(j)
	if err != nil {
		return false, fmt.Errorf("enqueue: %w", err)
	}
	dedupe, use := i.keys.dedupe, "0"
	if r.DedupeKey != "" {
		dedupe, use = i.keys.dedupe+r.DedupeKey, "1"
	}
	ttl := i.cfg.DedupeTTL
	if r.DedupeTTL > 0 {
		ttl = r.DedupeTTL
	}
	msgID, err := i.runEnqueue(ctx, []string{i.keys.stream, dedupe}, body, ttl.Milliseconds(), use)
	switch {
	case errors.Is(err, redis.Nil):
		i.hookEnqueue(r.Source, false)
		i.log.DebugContext(ctx, "enqueue: duplicate", "contact", id, "email", emailID, "source", r.Source, "dedupe", r.DedupeKey)
		return false, nil
	case err != nil:
		span.SetStatus(codes.Error, "")
		return false, fmt.Errorf("enqueue contact %s email %s: %w", id, emailID, err)
	}
	i.hookEnqueue(r.Source, true)
	i.log.DebugContext(ctx, "enqueued", "contact", id, "email", emailID, "kind", r.Kind, "source", r.Source, "msg", msgID, "request_id", r.RequestID)
	return true, nil
}

func (i *Intake) hookEnqueue(source string, enqueued bool) {
	if i.cfg.Hooks.Enqueue != nil {
		i.cfg.Hooks.Enqueue(source, enqueued)
	}
}

// Stats reads the queue's size and health from Redis.
func (i *Intake) Stats(ctx context.Context) (QueueStats, error) {
	var s QueueStats
	pipe := i.rdb.Pipeline()
	xlen := pipe.XLen(ctx, i.keys.stream)
	first := pipe.XRangeN(ctx, i.keys.stream, "-", "+", 1)
	retry := pipe.ZCard(ctx, i.keys.retry)
	dead := pipe.XLen(ctx, i.keys.dead)
	pending := pipe.XPending(ctx, i.keys.stream, groupName)
	_, err := pipe.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) && !isNoGroup(err) {
		return s, fmt.Errorf("queue stats: %w", err)
	}
	s.Depth, s.Retrying, s.DeadLetters = xlen.Val(), retry.Val(), dead.Val()
	if p, err := pending.Result(); err == nil {
		s.Pending = p.Count
	}
	if msgs := first.Val(); len(msgs) > 0 {
		if ms, ok := idTime(msgs[0].ID); ok {
			if age := i.cfg.Now().Sub(ms); age > 0 {
				s.OldestAge = age
			}
		}
	}
	return s, nil
}

// Ready reports whether Redis answers.
func (i *Intake) Ready(ctx context.Context) error {
	if err := i.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("intake: redis: %w", err)
	}
	return nil
}

// DeadLetter is one message in the dead-letter stream.
type DeadLetter struct {
	ID        string
	ContactID string
	Reason    string
	Attempts  int
	At        time.Time
	Request   Request
}

// DeadLetters lists up to n messages of the dead-letter stream, oldest first.
func (i *Intake) DeadLetters(ctx context.Context, n int64) ([]DeadLetter, error) {
	msgs, err := i.rdb.XRangeN(ctx, i.keys.dead, "-", "+", n).Result()
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		var j job
		s, _ := m.Values["job"].(string)
		_ = json.Unmarshal([]byte(s), &j)
		reason, _ := m.Values["reason"].(string)
		at, _ := idTime(m.ID)
		out = append(out, DeadLetter{ID: m.ID, ContactID: j.ContactID, Reason: reason, Attempts: j.Attempts, At: at,
			Request: j.request()})
	}
	return out, nil
}

func (j job) request() Request {
	return Request{ContactID: j.ContactID, Portal: j.Portal, Roles: j.Roles, InitiatingUserID: j.InitiatingUserID,
		Source: j.Source, DedupeKey: j.DedupeKey, RequestID: j.RequestID, Kind: j.Kind, EmailID: j.EmailID,
		RegardingTable: j.RegardingTable, RegardingID: j.RegardingID}
}

// idTime is the time a stream entry was added ("<ms>-<seq>").
func idTime(id string) (time.Time, bool) {
	ms, _, ok := strings.Cut(id, "-")
	if !ok {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}

// isNoGroup recognises Redis's NOGROUP reply: the stream or the group is
// gone, as after a restart of a Redis without persistence.
func isNoGroup(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "NOGROUP")
}

// ensureGroup creates the stream and the consumer group. The group starts at
// "0" so messages enqueued before any worker ran are delivered too.
func (i *Intake) ensureGroup(ctx context.Context) error {
	err := i.rdb.XGroupCreateMkStream(ctx, i.keys.stream, groupName, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create consumer group: %w", err)
	}
	return nil
}
