package redisconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelStatus is one sentinel's answer to a check.
type SentinelStatus struct {
	Addr    string // as configured in redis.sentinel.addrs
	Primary string // host:port the sentinel names as primary; empty when Err is set
	Err     error  // why the sentinel gave no primary; nil when it did
}

// SentinelReport is the answer of every configured sentinel, in
// configuration order.
type SentinelReport []SentinelStatus

// Down lists the sentinels that gave no primary.
func (r SentinelReport) Down() []string {
	var down []string
	for _, s := range r {
		if s.Err != nil {
			down = append(down, s.Addr)
		}
	}
	return down
}

// Ready reports whether at least one sentinel named a primary, which is all
// the client needs to reach it.
func (r SentinelReport) Ready() bool {
	return len(r.Down()) < len(r)
}

// Err names every sentinel that gave no primary, with its reason; nil when
// all did.
func (r SentinelReport) Err() error {
	var parts []string
	for _, s := range r {
		if s.Err != nil {
			parts = append(parts, fmt.Sprintf("%s (%v)", s.Addr, s.Err))
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("redis.sentinel.addrs: %d of %d sentinels do not answer: %s",
		len(parts), len(r), strings.Join(parts, "; "))
}

// SentinelChecker asks each configured sentinel for the primary, for
// `connector check` and /readyz. It keeps one small client per sentinel.
type SentinelChecker struct {
	masterName string
	addrs      []string
	clients    []*redis.SentinelClient
}

// NewSentinelChecker builds a checker for o.Sentinel, with the same TLS
// settings as New. It does not connect.
func NewSentinelChecker(o Options) (*SentinelChecker, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	if !o.Sentinel.Enabled() {
		return nil, errors.New("redis.sentinel: not configured")
	}
	if err := o.Sentinel.validate(u.Scheme); err != nil {
		return nil, err
	}
	// A check answers for now: one attempt, no retries, short timeouts.
	const timeout = 2 * time.Second
	d, err := newDialer(o, u, &redis.Options{DialTimeout: timeout})
	if err != nil {
		return nil, err
	}
	c := &SentinelChecker{masterName: o.Sentinel.MasterName, addrs: o.Sentinel.Addrs}
	for _, addr := range o.Sentinel.Addrs {
		opt := &redis.Options{
			Addr:          addr,
			Password:      o.Sentinel.Password,
			MaxRetries:    -1,
			DialerRetries: 1,
			DialTimeout:   timeout,
			ReadTimeout:   timeout,
			WriteTimeout:  timeout,
			PoolSize:      1,
		}
		if d.tls != nil {
			opt.TLSConfig = d.tls
			opt.Dialer = d.dial
		}
		c.clients = append(c.clients, redis.NewSentinelClient(opt))
	}
	return c, nil
}

// Check asks every sentinel at once for the primary's address.
func (c *SentinelChecker) Check(ctx context.Context) SentinelReport {
	r := make(SentinelReport, len(c.clients))
	var wg sync.WaitGroup
	for i, cl := range c.clients {
		wg.Go(func() {
			r[i] = SentinelStatus{Addr: c.addrs[i]}
			hp, err := cl.GetMasterAddrByName(ctx, c.masterName).Result()
			switch {
			case errors.Is(err, redis.Nil):
				r[i].Err = fmt.Errorf("does not monitor master %q", c.masterName)
			case err != nil:
				r[i].Err = err
			case len(hp) != 2:
				r[i].Err = fmt.Errorf("answered %q for master %q", hp, c.masterName)
			default:
				r[i].Primary = net.JoinHostPort(hp[0], hp[1])
			}
		})
	}
	wg.Wait()
	return r
}

// Close closes the sentinel clients.
func (c *SentinelChecker) Close() error {
	var errs []error
	for _, cl := range c.clients {
		errs = append(errs, cl.Close())
	}
	return errors.Join(errs...)
}
