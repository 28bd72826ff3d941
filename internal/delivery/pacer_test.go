package delivery_test

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/delivery"
	"github.com/d365portal/connector/internal/redistest"
)

const (
	userA  = "systemuser:11111111-1111-1111-1111-111111111111"
	userB  = "systemuser:22222222-2222-2222-2222-222222222222"
	queueC = "queue:33333333-3333-3333-3333-333333333333"
)

var t0 = time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)

// fakeClock is shared by every replica of a test, as one wall clock is.
type fakeClock struct{ ns atomic.Int64 }

func newClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.set(t)
	return c
}

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

// replicas returns n pacers, each on its own Redis connection pool, as n
// connector processes would be.
func replicas(t testing.TB, srv *redistest.Server, clock *fakeClock, n int) []*delivery.Pacer {
	ps := make([]*delivery.Pacer, n)
	for i := range ps {
		var opts delivery.PacerOptions
		if clock != nil {
			opts.Clock = clock.now
		}
		ps[i] = delivery.NewPacer(srv.Client(t), &opts)
	}
	return ps
}

func reserve(t *testing.T, p *delivery.Pacer, senders []delivery.Sender, n int) delivery.Reservation {
	t.Helper()
	r, err := p.Reserve(context.Background(), senders, n)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	return r
}

func TestPacerRoundRobinAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	ps := replicas(t, srv, newClock(t0), 3)
	senders := []delivery.Sender{{Name: userA}, {Name: userB}, {Name: queueC}}
	var got []string
	for i := range 9 {
		r := reserve(t, ps[i%3], senders, 1)
		if !r.OK() || !r.At.Equal(t0) {
			t.Fatalf("reservation %d = %+v; want a sender at %v", i, r, t0)
		}
		got = append(got, r.Sender)
	}
	want := []string{userA, userB, queueC, userA, userB, queueC, userA, userB, queueC}
	if !slices.Equal(got, want) {
		t.Fatalf("senders in order = %v\nwant %v", got, want)
	}
}

func TestPacerSkipsSpentSenderThenParks(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	p := replicas(t, srv, clock, 1)[0]
	senders := []delivery.Sender{{Name: userA, PerMinute: 1}, {Name: userB, PerMinute: 3}}
	var got []string
	for range 4 {
		got = append(got, reserve(t, p, senders, 1).Sender)
	}
	if want := []string{userA, userB, userB, userB}; !slices.Equal(got, want) {
		t.Fatalf("senders = %v; want %v", got, want)
	}
	r := reserve(t, p, senders, 1)
	if r.OK() || !r.NotBefore.Equal(t0.Add(time.Minute)) {
		t.Fatalf("fifth = %+v; want parked until %v", r, t0.Add(time.Minute))
	}
	// One millisecond early is still the old minute.
	clock.set(t0.Add(time.Minute - time.Millisecond))
	if r := reserve(t, p, senders, 1); r.OK() {
		t.Fatalf("at 59.999s = %+v; want parked", r)
	}
	clock.set(t0.Add(time.Minute))
	if r := reserve(t, p, senders, 1); !r.OK() {
		t.Fatalf("at 1m = %+v; want a sender", r)
	}
}

func TestPacerNotBeforeMinuteThenDay(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	p := replicas(t, srv, clock, 1)[0]
	senders := []delivery.Sender{{Name: userA, PerMinute: 2, PerDay: 3}}
	steps := []struct {
		at        time.Duration // since t0
		grants    int
		notBefore time.Duration // since t0
	}{
		{0, 2, time.Minute},                             // minute cap
		{time.Minute, 1, 24 * time.Hour},                // day cap: the first send leaves at t0+24h
		{24 * time.Hour, 2, 24*time.Hour + time.Minute}, // both t0 sends left the day
		{24*time.Hour + time.Minute, 1, 48 * time.Hour},
	}
	for _, st := range steps {
		clock.set(t0.Add(st.at))
		for i := range st.grants {
			if r := reserve(t, p, senders, 1); !r.OK() {
				t.Fatalf("at +%v grant %d: %+v; want a sender", st.at, i, r)
			}
		}
		r := reserve(t, p, senders, 1)
		if r.OK() || !r.NotBefore.Equal(t0.Add(st.notBefore)) {
			t.Fatalf("at +%v after %d grants: %+v; want parked until +%v", st.at, st.grants, r, st.notBefore)
		}
	}
}

func TestPacerReservesSeveralAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	p := replicas(t, srv, clock, 1)[0]
	senders := []delivery.Sender{{Name: userA, PerMinute: 3, PerDay: 100}}
	if r := reserve(t, p, senders, 2); !r.OK() {
		t.Fatalf("2 of 3: %+v; want a sender", r)
	}
	clock.add(10 * time.Second)
	// One slot is left this minute: two more must wait until the first two
	// have left the rolling minute.
	r := reserve(t, p, senders, 2)
	if r.OK() || !r.NotBefore.Equal(t0.Add(time.Minute)) {
		t.Fatalf("2 more: %+v; want parked until %v", r, t0.Add(time.Minute))
	}
	if r := reserve(t, p, senders, 1); !r.OK() {
		t.Fatalf("the last one: %+v; want a sender", r)
	}
	_, st, err := p.Schedule(context.Background(), senders)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].LastMinute != 3 || st[0].LastDay != 3 {
		t.Fatalf("schedule = %+v; want 3 in the minute and the day", st[0])
	}
}

func TestPacerCaseOfGUIDSharesBudget(t *testing.T) {
	srv := redistest.Start(t)
	p := replicas(t, srv, newClock(t0), 1)[0]
	upper := "systemuser:AAAAAAAA-1111-1111-1111-111111111111"
	lower := "systemuser:aaaaaaaa-1111-1111-1111-111111111111"
	if r := reserve(t, p, []delivery.Sender{{Name: upper, PerMinute: 1}}, 1); !r.OK() {
		t.Fatalf("upper: %+v", r)
	}
	if r := reserve(t, p, []delivery.Sender{{Name: lower, PerMinute: 1}}, 1); r.OK() {
		t.Fatalf("lower after upper: %+v; want parked (same mailbox)", r)
	}
}

