package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"
)

// Start runs the workers, the retry mover and, when enabled, the poller. It
// returns at once. Cancelling ctx stops everything abruptly, like a crash:
// messages in flight stay pending and are reclaimed by another replica after
// the lease. Use Shutdown for an orderly stop.
func (i *Intake) Start(ctx context.Context) error {
	if !i.started.CompareAndSwap(false, true) {
		return errors.New("intake: already started")
	}
	if err := i.ensureGroup(ctx); err != nil {
		return fmt.Errorf("intake: start: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	i.mu.Lock()
	i.cancel = cancel
	i.done = make(chan struct{})
	i.mu.Unlock()
	for range i.cfg.Workers {
		i.workers.Add(1)
		go i.worker(wctx)
	}
	i.workers.Add(1)
	go i.maintain(wctx)
	if i.schedule != nil {
		c := cron.New(cron.WithLogger(cronLogger{i.log}),
			cron.WithChain(cron.Recover(cronLogger{i.log}), cron.SkipIfStillRunning(cronLogger{i.log})))
		c.Schedule(i.schedule, cron.FuncJob(func() { i.pollTick(wctx) }))
		c.Start()
		i.mu.Lock()
		i.cron = c
		i.mu.Unlock()
	}
	go func() {
		i.workers.Wait()
		<-wctx.Done() // Shutdown cancels once the workers are done
		i.stopCron()
		close(i.done)
	}()
	i.log.Info("intake started", "consumer", i.cfg.Consumer, "workers", i.cfg.Workers,
		"poll", i.schedule != nil, "webhook", i.cfg.Webhook.Enabled)
	return nil
}

func (i *Intake) pollTick(ctx context.Context) {
	if i.stopping.Load() || ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, max(5*i.cfg.Lease, time.Minute))
	defer cancel()
	n, err := i.PollOnce(ctx)
	switch {
	case errors.Is(err, ErrPollBusy):
	case err != nil:
		i.log.Warn("poll failed; next cycle retries", "err", err)
	case n > 0:
		i.log.Info("poll enqueued requests", "enqueued", n)
	}
	if i.cfg.Deliveries == nil || i.stopping.Load() || ctx.Err() != nil {
		return
	}
	n, err = i.PollDeliveries(ctx)
	switch {
	case errors.Is(err, ErrPollBusy):
	case err != nil:
		i.log.Warn("delivery poll failed; next cycle retries", "err", err)
	case n > 0:
		i.log.Debug("delivery poll queued checks", "enqueued", n)
	}
}

func (i *Intake) stopCron() {
	i.mu.Lock()
	c := i.cron
	i.cron = nil
	i.mu.Unlock()
	if c != nil {
		c.Stop()
	}
}

// Shutdown stops intake in order: the webhook answers 503 from now on, the
// poller stops, workers finish the message in hand, acknowledge it and
// exit. If ctx ends first the remaining work is cancelled (it stays pending
// for another replica) and ctx's error is returned.
func (i *Intake) Shutdown(ctx context.Context) error {
	i.stopping.Store(true)
	i.mu.Lock()
	c, cancel, done := i.cron, i.cancel, i.done
	i.mu.Unlock()
	if c != nil {
		select {
		case <-c.Stop().Done(): // waits for a running poll
		case <-ctx.Done():
		}
	}
	if done == nil { // never started
		return nil
	}
	finished := make(chan struct{})
	go func() { i.workers.Wait(); close(finished) }()
	select {
	case <-finished:
		cancel()
		<-done
		i.log.Info("intake stopped", "consumer", i.cfg.Consumer)
		return nil
	case <-ctx.Done():
		cancel()
		<-done
		return fmt.Errorf("intake: shutdown: %w", ctx.Err())
	}
}

// cronLogger adapts slog to cron.Logger.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(kv, "err", err)...)
}
