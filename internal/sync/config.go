package sync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
)

// Inviter is what the workers need from the invitation domain; *invite.Service
// satisfies it.
type Inviter interface {
	// Invite creates and sends the invitation and writes the outcome back to
	// the contact before it returns.
	Invite(ctx context.Context, req invite.InviteRequest) (*invite.InviteResult, error)
	// MarkFailed writes status Failed and the reason on the contact.
	MarkFailed(ctx context.Context, contactID, reason string) error
}

// Dataverse is the part of the Web API client intake reads with;
// *dataverse.Client satisfies it.
type Dataverse interface {
	Retrieve(ctx context.Context, set, id string, q *dataverse.Query) (dataverse.Record, error)
	QueryPage(ctx context.Context, set string, q *dataverse.Query, nextLink string) (*dataverse.Page, error)
	Delta(ctx context.Context, set string, selectCols []string, deltaLink string) (*dataverse.DeltaResult, error)
}

var (
	_ Inviter   = (*invite.Service)(nil)
	_ Dataverse = (*dataverse.Client)(nil)
	_ Registrar = (*dataverse.Client)(nil)
)

// Webhook auth types, as in intake.webhook.auth.type.
const (
	AuthWebhookKey  = "webhook_key"  // ?code=<value>; serviceendpoint authtype 4
	AuthHTTPHeader  = "http_header"  // <name>: <value>; authtype 5
	AuthQueryString = "query_string" // ?<name>=<value>; authtype 6
)

// WebhookConfig configures the webhook endpoint.
type WebhookConfig struct {
	Enabled      bool   // false: the handler answers 404
	Path         string // informational here (cmd mounts the handler); default "/hooks/dataverse"
	AuthType     string // webhook_key (default) | http_header | query_string
	AuthName     string // header or query parameter name (http_header, query_string)
	AuthValue    string // the shared secret; required when Enabled
	MaxBodyBytes int64  // larger bodies get 413; default 1 MiB
}

// PollConfig configures the safety-net poller.
type PollConfig struct {
	Enabled  bool
	Schedule string // robfig/cron spec, e.g. "@every 1m" (default)
}

// Hooks are optional metrics callbacks. They are called synchronously and
// must be cheap.
type Hooks struct {
	// Webhook reports each delivery's outcome: accepted, duplicate, ignored,
	// unauthorized, bad_request, too_large, unavailable.
	Webhook func(outcome string)
	// Enqueue reports every Enqueue call by source (webhook, poll, ...);
	// enqueued is false for a duplicate.
	Enqueue func(source string, enqueued bool)
	// Processed reports each message a worker finished: sent, skipped
	// (contact no longer Requested, or nothing to follow), retry, failed
	// (dead-lettered), delivered and undelivered (an invitation email's
	// outcome recorded), with the time since the request was first enqueued.
	Processed func(outcome string, sinceEnqueued time.Duration)
	// Poll reports each poll cycle this replica ran.
	Poll func(enqueued int, d time.Duration, err error)
}

// Config configures an Intake. Zero values mean the defaults in the comments.
type Config struct {
	Redis     redis.UniversalClient // required
	KeyPrefix string                // prefix of every Redis key; default "pinv:"
	Invites   Inviter               // required (workers)
	Dataverse Dataverse             // required (webhook read-back, poller, workers)
	// Contact names the invite columns on contact and the status values;
	// Status is required.
	Contact invite.ContactColumns
	// DefaultPortal is used when the contact's portal column is empty.
	DefaultPortal string
	Webhook       WebhookConfig
	Poll          PollConfig
	Workers       int           // worker goroutines per instance; default 4
	MaxAttempts   int           // attempts before a request is dead-lettered; default 8
	Lease         time.Duration // how long a message or lock may stay unrefreshed before others take it over; default 2m
	RetryDelay    time.Duration // first retry backoff; default 5s, doubled per attempt with jitter
	MaxRetryDelay time.Duration // backoff cap; default 5m
	DedupeTTL     time.Duration // how long an enqueue dedupe key lives; default 24h
	// Consumer names this replica in the consumer group; default
	// "<hostname>-<pid>-<random>". Each instance needs its own.
	Consumer string
	Logger   *slog.Logger // nil = discard
	Hooks    Hooks
	Now      func() time.Time // default time.Now
	// Deliveries follows invitation emails to their outcome (email
	// webhooks, the delivery poll, the SMTP channel); nil = not followed:
	// email events are ignored and contacts stay Sent.
	Deliveries Deliveries
	// DeliveryRecheck is how often the delivery poll looks again at a
	// contact whose invitation email is still unsent; default 1m.
	DeliveryRecheck time.Duration
	// MinAckedReplicas is how many replicas must hold an enqueue (Redis
	// WAIT) before Enqueue reports it done, so a webhook answered 200 survives
	// a failover; fewer within AckTimeout is an error (the webhook answers
	// 503 and Dataverse sends it again). 0, the default, does not wait.
	MinAckedReplicas int
	// AckTimeout bounds that wait; default 1s. It must stay below the Redis
	// client's read timeout (3s by default).
	AckTimeout time.Duration

	// Pacer holds invitation emails to the senders' budgets; nil = no
	// pacing beyond Dataverse's own (the slower of the two sets the pace).
	Pacer Pacer

	// Tracing makes each invitation one trace: the webhook request, the
	// enqueue (its trace context kept in the stream entry), each worker
	// attempt and the email's follow-up; nil = off.
	Tracing trace.TracerProvider
}