// TestPacerExactUnderConcurrency runs 30 goroutines over 3 replicas against
// two senders (5 a minute, 12 a day). At each instant every goroutine
// reserves until it is parked; the clock then moves to the earliest
// not-before any of them was given. Each instant must grant exactly what
// the rolling windows leave, and no rolling minute or day of the recorded
// grants may exceed the caps.
func TestPacerExactUnderConcurrency(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	ps := replicas(t, srv, clock, 3)
	const perMinute, perDay, workers = 5, 12, 30
	senders := []delivery.Sender{{Name: userA, PerMinute: perMinute, PerDay: perDay}, {Name: userB, PerMinute: perMinute, PerDay: perDay}}
	type grant struct {
		sender string
		at     time.Time
	}
	var all []grant
	phases := []struct {
		at        time.Duration
		each      int // grants per sender
		notBefore time.Duration
	}{
		{0, 5, time.Minute},
		{time.Minute, 5, 2 * time.Minute},
		{2 * time.Minute, 2, 24 * time.Hour},
		{24 * time.Hour, 5, 24*time.Hour + time.Minute},
		{24*time.Hour + time.Minute, 5, 24*time.Hour + 2*time.Minute},
		{24*time.Hour + 2*time.Minute, 2, 48 * time.Hour},
	}
	for _, ph := range phases {
		if now := clock.now(); !now.Equal(t0.Add(ph.at)) {
			t.Fatalf("clock at %v; want +%v", now, ph.at)
		}
		var mu stdsync.Mutex
		var grants []grant
		var parked []time.Time
		var wg stdsync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				p := ps[w%len(ps)]
				for {
					r, err := p.Reserve(context.Background(), senders, 1)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					if r.OK() {
						grants = append(grants, grant{r.Sender, r.At})
					} else {
						parked = append(parked, r.NotBefore)
					}
					mu.Unlock()
					if !r.OK() {
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("at +%v: %v", ph.at, err)
		}
		per := map[string]int{}
		for _, g := range grants {
			per[g.sender]++
		}
		if per[userA] != ph.each || per[userB] != ph.each || len(per) != 2 {
			t.Fatalf("at +%v granted %v; want %d each", ph.at, per, ph.each)
		}
		if len(parked) != workers {
			t.Fatalf("at +%v %d workers parked; want %d", ph.at, len(parked), workers)
		}
		earliest := slices.MinFunc(parked, func(a, b time.Time) int { return a.Compare(b) })
		if !earliest.Equal(t0.Add(ph.notBefore)) {
			t.Fatalf("at +%v earliest not-before %v; want +%v", ph.at, earliest, ph.notBefore)
		}
		all = append(all, grants...)
		clock.set(earliest)
	}
	// An independent check of the recorded grants against both windows.
	bySender := map[string][]time.Time{}
	for _, g := range all {
		bySender[g.sender] = append(bySender[g.sender], g.at)
	}
	for s, ts := range bySender {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for i, start := range ts {
			inMinute, inDay := 0, 0
			for _, u := range ts[i:] {
				if u.Sub(start) < time.Minute {
					inMinute++
				}
				if u.Sub(start) < 24*time.Hour {
					inDay++
				}
			}
			if inMinute > perMinute || inDay > perDay {
				t.Fatalf("%s: from %v: %d in a minute, %d in a day; caps %d, %d", s, start, inMinute, inDay, perMinute, perDay)
			}
		}
	}
}

func TestPacerSchedule(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	p := replicas(t, srv, clock, 1)[0]
	a := []delivery.Sender{{Name: userA, PerMinute: 2, PerDay: 4}}
	reserve(t, p, a, 1)
	clock.add(30 * time.Second)
	reserve(t, p, a, 1)
	clock.add(40 * time.Second) // t0+70s: the first send left the minute
	reserve(t, p, a, 1)
	senders := []delivery.Sender{a[0], {Name: queueC}}
	at, st, err := p.Schedule(context.Background(), senders)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(70 * time.Second)
	want := []delivery.SenderState{
		{Sender: userA, PerMinute: 2, PerDay: 4, LastMinute: 2, LastDay: 3, WindowStart: t0,
			NextFree: t0.Add(30*time.Second + time.Minute)}, // the t0+30s send leaves the minute
		{Sender: queueC, PerMinute: delivery.DefaultPerMinute, PerDay: delivery.DefaultPerDay, NextFree: now},
	}
	if !at.Equal(now) {
		t.Fatalf("at = %v; want %v", at, now)
	}
	for i := range want {
		if !equalState(st[i], want[i]) {
			t.Fatalf("state %d = %+v\nwant %+v", i, st[i], want[i])
		}
	}
	// One more fills the day (4): the next is free when t0's send leaves it.
	clock.set(t0.Add(2 * time.Minute))
	reserve(t, p, a, 1)
	_, st, err = p.Schedule(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].LastDay != 4 || !st[0].NextFree.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("full day: %+v; want 4 sent, next free %v", st[0], t0.Add(24*time.Hour))
	}
	// The day after, the log is empty again.
	clock.set(t0.Add(48 * time.Hour))
	_, st, err = p.Schedule(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].LastDay != 0 || st[0].LastMinute != 0 || !st[0].WindowStart.IsZero() || !st[0].NextFree.Equal(clock.now()) {
		t.Fatalf("two days on: %+v; want nothing sent, free now", st[0])
	}
}

func equalState(a, b delivery.SenderState) bool {
	return a.Sender == b.Sender && a.PerMinute == b.PerMinute && a.PerDay == b.PerDay &&
		a.LastMinute == b.LastMinute && a.LastDay == b.LastDay &&
		a.WindowStart.Equal(b.WindowStart) && a.NextFree.Equal(b.NextFree)
}

