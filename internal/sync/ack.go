package sync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/redisconn"
)

// ErrNotReplicated is returned by Enqueue when Config.MinAckedReplicas is set
// and fewer replicas acknowledged the enqueue within Config.AckTimeout. The
// entry may be on the primary only, and a failover could lose it: the caller
// reports a failure (the webhook answers 503) so the request is sent again.
// A worker's per-contact lock is acknowledged the same way (a lock lost in a
// failover would let a second worker invite the same contact); one that is
// not is released and the message retried.
var ErrNotReplicated = errors.New("enqueue not acknowledged by enough Redis replicas")

// ackedEnqueueScript is enqueueScript for WAIT-acknowledged enqueues. WAIT
// covers the writes of its own connection only, so a duplicate rewrites its
// dedupe key in place (SET XX KEEPTTL, a replicated write): the WAIT after it
// then also covers the earlier enqueue the key stands for, which may have
// been answered 503 and not yet reached a replica. A duplicate returns "dup"
// instead of nil so the pipeline goes on to read WAIT's reply.
const ackedEnqueueScript = `
if ARGV[3] == '1' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
    redis.call('SET', KEYS[2], '1', 'XX', 'KEEPTTL')
    return 'dup'
  end
end
return redis.call('XADD', KEYS[1], '*', 'job', ARGV[1])`

const defaultAckTimeout = time.Second

// runEnqueue runs the enqueue script and returns the new stream id, or
// redis.Nil for a duplicate. With Config.MinAckedReplicas it waits, in the
// same pipeline, for that many replicas to hold the result.
func (i *Intake) runEnqueue(ctx context.Context, keys []string, body []byte, ttlMillis int64, use string) (string, error) {
	want := i.cfg.MinAckedReplicas
	if want <= 0 {
		return enqueueScript.Run(ctx, i.rdb, keys, body, ttlMillis, use).Text()
	}
	timeout := i.cfg.AckTimeout
	if timeout <= 0 {
		timeout = defaultAckTimeout
	}
	var cmd *redis.Cmd
	got, err := redisconn.WriteAcked(ctx, i.rdb, want, timeout, func(p redis.Pipeliner) error {
		cmd = p.Eval(ctx, ackedEnqueueScript, keys, body, ttlMillis, use)
		return nil
	})
	if err != nil {
		return "", err
	}
	res, err := cmd.Text()
	if err != nil {
		return "", err
	}
	if got < want {
		return "", fmt.Errorf("%w: %d of %d within %s", ErrNotReplicated, got, want, timeout)
	}
	if res == "dup" {
		return "", redis.Nil
	}
	return res, nil
}
