package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/bulk"
	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/delivery"
)

// pacingGuard lengthens each sender's minute window (delivery.PacerOptions.Guard):
// 2 s costs 3% of the per-minute rate.
const pacingGuard = 2 * time.Second

// newPortalPacer paces every portal whose email leaves from named mailboxes
// (email.senders, or a mailbox email.sender) to email.rate per mailbox,
// counted in Redis so the limits hold across replicas.
func newPortalPacer(cfg *config.Config, rdb redis.UniversalClient) *delivery.PortalPacer {
	senders := map[string][]delivery.Sender{}
	for _, p := range cfg.Portals {
		for _, name := range p.Email.SenderList() {
			senders[p.Name] = append(senders[p.Name], delivery.Sender{
				Name: name, PerMinute: p.Email.Rate.PerMinute, PerDay: p.Email.Rate.PerDay})
		}
	}
	// The worker confirms each send when the email is submitted, which
	// moves its count to that moment; the guard covers what is left, the
	// time from submission to server-side sync handing it to Exchange.
	return delivery.NewPortalPacer(delivery.NewPacer(rdb, &delivery.PacerOptions{KeyPrefix: cfg.Redis.KeyPrefix, Guard: pacingGuard}), senders)
}

// pacedSenders reads the pacing counters of every paced portal's senders as
// bulk.Senders. Requests parked for a budget (queued) wait for all the
// senders of their portal; they are shared out round-robin, as they will be
// sent.
type pacedSenders struct {
	pacer   *delivery.Pacer
	portals *delivery.PortalPacer
	names   []string // portals, in configuration order
	parked  func(context.Context) (int64, error)
}

func newPacedSenders(cfg *config.Config, rdb redis.UniversalClient, pp *delivery.PortalPacer, parked func(context.Context) (int64, error)) pacedSenders {
	s := pacedSenders{pacer: delivery.NewPacer(rdb, &delivery.PacerOptions{KeyPrefix: cfg.Redis.KeyPrefix, Guard: pacingGuard}),
		portals: pp, parked: parked}
	for _, p := range cfg.Portals {
		s.names = append(s.names, p.Name)
	}
	return s
}

// Senders implements bulk.SenderSource.
func (s pacedSenders) Senders(ctx context.Context) ([]bulk.Sender, error) {
	var queued int64
	if s.parked != nil {
		n, err := s.parked(ctx)
		if err != nil {
			return nil, err
		}
		queued = n
	}
	var out []bulk.Sender
	seen := map[string]bool{}
	for _, name := range s.names {
		ds := s.portals.Senders(name)
		if len(ds) == 0 {
			continue
		}
		_, states, err := s.pacer.Schedule(ctx, ds)
		if err != nil {
			return nil, fmt.Errorf("schedule of %s: %w", name, err)
		}
		for _, st := range states {
			if seen[st.Sender] {
				continue
			}
			seen[st.Sender] = true
			out = append(out, bulk.Sender{Name: st.Sender, PerMinute: st.PerMinute, PerDay: st.PerDay,
				SentToday: st.LastDay, WindowStart: st.WindowStart})
		}
	}
	for k := range out {
		q := queued / int64(len(out))
		if int64(k) < queued%int64(len(out)) {
			q++
		}
		out[k].Queued = int(q)
	}
	return out, nil
}

// schedule is the senders' schedule now.
func (s pacedSenders) schedule(ctx context.Context) (bulk.Schedule, error) {
	senders, err := s.Senders(ctx)
	if err != nil {
		return bulk.Schedule{}, err
	}
	return bulk.NewSchedule(time.Now(), senders), nil
}