// TestPacerServerClock uses no injected clock: the script reads Redis's
// TIME, and the not-before is exactly one minute after the grant.
func TestPacerServerClock(t *testing.T) {
	srv := redistest.Start(t)
	p := replicas(t, srv, nil, 1)[0]
	senders := []delivery.Sender{{Name: userA, PerMinute: 1}}
	first := reserve(t, p, senders, 1)
	if !first.OK() || first.At.IsZero() {
		t.Fatalf("first = %+v; want a sender and a time", first)
	}
	second := reserve(t, p, senders, 1)
	if second.OK() || !second.NotBefore.Equal(first.At.Add(time.Minute)) {
		t.Fatalf("second = %+v; want parked until %v", second, first.At.Add(time.Minute))
	}
	at, st, err := p.Schedule(context.Background(), senders)
	if err != nil {
		t.Fatal(err)
	}
	if at.Before(second.At) || st[0].LastMinute != 1 || !st[0].WindowStart.Equal(first.At) {
		t.Fatalf("schedule at %v = %+v; want 1 sent at %v", at, st[0], first.At)
	}
}

func TestPacerKeysExpire(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	p := delivery.NewPacer(c, &delivery.PacerOptions{KeyPrefix: "x:", Clock: newClock(t0).now})
	reserve(t, p, []delivery.Sender{{Name: userA}}, 1)
	keys, err := c.Keys(context.Background(), "x:pace:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var withTTL int
	for _, k := range keys {
		ttl, err := c.PTTL(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl > 0 {
			withTTL++
		} else if k != "x:pace:{pace}:seq" {
			t.Errorf("key %s has no TTL (%v)", k, ttl)
		}
	}
	if withTTL != 2 {
		t.Fatalf("keys %v: %d with a TTL; want the sender log and the cursor", keys, withTTL)
	}
}

func TestPacerRejects(t *testing.T) {
	srv := redistest.Start(t)
	p := replicas(t, srv, newClock(t0), 1)[0]
	ctx := context.Background()
	cases := []struct {
		name    string
		senders []delivery.Sender
		n       int
		want    string
	}{
		{"no senders", nil, 1, "no senders"},
		{"zero messages", []delivery.Sender{{Name: userA}}, 0, "want at least 1"},
		{"not a guid", []delivery.Sender{{Name: "systemuser:alice"}}, 1, `"systemuser:alice"`},
		{"unknown kind", []delivery.Sender{{Name: "team:11111111-1111-1111-1111-111111111111"}}, 1, "want systemuser:<guid> or queue:<guid>"},
		{"twice", []delivery.Sender{{Name: userA}, {Name: userA}}, 1, "listed twice"},
		{"negative", []delivery.Sender{{Name: userA, PerDay: -1}}, 1, "negative limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Reserve(ctx, tc.senders, tc.n)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want one containing %q", err, tc.want)
			}
		})
	}
	_, err := p.Reserve(ctx, []delivery.Sender{{Name: userA, PerMinute: 2}, {Name: userB, PerDay: 1}}, 3)
	if !errors.Is(err, delivery.ErrOverLimit) {
		t.Fatalf("3 over caps 2/min and 1/day: %v; want ErrOverLimit", err)
	}
	// A sender too small for n is passed over for one that fits.
	r := reserve(t, p, []delivery.Sender{{Name: userA, PerMinute: 1}, {Name: userB}}, 2)
	if r.Sender != userB {
		t.Fatalf("2 messages: %+v; want %s", r, userB)
	}
}

func TestValidSender(t *testing.T) {
	for name, want := range map[string]bool{
		userA:  true,
		queueC: true,
		"queue:ABCDEF01-2345-6789-abcd-ef0123456789": true,
		"systemuser:": false,
		"systemuser:{11111111-1111-1111-1111-111111111111}": false,
		"systemuser:11111111111111111111111111111111":       false,
		"systemuser:11111111-1111-1111-1111-11111111111g":   false,
		"team:11111111-1111-1111-1111-111111111111":         false,
		"initiating_user": false,
		"":                false,
	} {
		if got := delivery.ValidSender(name); got != want {
			t.Errorf("ValidSender(%q) = %v; want %v", name, got, want)
		}
	}
}

