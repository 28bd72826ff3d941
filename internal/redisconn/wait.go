package redisconn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// WriteAcked runs the writes fn queues and then WAIT replicas timeout, in one
// pipeline so WAIT runs on the connection that made the writes (WAIT counts
// the replicas that hold that connection's writes). It returns how many
// replicas acknowledged them, which may be fewer than replicas when timeout
// passes first; a write kept by fewer replicas than wanted can be lost in a
// failover, so the caller decides whether to report it accepted.
//
// timeout must be at least a millisecond (WAIT 0 blocks forever) and below
// the client's read timeout, under which the pipeline's replies are read. A
// failed pipeline may be retried by go-redis as a whole, so the writes should
// be idempotent.
func WriteAcked(ctx context.Context, c redis.UniversalClient, replicas int, timeout time.Duration, fn func(redis.Pipeliner) error) (int, error) {
	if replicas < 1 {
		return 0, fmt.Errorf("redisconn.WriteAcked: replicas %d: must be at least 1", replicas)
	}
	if timeout < time.Millisecond {
		return 0, errors.New("redisconn.WriteAcked: timeout must be at least 1ms")
	}
	if o, ok := c.(interface{ Options() *redis.Options }); ok {
		if rt := o.Options().ReadTimeout; rt > 0 && timeout >= rt {
			return 0, fmt.Errorf("redisconn.WriteAcked: timeout %s: must be below the client's read timeout %s", timeout, rt)
		}
	}
	var wait *redis.Cmd
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		if err := fn(p); err != nil {
			return err
		}
		wait = p.Do(ctx, "wait", replicas, timeout.Milliseconds())
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("redisconn.WriteAcked: %w", err)
	}
	n, err := wait.Int()
	if err != nil {
		return 0, fmt.Errorf("redisconn.WriteAcked: WAIT reply: %w", err)
	}
	return n, nil
}
