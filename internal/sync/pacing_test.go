package sync

import (
	"context"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/delivery"
)

// fakeClock is a settable clock shared by the pacer and the intake.
type fakeClock struct {
	mu stdsync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Two senders of 2 a minute: 10 requests (each twice) go out 4 per minute, the rest
// wait parked and are sent in their order once the window moves on, each
// with the sender the pacer reserved, and no sender ever above its cap.
func TestWorkerParksForSenderBudget(t *testing.T) {
	r := newRig(t)
	clock := &fakeClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	senders := []delivery.Sender{
		{Name: "queue:9b0e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f", PerMinute: 2, PerDay: 100},
		{Name: "systemuser:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", PerMinute: 2, PerDay: 100},
	}
	pacer := delivery.NewPortalPacer(delivery.NewPacer(r.rdb, &delivery.PacerOptions{KeyPrefix: "t:", Clock: clock.Now}),
		map[string][]delivery.Sender{"Contoso Partner Portal": senders})
	i := r.intake(t, func(c *Config) {
		c.Workers = 1
		c.Pacer = pacer
		c.Now = clock.Now
	})
	ctx := context.Background()
	const n = 10
	for k := range n {
		r.dv.set(contactID(k), testCols.Requested, "", "")
		// Each click arrives twice (webhook and poll): the duplicate must
		// not spend a sender's budget.
		for range 2 {
			if _, err := i.Enqueue(ctx, Request{ContactID: contactID(k), Source: "test"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	start(t, i)
	calls := func() int { r.inv.mu.Lock(); defer r.inv.mu.Unlock(); return len(r.inv.calls) }
	parked := func() int64 { return r.rdb.ZCard(ctx, i.parkedKey()).Val() }
	for minute, want := range []int{4, 8, 10} {
		waitFor(t, "sends in minute", 5*time.Second, func() bool { return calls() == want && parked() == int64(2*(n-want)) })
		// The schedule counts contacts waiting, not their duplicate messages.
		if p, err := i.Parked(ctx); err != nil || p != int64(n-want) {
			t.Fatalf("minute %d: Parked = %d (%v), want %d contacts (each queued twice)", minute, p, err, n-want)
		}
		// Nothing more goes out until the clock moves.
		time.Sleep(50 * time.Millisecond)
		if got := calls(); got != want {
			t.Fatalf("minute %d: %d sends, want %d", minute, got, want)
		}
		clock.Add(time.Minute)
	}
	r.inv.mu.Lock()
	defer r.inv.mu.Unlock()
	perSender := map[string]int{}
	for k, c := range r.inv.calls {
		if c.ContactID != contactID(k) {
			t.Errorf("send %d is contact %s, want %s (parked requests keep their order)", k, c.ContactID, contactID(k))
		}
		if c.Sender == "" {
			t.Errorf("send %d has no reserved sender", k)
		}
		perSender[strings.ToLower(c.Sender)]++
	}
	if perSender[senders[0].Name] != 5 || perSender[senders[1].Name] != 5 {
		t.Errorf("sends per sender %v, want 5 each (round-robin)", perSender)
	}
	if s, _ := i.Stats(ctx); s.DeadLetters != 0 || s.Depth != 0 {
		t.Errorf("queue after the run: %+v", s)
	}
}

// recordingPacer notes the senders whose emails the worker reports sent.
type recordingPacer struct {
	*delivery.PortalPacer
	mu   stdsync.Mutex
	sent []string
}

func (p *recordingPacer) Sent(ctx context.Context, sender string) error {
	p.mu.Lock()
	p.sent = append(p.sent, sender)
	p.mu.Unlock()
	return p.PortalPacer.Sent(ctx, sender)
}

var _ SentRecorder = (*delivery.PortalPacer)(nil)

// After each invitation email the worker tells the pacer which sender sent
// it, so the send counts from its submission; a duplicate message, which
// sends nothing, reports nothing.
func TestWorkerRecordsSendsWithPacer(t *testing.T) {
	r := newRig(t)
	senders := []delivery.Sender{
		{Name: "queue:9b0e2d3c-1a2b-4c5d-8e9f-0a1b2c3d4e5f", PerMinute: 100, PerDay: 1000},
		{Name: "systemuser:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", PerMinute: 100, PerDay: 1000},
	}
	pacer := &recordingPacer{PortalPacer: delivery.NewPortalPacer(delivery.NewPacer(r.rdb, &delivery.PacerOptions{KeyPrefix: "t:"}),
		map[string][]delivery.Sender{"Contoso Partner Portal": senders})}
	i := r.intake(t, func(c *Config) {
		c.Workers = 1
		c.Pacer = pacer
	})
	ctx := context.Background()
	const n = 4
	for k := range n {
		r.dv.set(contactID(k), testCols.Requested, "", "")
		for range 2 {
			if _, err := i.Enqueue(ctx, Request{ContactID: contactID(k), Source: "test"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	start(t, i)
	waitFor(t, "invitations", 5*time.Second, func() bool { return len(r.inv.invites()) == n })
	// Let the duplicates be settled too: they must not report a send.
	time.Sleep(200 * time.Millisecond)
	pacer.mu.Lock()
	defer pacer.mu.Unlock()
	calls := r.inv.invites()
	if len(pacer.sent) != n {
		t.Fatalf("%d sends recorded, want %d: %v", len(pacer.sent), n, pacer.sent)
	}
	for k, c := range calls {
		if pacer.sent[k] != c.Sender {
			t.Errorf("send %d recorded for %q, the invitation went from %q", k, pacer.sent[k], c.Sender)
		}
	}
	_, st, err := delivery.NewPacer(r.rdb, &delivery.PacerOptions{KeyPrefix: "t:"}).Schedule(ctx, senders)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].LastMinute+st[1].LastMinute != n {
		t.Errorf("sends in the minute %d + %d, want %d (confirming moves, it does not add)", st[0].LastMinute, st[1].LastMinute, n)
	}
}
