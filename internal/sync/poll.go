package sync

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/dataverse"
)

// ErrPollBusy is returned by PollOnce when another replica holds the poll
// lock; the scheduled poller treats it as a skipped cycle.
var ErrPollBusy = errors.New("poll: another replica is polling")

// PollOnce runs one poll cycle: it reads the contacts changed since the last
// cycle through change tracking (the delta link lives in Redis), keeps those
// whose invite status is Requested and enqueues them. Without a delta link,
// or when it expired, it runs the filtered query "<status> eq <requested>"
// and starts a new change-tracking baseline. A cycle with no changes costs
// one Dataverse request. Only one replica polls at a time (a Redis lock with
// a lease); the others get ErrPollBusy.
func (i *Intake) PollOnce(ctx context.Context) (enqueued int, err error) {
	start := time.Now()
	token, ok, err := tryLock(ctx, i.rdb, i.keys.pollLock, i.cfg.Lease)
	if err != nil {
		return 0, fmt.Errorf("poll: %w", err)
	}
	if !ok {
		return 0, ErrPollBusy
	}
	l := &redisLocker{rdb: i.rdb, log: i.log}
	defer l.hold(i.keys.pollLock, token, i.cfg.Lease)()
	n, err := i.poll(ctx)
	if i.cfg.Hooks.Poll != nil {
		i.cfg.Hooks.Poll(n, time.Since(start), err)
	}
	if err != nil {
		return n, fmt.Errorf("poll: %w", err)
	}
	i.log.Debug("poll done", "enqueued", n, "duration", time.Since(start))
	return n, nil
}

func (i *Intake) poll(ctx context.Context) (int, error) {
	cols := i.contactColumns(true)
	link, err := i.rdb.Get(ctx, i.keys.delta).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("read delta link: %w", err)
	}
	if link != "" {
		res, err := i.cfg.Dataverse.Delta(ctx, "contacts", cols, link)
		switch {
		case err == nil:
			n, err := i.enqueueRecords(ctx, res.Changed)
			if err != nil {
				return n, err // keep the old link: the same changes come again
			}
			return n, i.saveLink(ctx, res.DeltaLink)
		case dataverse.IsDeltaTokenExpired(err):
			i.log.Info("change tracking token expired; running a full query")
		default:
			return 0, fmt.Errorf("read changes: %w", err)
		}
	}
	// Full pass: the filtered query finds the work at once; the baseline
	// that follows returns every contact (Dataverse allows no $filter with
	// change tracking), and filtering it too covers clicks in between.
	n, err := i.fullQuery(ctx, cols)
	if err != nil {
		return n, err
	}
	res, err := i.cfg.Dataverse.Delta(ctx, "contacts", cols, "")
	if err != nil {
		return n, fmt.Errorf("start change tracking: %w", err)
	}
	m, err := i.enqueueRecords(ctx, res.Changed)
	if err != nil {
		return n + m, err
	}
	return n + m, i.saveLink(ctx, res.DeltaLink)
}

func (i *Intake) fullQuery(ctx context.Context, cols []string) (int, error) {
	q := &dataverse.Query{
		Select:   cols,
		Filter:   i.wantedFilter(),
		PageSize: 1000,
	}
	total, next := 0, ""
	for {
		page, err := i.cfg.Dataverse.QueryPage(ctx, "contacts", q, next)
		if err != nil {
			return total, fmt.Errorf("query requested contacts: %w", err)
		}
		n, err := i.enqueueRecords(ctx, page.Records)
		total += n
		if err != nil {
			return total, err
		}
		if next = page.NextLink; next == "" {
			return total, nil
		}
	}
}

func (i *Intake) saveLink(ctx context.Context, link string) error {
	if link == "" {
		return nil
	}
	// Tokens expire after about 7 days in Dataverse; a stale key does no
	// harm (it is replaced on expiry), so no TTL.
	if err := i.rdb.Set(ctx, i.keys.delta, link, 0).Err(); err != nil {
		return fmt.Errorf("save delta link: %w", err)
	}
	return nil
}

// enqueueRecords enqueues the rows whose status is Requested; the dedupe key
// is the row version, so the same unchanged row is queued once.
func (i *Intake) enqueueRecords(ctx context.Context, recs []dataverse.Record) (int, error) {
	n := 0
	for _, rec := range recs {
		if st, ok := intValue(rec[i.cols.Status]); !ok || !i.wanted(st) {
			continue
		}
		id, ok := normalizeGUID(rec.Str("contactid"))
		if !ok {
			continue
		}
		r := Request{ContactID: id, Source: "poll", InitiatingUserID: rec.Str("_modifiedby_value")}
		if i.cols.Portal != "" {
			r.Portal = strings.TrimSpace(rec.Str(i.cols.Portal))
		}
		if i.cols.Roles != "" {
			r.Roles = splitRoles(rec.Str(i.cols.Roles))
		}
		if v := rowVersion(rec); v != "" {
			r.DedupeKey = "poll:" + id + ":" + v
		}
		ok, err := i.Enqueue(ctx, r)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// rowVersion is the version number in the row's ETag (W/"12345").
func rowVersion(rec dataverse.Record) string {
	e := rec.ETag()
	e = strings.TrimPrefix(e, "W/")
	if u, err := strconv.Unquote(e); err == nil {
		return u
	}
	return e
}
