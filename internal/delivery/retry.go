package delivery

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Backoff retries temporary failures: capped exponential backoff with full
// jitter, a bounded number of attempts, and a context that stops it.
// The zero value is usable and means the defaults beside each field.
type Backoff struct {
	Attempts int           // tries in all, the first included; default 5
	Base     time.Duration // the first wait is uniform in [0, Base]; default 2s
	Max      time.Duration // no wait is longer; default 2m
	// Retryable says which errors deserve another try; default IsTemporary.
	Retryable func(error) bool
	// OnRetry, when set, hears about each failed try that will be retried
	// (for logs and metrics).
	OnRetry func(attempt int, wait time.Duration, err error)
}

// Do calls fn until it succeeds, fails in a way Retryable rejects, the
// attempts run out, or ctx ends. attempt counts from 1. It returns nil or
// the last error from fn (wrapped with the number of attempts when they ran
// out, or joined with ctx's error when ctx ended during a wait), so
// errors.Is(err, ErrTemporary) still tells a caller why it stopped.
func (b Backoff) Do(ctx context.Context, fn func(ctx context.Context, attempt int) error) error {
	attempts := cmp.Or(b.Attempts, 5)
	retryable := b.Retryable
	if retryable == nil {
		retryable = IsTemporary
	}
	for attempt := 1; ; attempt++ {
		err := fn(ctx, attempt)
		if err == nil || !retryable(err) {
			return err
		}
		if attempt >= attempts {
			return fmt.Errorf("delivery: gave up after %d attempts: %w", attempt, err)
		}
		wait := b.Delay(attempt)
		if b.OnRetry != nil {
			b.OnRetry(attempt, wait, err)
		}
		if werr := sleep(ctx, wait); werr != nil {
			return fmt.Errorf("delivery: stopped retrying after %d attempts: %w (last error: %w)", attempt, werr, err)
		}
	}
}

// Delay is the wait after failed try number attempt (from 1): uniform in
// [0, min(Max, Base·2^(attempt-1))]. Full jitter spreads clients that
// failed together (one relay hiccup, many invitations) over the window.
func (b Backoff) Delay(attempt int) time.Duration {
	ceiling := b.ceiling(attempt)
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling + 1)
}

func (b Backoff) ceiling(attempt int) time.Duration {
	base := cmp.Or(b.Base, 2*time.Second)
	limit := cmp.Or(b.Max, 2*time.Minute)
	d := base
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
