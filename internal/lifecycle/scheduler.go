package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
)

// Invitation is an open invitation as the scheduler needs it.
type Invitation struct {
	ID        string
	Portal    string
	ContactID string
	ExpiresAt time.Time // zero: never expires (such invitations are ignored)
}

// Invitations finds the invitations to act on.
type Invitations interface {
	// Due returns portal's open, unredeemed invitations that expire at or
	// before before (adx_expirydate le before), including those already
	// past their expiry and not yet expired by an Expirer.
	Due(ctx context.Context, portal string, before time.Time) ([]Invitation, error)
}

// Reminder sends reminder index (the position in Portal.Reminders) for an
// invitation: an email regarding it with a link that works. It should
// check that the invitation is still open (it may have been redeemed since
// Due listed it) and return ErrNothingToDo without sending when it is not.
type Reminder interface {
	Send(ctx context.Context, inv Invitation, index int) error
}

// ErrNothingToDo is what Send or Expire return when they find nothing to
// do: the invitation was redeemed or revoked since Due listed it, or the
// reminder had gone out before (a retry after a crash). The action is
// recorded done, counted in Report.Skipped, and not counted as sent or
// expired in Metrics.
var ErrNothingToDo = errors.New("lifecycle: nothing to do")

// Expirer ends an invitation that expired unredeemed (the contact turns
// Expired). It should be idempotent.
type Expirer interface {
	Expire(ctx context.Context, inv Invitation) error
}

// Metrics receives the outcome of each action. Failures are counted per
// attempt: a failing action is retried once per lease.
type Metrics interface {
	ReminderSent(portal string, index int)
	ReminderFailed(portal string, index int)
	InvitationExpired(portal string)
	ExpiryFailed(portal string)
}

// Config configures a Scheduler. Invitations, Reminder, Expirer and Redis
// are required.
type Config struct {
	Portals     []Portal
	Invitations Invitations
	Reminder    Reminder
	Expirer     Expirer
	Redis       redis.Scripter
	Metrics     Metrics      // default: none
	Logger      *slog.Logger // default: discard
	// Schedule is the cron spec of the ticks (five fields, or a descriptor
	// such as "@every 5m"). Default "@every 5m".
	Schedule string
	// Lease is how long a claim keeps other replicas off an action; a
	// replica that dies mid-action is replaced after it. Default 10m.
	Lease time.Duration
	// Keep is how long a completion record outlives the invitation's
	// expiry. Default 30 days.
	Keep time.Duration
	// KeyPrefix is put in front of every Redis key. Default "pinv:".
	KeyPrefix string
	// Clock tells the time. Default time.Now.
	Clock func() time.Time
}

// Defaults of Config.
const (
	DefaultSchedule = "@every 5m"
	DefaultLease    = 10 * time.Minute
	DefaultKeep     = 30 * 24 * time.Hour
)

// Scheduler sends reminders and expires invitations on a schedule; see the
// package documentation.
type Scheduler struct {
	portals     []Portal
	invitations Invitations
	reminder    Reminder
	expirer     Expirer
	metrics     Metrics
	log         *slog.Logger
	schedule    cron.Schedule
	claims      *claims
	lease, keep time.Duration
	clock       func() time.Time

	mu     sync.Mutex
	cron   *cron.Cron
	cancel context.CancelFunc
}