// BenchmarkPacerReserve compares one Reserve (two senders at the default
// limits, the clock a second later each call, so nearly every call is
// granted and the log grows as in a rollout) with a bare INCR on the same
// server, in the same run. It reports ns/incr, ns/reserve and their ratio.
func BenchmarkPacerReserve(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client(b)
	clock := newClock(t0)
	p := delivery.NewPacer(c, &delivery.PacerOptions{Clock: clock.now})
	senders := []delivery.Sender{{Name: userA}, {Name: userB}}
	ctx := context.Background()
	if err := c.Incr(ctx, "warm").Err(); err != nil {
		b.Fatal(err)
	}
	if _, err := p.Reserve(ctx, senders, 1); err != nil { // loads the script
		b.Fatal(err)
	}
	var incr, res time.Duration
	var granted int
	b.ResetTimer()
	// Alternate the two so a busy machine slows both alike.
	for range b.N {
		start := time.Now()
		if err := c.Incr(ctx, "bench:incr").Err(); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		clock.add(time.Second)
		r, err := p.Reserve(ctx, senders, 1)
		if err != nil {
			b.Fatal(err)
		}
		res += time.Since(mid)
		incr += mid.Sub(start)
		if r.OK() {
			granted++
		}
	}
	b.StopTimer()
	perIncr := float64(incr.Nanoseconds()) / float64(b.N)
	perReserve := float64(res.Nanoseconds()) / float64(b.N)
	b.ReportMetric(perIncr, "ns/incr")
	b.ReportMetric(perReserve, "ns/reserve")
	b.ReportMetric(perReserve/perIncr, "reserve/incr")
	b.ReportMetric(100*float64(granted)/float64(b.N), "%granted")
}

// A confirmed send counts from its submission, not its reservation: a
// message submitted 5 s after it was reserved keeps its sender's minute
// full until 5 s later, so slow Dataverse requests between the two never
// let a minute of submissions exceed the cap. Confirming with nothing
// reserved changes nothing.
func TestPacerConfirmCountsFromSubmission(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	p := replicas(t, srv, clock, 1)[0]
	ctx := context.Background()
	senders := []delivery.Sender{{Name: userA, PerMinute: 2, PerDay: 100}}
	if err := p.Confirm(ctx, userA); err != nil {
		t.Fatalf("Confirm with nothing reserved: %v", err)
	}
	for range 2 {
		if r := reserve(t, p, senders, 1); !r.OK() {
			t.Fatalf("reservation at t0: %+v", r)
		}
	}
	clock.add(5 * time.Second)
	if err := p.Confirm(ctx, userA); err != nil {
		t.Fatal(err)
	}
	// The unconfirmed reservation of t0 has left the minute; the
	// confirmed one counts until t0+65s.
	clock.set(t0.Add(61 * time.Second))
	if r := reserve(t, p, senders, 1); !r.OK() {
		t.Fatalf("one place free at t0+61s: %+v", r)
	}
	r := reserve(t, p, senders, 1)
	if r.OK() || !r.NotBefore.Equal(t0.Add(65*time.Second)) {
		t.Fatalf("second at t0+61s: %+v, want none until t0+65s (the confirmed send)", r)
	}
	// Each confirm moves one reservation only, the oldest unconfirmed.
	clock.set(t0.Add(62 * time.Second))
	if err := p.Confirm(ctx, userA); err != nil {
		t.Fatal(err)
	}
	_, st, err := p.Schedule(ctx, senders)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].LastMinute != 2 || !st[0].NextFree.Equal(t0.Add(65*time.Second)) {
		t.Errorf("after confirming at t0+62s: %+v, want 2 in the minute, free at t0+65s", st[0])
	}
	if err := p.Confirm(ctx, "mailbox"); err == nil {
		t.Error("Confirm accepted a sender that is not systemuser:/queue:<guid>")
	}
}
