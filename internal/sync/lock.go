package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	stdsync "sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/redisconn"
)

// A lock is a Redis key set with SET NX PX to a random token. Only the
// holder of the token may extend or delete it (checked in Lua), so a holder
// whose lease lapsed cannot release a lock someone else has since taken.
var (
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
	extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`)
)

// tryLock takes key for ttl; ok is false when someone else holds it.
func tryLock(ctx context.Context, rdb redis.Cmdable, key string, ttl time.Duration) (token string, ok bool, err error) {
	token = randomHex(16)
	ok, err = rdb.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return "", false, fmt.Errorf("lock %s: %w", key, err)
	}
	return token, ok, nil
}

func unlockKey(ctx context.Context, rdb redis.Scripter, key, token string) error {
	if err := releaseScript.Run(ctx, rdb, []string{key}, token).Err(); err != nil {
		return fmt.Errorf("unlock %s: %w", key, err)
	}
	return nil
}

// extendKey renews the lease; held is false when the lock was lost.
func extendKey(ctx context.Context, rdb redis.Scripter, key, token string, ttl time.Duration) (held bool, err error) {
	n, err := extendScript.Run(ctx, rdb, []string{key}, token, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("extend lock %s: %w", key, err)
	}
	return n == 1, nil
}

// redisLocker is invite.Locker over Redis, shared by every replica: Lock
// waits until the key is free (or ctx ends) and keeps the lease alive while
// held, so a long Dataverse call cannot outlive it; a crashed holder's lock
// expires after ttl.
type redisLocker struct {
	rdb    redis.UniversalClient
	prefix string
	log    *slog.Logger
	// acks, when above 0, makes a lock count as taken only once that many
	// replicas hold it (WAIT), so a failover cannot hand a held lock to a
	// second worker; ackTimeout bounds the wait.
	acks       int
	ackTimeout time.Duration
}

// NewLocker returns an invite.Locker that keeps its locks in Redis under
// prefix + "lock:", so invitations are serialised across replicas. cmd
// passes it as invite.Config.Locker.
func NewLocker(rdb redis.UniversalClient, prefix string) invite.Locker {
	return &redisLocker{rdb: rdb, prefix: prefix + "lock:", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// Lock implements invite.Locker.
func (l *redisLocker) Lock(ctx context.Context, key string, ttl time.Duration) (func(), error) {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	k := l.prefix + key
	wait := 5 * time.Millisecond
	for {
		token, ok, err := l.try(ctx, k, ttl)
		if err != nil {
			return nil, err
		}
		if ok {
			return l.hold(k, token, ttl), nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("lock %s: %w", k, context.Cause(ctx))
		case <-t.C:
		}
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}

// try is tryLock, acknowledged by l.acks replicas when set. A lock taken
// but not acknowledged in time is released and reported as an error.
func (l *redisLocker) try(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	if l.acks <= 0 {
		return tryLock(ctx, l.rdb, key, ttl)
	}
	timeout := l.ackTimeout
	if timeout <= 0 {
		timeout = defaultAckTimeout
	}
	token := randomHex(16)
	var set *redis.BoolCmd
	got, err := redisconn.WriteAcked(ctx, l.rdb, l.acks, timeout, func(p redis.Pipeliner) error {
		set = p.SetNX(ctx, key, token, ttl)
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("lock %s: %w", key, err)
	}
	if !set.Val() {
		return "", false, nil
	}
	if got < l.acks {
		if err := unlockKey(ctx, l.rdb, key, token); err != nil {
			l.log.Warn("release unacknowledged lock", "key", key, "err", err)
		}
		return "", false, fmt.Errorf("lock %s: %w: %d of %d within %s", key, ErrNotReplicated, got, l.acks, timeout)
	}
	return token, true, nil
}

// hold keeps the lease fresh until the returned unlock is called.
func (l *redisLocker) hold(key, token string, ttl time.Duration) func() {
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
				held, err := extendKey(ctx, l.rdb, key, token, ttl)
				cancel()
				if err == nil && !held {
					l.log.Warn("lock lost before release", "key", key)
					return
				}
			}
		}
	}()
	var once stdsync.Once
	return func() { once.Do(func() { l.release(key, token, stop, stopped) }) }
}

func (l *redisLocker) release(key, token string, stop, stopped chan struct{}) {
	close(stop)
	<-stopped
	// Release even when the caller's context is gone: the work is done.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := unlockKey(ctx, l.rdb, key, token); err != nil && !errors.Is(err, context.Canceled) {
		l.log.Warn("release lock", "key", key, "err", err)
	}
}