// New checks cfg and returns a Scheduler; Start runs it.
func New(cfg Config) (*Scheduler, error) {
	var errs []error
	if cfg.Invitations == nil || cfg.Reminder == nil || cfg.Expirer == nil || cfg.Redis == nil {
		errs = append(errs, errors.New("Invitations, Reminder, Expirer and Redis are required"))
	}
	names := map[string]bool{}
	for i, p := range cfg.Portals {
		if p.Name == "" || names[p.Name] {
			errs = append(errs, fmt.Errorf("portals[%d]: name %q is empty or repeated", i, p.Name))
		}
		names[p.Name] = true
		for _, pr := range CheckPortal(p) {
			errs = append(errs, fmt.Errorf("portal %s: invitation.%w", p.Name, pr))
		}
	}
	if cfg.Schedule == "" {
		cfg.Schedule = DefaultSchedule
	}
	sched, err := cron.ParseStandard(cfg.Schedule)
	if err != nil {
		errs = append(errs, fmt.Errorf("schedule %q: %w", cfg.Schedule, err))
	}
	if cfg.Lease < 0 || cfg.Keep < 0 {
		errs = append(errs, fmt.Errorf("lease %s and keep %s must not be negative", cfg.Lease, cfg.Keep))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("lifecycle: %w", errors.Join(errs...))
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Keep == 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "pinv:"
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Scheduler{
		portals: cfg.Portals, invitations: cfg.Invitations, reminder: cfg.Reminder, expirer: cfg.Expirer,
		metrics: cfg.Metrics, log: cfg.Logger, schedule: sched,
		claims: &claims{rdb: cfg.Redis, prefix: cfg.KeyPrefix + "lifecycle:", lease: cfg.Lease},
		lease:  cfg.Lease, keep: cfg.Keep, clock: cfg.Clock,
	}, nil
}

// Report counts what one Tick did.
type Report struct {
	RemindersSent   int
	RemindersFailed int
	Expired         int
	ExpiryFailed    int
	Held            int // claimed by another replica whose lease has not lapsed
	Done            int // completed before, by any replica
	Skipped         int // Send or Expire returned ErrNothingToDo
}

func (r *Report) add(o Report) {
	r.RemindersSent += o.RemindersSent
	r.RemindersFailed += o.RemindersFailed
	r.Expired += o.Expired
	r.ExpiryFailed += o.ExpiryFailed
	r.Held += o.Held
	r.Done += o.Done
	r.Skipped += o.Skipped
}

// Tick makes one pass over every portal. A failing Send or Expire is
// counted and logged and the pass goes on; the error reports what stopped
// a portal's pass early: the invitation store, Redis, or ctx.
func (s *Scheduler) Tick(ctx context.Context) (Report, error) {
	now := s.clock()
	var rep Report
	var errs []error
	for _, p := range s.portals {
		r, err := s.tickPortal(ctx, p, now)
		rep.add(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("lifecycle tick %s: %w", p.Name, err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	return rep, errors.Join(errs...)
}

func (s *Scheduler) tickPortal(ctx context.Context, p Portal, now time.Time) (Report, error) {
	var rep Report
	invs, err := s.invitations.Due(ctx, p.Name, now.Add(p.horizon()))
	if err != nil {
		return rep, fmt.Errorf("due invitations: %w", err)
	}
	for _, inv := range invs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if inv.ExpiresAt.IsZero() {
			continue
		}
		if inv.Portal == "" {
			inv.Portal = p.Name
		}
		left := inv.ExpiresAt.Sub(now)
		if left <= 0 {
			err = s.run(ctx, &rep, p, inv, -1, now)
		} else if i, ok := p.dueReminder(left); ok {
			err = s.run(ctx, &rep, p, inv, i, now)
		}
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// run claims and performs one action: reminder index, or the expiry when
// index is -1. It returns an error only when Redis fails or ctx ends.
func (s *Scheduler) run(ctx context.Context, rep *Report, p Portal, inv Invitation, index int, now time.Time) error {
	a := action{invitation: inv.ID, expires: inv.ExpiresAt, index: index}
	token, res, err := s.claims.claim(ctx, a, now)
	if err != nil {
		return err
	}
	switch res {
	case claimHeld:
		rep.Held++
		return nil
	case claimDone:
		rep.Done++
		return nil
	}
	log := s.log.With("portal", p.Name, "invitation", inv.ID, "expires", inv.ExpiresAt)
	// Half the lease: a stuck call gives up well before another replica
	// may claim the action.
	actx, cancel := context.WithTimeout(ctx, s.lease/2)
	if index >= 0 {
		log = log.With("reminder", index)
		err = s.reminder.Send(actx, inv, index)
	} else {
		err = s.expirer.Expire(actx, inv)
	}
	cancel()
	skipped := errors.Is(err, ErrNothingToDo)
	if skipped {
		err = nil
	}
	if err != nil {
		if ctx.Err() != nil {
			// Stopped mid-action: whether it happened is unknown, so the
			// claim stays and lapses; another tick settles it.
			return ctx.Err()
		}
		if index >= 0 {
			rep.RemindersFailed++
			s.metrics.ReminderFailed(p.Name, index)
		} else {
			rep.ExpiryFailed++
			s.metrics.ExpiryFailed(p.Name)
		}
		log.Warn("lifecycle action failed; retried after the lease", "lease", s.lease, "err", err)
		return nil
	}
	switch {
	case skipped:
		rep.Skipped++
		log.Debug("lifecycle action had nothing to do")
	case index >= 0:
		rep.RemindersSent++
		s.metrics.ReminderSent(p.Name, index)
		log.Info("reminder sent")
	default:
		rep.Expired++
		s.metrics.InvitationExpired(p.Name)
		log.Info("invitation expired")
	}
	// Record completion even when ctx has just ended: the action happened.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	keep := s.keep
	if index >= 0 {
		keep += max(0, inv.ExpiresAt.Sub(now))
	}
	held, err := s.claims.complete(cctx, a, token, s.clock(), keep)
	if err != nil {
		log.Error("lifecycle action done but not recorded; it may be repeated after the lease", "err", err)
		return err
	}
	if !held {
		log.Warn("lifecycle claim lapsed before the action finished; another replica may have repeated it", "lease", s.lease)
	}
	return nil
}

// Start runs Tick on the schedule until Stop. ctx bounds every tick.
func (s *Scheduler) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cron != nil {
		return
	}
	tctx, cancel := context.WithCancel(ctx)
	logger := cronLogger{s.log}
	s.cron = cron.New(cron.WithLocation(time.UTC), cron.WithLogger(logger),
		cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(logger)))
	s.cancel = cancel
	s.cron.Schedule(s.schedule, cron.FuncJob(func() {
		rep, err := s.Tick(tctx)
		if err != nil && tctx.Err() == nil {
			s.log.Error("lifecycle tick", "err", err)
		}
		s.log.Debug("lifecycle tick", "reminders_sent", rep.RemindersSent, "reminders_failed", rep.RemindersFailed,
			"expired", rep.Expired, "expiry_failed", rep.ExpiryFailed, "held", rep.Held)
	}))
	s.cron.Start()
}

// Stop ends the schedule and waits for a running tick until ctx ends; then
// it cancels the tick (its open claims lapse after the lease) and returns
// ctx's error.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	c, cancel := s.cron, s.cancel
	s.cron, s.cancel = nil, nil
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	defer cancel()
	stopped := c.Stop() // done when no tick runs
	select {
	case <-stopped.Done():
		return nil
	case <-ctx.Done():
		cancel()
		<-stopped.Done()
		return fmt.Errorf("lifecycle stop: %w", ctx.Err())
	}
}

type noMetrics struct{}

func (noMetrics) ReminderSent(string, int)   {}
func (noMetrics) ReminderFailed(string, int) {}
func (noMetrics) InvitationExpired(string)   {}
func (noMetrics) ExpiryFailed(string)        {}

// cronLogger adapts slog to cron.Logger.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(kv, "err", err)...)
}