const (
	defaultKeyPrefix    = "pinv:"
	defaultWebhookPath  = "/hooks/dataverse"
	defaultPollSchedule = "@every 1m"
	groupName           = "workers"
)

func (c *Config) setDefaults() {
	if c.KeyPrefix == "" {
		c.KeyPrefix = defaultKeyPrefix
	}
	if c.Webhook.Path == "" {
		c.Webhook.Path = defaultWebhookPath
	}
	if c.Webhook.AuthType == "" {
		c.Webhook.AuthType = AuthWebhookKey
	}
	if c.Webhook.MaxBodyBytes <= 0 {
		c.Webhook.MaxBodyBytes = 1 << 20
	}
	if c.Poll.Schedule == "" {
		c.Poll.Schedule = defaultPollSchedule
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.Lease <= 0 {
		c.Lease = 2 * time.Minute
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = 5 * time.Second
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = 5 * time.Minute
	}
	if c.MaxRetryDelay < c.RetryDelay {
		c.MaxRetryDelay = c.RetryDelay
	}
	if c.DedupeTTL <= 0 {
		c.DedupeTTL = 24 * time.Hour
	}
	if c.Consumer == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "intake"
		}
		c.Consumer = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), randomHex(4))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.DeliveryRecheck <= 0 {
		c.DeliveryRecheck = time.Minute
	}
}

func (c *Config) validate() error {
	var problems []string
	if c.Redis == nil {
		problems = append(problems, "Redis is required")
	}
	if c.Invites == nil {
		problems = append(problems, "Invites is required")
	}
	if c.Dataverse == nil {
		problems = append(problems, "Dataverse is required")
	}
	if c.Contact.Status == "" {
		problems = append(problems, "Contact.Status (the invite status column) is required")
	}
	if c.Webhook.Enabled {
		switch c.Webhook.AuthType {
		case AuthWebhookKey:
		case AuthHTTPHeader, AuthQueryString:
			if c.Webhook.AuthName == "" {
				problems = append(problems, "Webhook.AuthName is required for auth type "+c.Webhook.AuthType)
			}
		default:
			problems = append(problems, fmt.Sprintf("Webhook.AuthType %q is not one of webhook_key, http_header, query_string", c.Webhook.AuthType))
		}
		if c.Webhook.AuthValue == "" {
			problems = append(problems, "Webhook.AuthValue is required when the webhook is enabled")
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Intake is the webhook endpoint, the poller and the worker pool of one
// replica. Several replicas share the queue through Redis.
type Intake struct {
	cfg  Config
	rdb  redis.UniversalClient
	log  *slog.Logger
	keys keys
	cols invite.ContactColumns
	// trace is the tracer; off unless Config.Tracing is on.
	trace tracing

	schedule cron.Schedule
	locker   *redisLocker

	stopping  atomic.Bool // Shutdown called: no new intake, workers finish and exit
	started   atomic.Bool
	nextClaim atomic.Int64 // unix ns of the next XAUTOCLAIM sweep

	mu      stdsync.Mutex
	cron    *cron.Cron
	cancel  context.CancelFunc // cancels the work context (abrupt stop)
	workers stdsync.WaitGroup
	done    chan struct{} // closed when all goroutines of Start have exited
}

type keys struct {
	stream, retry, dead, dedupe, contactLock, pollLock, delta, deliveryPollLock string
}

func newKeys(prefix string) keys {
	p := prefix + "intake:"
	return keys{
		stream:      p + "stream",
		retry:       p + "retry",
		dead:        p + "dead",
		dedupe:      p + "dedupe:",
		contactLock: p + "contact:",
		pollLock:    p + "poll:lock",
		delta:       p + "poll:delta",
		// The delivery poll has its own lock so a long contact poll does
		// not hold it up.
		deliveryPollLock: p + "poll:delivery:lock",
	}
}

// New checks the configuration and builds an Intake. It does no I/O; Start
// runs the workers and the poller.
func New(cfg Config) (*Intake, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sync.New: %w", err)
	}
	i := &Intake{
		cfg:  cfg,
		rdb:  cfg.Redis,
		log:  cfg.Logger,
		keys: newKeys(cfg.KeyPrefix),
		cols: cfg.Contact,
	}
	i.trace = newTracing(cfg.Tracing)
	if cfg.Poll.Enabled {
		s, err := cron.ParseStandard(cfg.Poll.Schedule)
		if err != nil {
			return nil, fmt.Errorf("sync.New: poll schedule %q: %w", cfg.Poll.Schedule, err)
		}
		i.schedule = s
	}
	i.locker = &redisLocker{rdb: cfg.Redis, prefix: i.keys.contactLock, log: cfg.Logger,
		acks: cfg.MinAckedReplicas, ackTimeout: cfg.AckTimeout}
	return i, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
