package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/lifecycle"
	"github.com/d365portal/connector/internal/redistest"
)

const day = 24 * time.Hour

var t0 = time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)

type fakeClock struct{ ns atomic.Int64 }

func newClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.set(t)
	return c
}

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

// store is one invitation store shared by every replica, recording what
// was sent and expired and when (on the shared clock).
type store struct {
	clock *fakeClock
	// keepExpired keeps listing an invitation after Expire, as a lagging
	// query would.
	keepExpired bool

	mu       sync.Mutex
	invs     []*lifecycle.Invitation
	redeemAt map[string]time.Time
	closed   map[string]bool
	sends    map[sendKey][]event
	expiries map[string][]event
	dueErr   map[string]error
}

type sendKey struct {
	id      string
	expires time.Time
	index   int
}

type event struct {
	replica string
	at      time.Time
}

func newStore(clock *fakeClock) *store {
	return &store{clock: clock, redeemAt: map[string]time.Time{}, closed: map[string]bool{},
		sends: map[sendKey][]event{}, expiries: map[string][]event{}, dueErr: map[string]error{}}
}

func (s *store) add(inv lifecycle.Invitation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invs = append(s.invs, &inv)
}

func (s *store) setExpiry(id string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, inv := range s.invs {
		if inv.ID == id {
			inv.ExpiresAt = t
		}
	}
}

func (s *store) Due(_ context.Context, portal string, before time.Time) ([]lifecycle.Invitation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.dueErr[portal]; err != nil {
		return nil, err
	}
	now := s.clock.now()
	var out []lifecycle.Invitation
	for _, inv := range s.invs {
		r, redeemed := s.redeemAt[inv.ID]
		if inv.Portal != portal || s.closed[inv.ID] || (redeemed && !now.Before(r)) || inv.ExpiresAt.After(before) {
			continue
		}
		out = append(out, *inv)
	}
	slices.SortFunc(out, func(a, b lifecycle.Invitation) int { return a.ExpiresAt.Compare(b.ExpiresAt) })
	return out, nil
}

func (s *store) sent(id string, expires time.Time, index int) []event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sends[sendKey{id, expires, index}]
}

func (s *store) totalSends() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.sends {
		n += len(e)
	}
	return n
}

func (s *store) expired(id string) []event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expiries[id]
}

// replica is one connector process's Reminder and Expirer over the store.
// hook, when set, runs first; an error from it means nothing was sent.
type replica struct {
	name  string
	store *store
	hook  func(ctx context.Context, inv lifecycle.Invitation, index int) error
}

func (r *replica) Send(ctx context.Context, inv lifecycle.Invitation, index int) error {
	if r.hook != nil {
		if err := r.hook(ctx, inv, index); err != nil {
			return err
		}
	}
	s := r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	k := sendKey{inv.ID, inv.ExpiresAt, index}
	s.sends[k] = append(s.sends[k], event{r.name, s.clock.now()})
	return nil
}

func (r *replica) Expire(ctx context.Context, inv lifecycle.Invitation) error {
	if r.hook != nil {
		if err := r.hook(ctx, inv, -1); err != nil {
			return err
		}
	}
	s := r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiries[inv.ID] = append(s.expiries[inv.ID], event{r.name, s.clock.now()})
	if !s.keepExpired {
		s.closed[inv.ID] = true
	}
	return nil
}

// metrics counts the hooks' calls.
type metrics struct {
	mu sync.Mutex
	m  map[string]int
}

func (m *metrics) inc(k string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]int{}
	}
	m.m[k]++
}

func (m *metrics) get(k string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[k]
}

func (m *metrics) ReminderSent(p string, i int)   { m.inc(fmt.Sprintf("sent %s %d", p, i)) }
func (m *metrics) ReminderFailed(p string, i int) { m.inc(fmt.Sprintf("failed %s %d", p, i)) }
func (m *metrics) InvitationExpired(p string)     { m.inc("expired " + p) }
func (m *metrics) ExpiryFailed(p string)          { m.inc("expiry failed " + p) }

const lease = 10 * time.Minute

var partners = lifecycle.Portal{Name: "partners", ExpiresAfter: 14 * day, Reminders: []time.Duration{7 * day, day}}

func newScheduler(t *testing.T, srv *redistest.Server, clock *fakeClock, r *replica, m lifecycle.Metrics, portals ...lifecycle.Portal) *lifecycle.Scheduler {
	t.Helper()
	s, err := lifecycle.New(lifecycle.Config{
		Portals: portals, Invitations: r.store, Reminder: r, Expirer: r,
		Redis: srv.Client(t), Metrics: m, Lease: lease, Clock: clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func invID(i int) string { return fmt.Sprintf("%08d-aaaa-4bbb-8ccc-000000000000", i) }

// tickAll runs one tick of every scheduler at once and sums the reports.
func tickAll(t *testing.T, ss []*lifecycle.Scheduler) lifecycle.Report {
	t.Helper()
	reps := make([]lifecycle.Report, len(ss))
	errs := make([]error, len(ss))
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Go(func() { reps[i], errs[i] = s.Tick(context.Background()) })
	}
	wg.Wait()
	var sum lifecycle.Report
	for i := range ss {
		if errs[i] != nil {
			t.Fatalf("replica %d tick: %v", i, errs[i])
		}
		sum.RemindersSent += reps[i].RemindersSent
		sum.RemindersFailed += reps[i].RemindersFailed
		sum.Expired += reps[i].Expired
		sum.ExpiryFailed += reps[i].ExpiryFailed
		sum.Held += reps[i].Held
		sum.Done += reps[i].Done
	}
	return sum
}

// TestRemindersAndExpiryExactlyOnceAcrossReplicas runs three replicas over
// one store through twenty days of ticks, two hours apart, all three
// ticking at once: every reminder goes out once, in the tick after it falls
// due; every unredeemed invitation expires once; a redeemed one gets
// nothing more; one with less than a day left gets only the last reminder.
func TestRemindersAndExpiryExactlyOnceAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	st := newStore(clock)
	suppliers := lifecycle.Portal{Name: "suppliers", ExpiresAfter: 3 * day, Reminders: []time.Duration{day}}
	type want struct {
		inv      lifecycle.Invitation
		reminder []bool // per index: sent once (else never)
		expires  bool
	}
	var wants []want
	for i := range 30 {
		inv := lifecycle.Invitation{ID: invID(i), Portal: "partners", ContactID: "c" + invID(i),
			ExpiresAt: t0.Add(8*day + time.Duration(i)*197*time.Minute)}
		w := want{inv: inv, reminder: []bool{true, true}, expires: true}
		if i%10 == 3 { // redeemed between the two reminders
			st.redeemAt[inv.ID] = inv.ExpiresAt.Add(-3 * day)
			w = want{inv: inv, reminder: []bool{true, false}}
		}
		wants = append(wants, w)
	}
	for i := 30; i < 34; i++ { // less than a day left at the start
		inv := lifecycle.Invitation{ID: invID(i), Portal: "partners", ExpiresAt: t0.Add(20*time.Hour + time.Duration(i)*time.Minute)}
		wants = append(wants, want{inv: inv, reminder: []bool{false, true}, expires: true})
	}
	for i := 40; i < 48; i++ {
		inv := lifecycle.Invitation{ID: invID(i), Portal: "suppliers", ExpiresAt: t0.Add(2*day + time.Duration(i)*time.Hour)}
		wants = append(wants, want{inv: inv, reminder: []bool{true}, expires: true})
	}
	never := lifecycle.Invitation{ID: invID(99), Portal: "partners"} // no expiry
	st.add(never)
	for _, w := range wants {
		st.add(w.inv)
	}
	m := &metrics{}
	var ss []*lifecycle.Scheduler
	for i := range 3 {
		ss = append(ss, newScheduler(t, srv, clock, &replica{name: fmt.Sprint("r", i), store: st}, m, partners, suppliers))
	}
	const step = 2 * time.Hour
	var total lifecycle.Report
	for ; clock.now().Before(t0.Add(20 * day)); clock.add(step) {
		rep := tickAll(t, ss)
		total.RemindersSent += rep.RemindersSent
		total.Expired += rep.Expired
		total.RemindersFailed += rep.RemindersFailed + rep.ExpiryFailed
	}
	var wantSends, wantExpiries int
	replicasSeen := map[string]bool{}
	for _, w := range wants {
		p := partners
		if w.inv.Portal == "suppliers" {
			p = suppliers
		}
		for i, once := range w.reminder {
			got := st.sent(w.inv.ID, w.inv.ExpiresAt, i)
			if !once {
				if len(got) != 0 {
					t.Errorf("%s reminder %d: sent %v; want never", w.inv.ID, i, got)
				}
				continue
			}
			wantSends++
			due := w.inv.ExpiresAt.Add(-p.Reminders[i])
			if due.Before(t0) {
				due = t0
			}
			if len(got) != 1 || got[0].at.Before(due) || !got[0].at.Before(due.Add(step)) {
				t.Errorf("%s reminder %d (due %v): sent %v; want once within a tick of due", w.inv.ID, i, due, got)
				continue
			}
			replicasSeen[got[0].replica] = true
		}
		got := st.expired(w.inv.ID)
		if !w.expires {
			if len(got) != 0 {
				t.Errorf("%s: expired %v; want never (redeemed)", w.inv.ID, got)
			}
			continue
		}
		wantExpiries++
		if len(got) != 1 || got[0].at.Before(w.inv.ExpiresAt) || !got[0].at.Before(w.inv.ExpiresAt.Add(step)) {
			t.Errorf("%s (expires %v): expired %v; want once within a tick", w.inv.ID, w.inv.ExpiresAt, got)
		}
	}
	if len(st.expired(never.ID)) != 0 || st.totalSends() != wantSends {
		t.Errorf("sends = %d (want %d); invitation without expiry expired %d times", st.totalSends(), wantSends, len(st.expired(never.ID)))
	}
	if total.RemindersSent != wantSends || total.Expired != wantExpiries || total.RemindersFailed != 0 {
		t.Errorf("reports: %+v; want %d sent, %d expired, no failures", total, wantSends, wantExpiries)
	}
	if got := m.get("sent partners 0") + m.get("sent partners 1") + m.get("sent suppliers 0"); got != wantSends {
		t.Errorf("metrics sent = %d; want %d (%v)", got, wantSends, m.m)
	}
	if got := m.get("expired partners") + m.get("expired suppliers"); got != wantExpiries {
		t.Errorf("metrics expired = %d; want %d", got, wantExpiries)
	}
	t.Logf("%d reminders and %d expiries by replicas %v", wantSends, wantExpiries, replicasSeen)
}

// TestKilledReplicaReminderSentOnceAfterLease: replica A claims a reminder
// and is stopped mid-send; B cannot take it until A's lease lapses, then
// sends it once; nobody sends it again.
func TestKilledReplicaReminderSentOnceAfterLease(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	st := newStore(clock)
	inv := lifecycle.Invitation{ID: invID(1), Portal: "partners", ExpiresAt: t0.Add(day - time.Hour)}
	st.add(inv)
	entered, aborted := make(chan struct{}), make(chan error, 1)
	a := newScheduler(t, srv, clock, &replica{name: "a", store: st, hook: func(ctx context.Context, _ lifecycle.Invitation, _ int) error {
		close(entered)
		<-ctx.Done()
		aborted <- ctx.Err()
		return ctx.Err()
	}}, nil, partners)
	b := newScheduler(t, srv, clock, &replica{name: "b", store: st}, nil, partners)
	c := newScheduler(t, srv, clock, &replica{name: "c", store: st}, nil, partners)

	ctx, kill := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := a.Tick(ctx); done <- err }()
	<-entered
	kill()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("killed tick: %v; want context.Canceled", err)
	}
	if err := <-aborted; !errors.Is(err, context.Canceled) {
		t.Fatalf("send saw %v; want its context cancelled", err)
	}
	steps := []struct {
		at   time.Duration
		sent int // by this tick of b
		held int
	}{
		{0, 0, 1},
		{lease - time.Millisecond, 0, 1},
		{lease, 1, 0},
	}
	for _, s := range steps {
		clock.set(t0.Add(s.at))
		rep, err := b.Tick(context.Background())
		if err != nil || rep.RemindersSent != s.sent || rep.Held != s.held {
			t.Fatalf("b at +%v: %+v, %v; want %d sent, %d held", s.at, rep, err, s.sent, s.held)
		}
	}
	clock.add(time.Hour)
	for name, s := range map[string]*lifecycle.Scheduler{"a": a, "b": b, "c": c} {
		if rep, err := s.Tick(context.Background()); err != nil || rep.Done != 1 || rep.RemindersSent != 0 {
			t.Fatalf("%s afterwards: %+v, %v; want done before", name, rep, err)
		}
	}
	if got := st.sent(inv.ID, inv.ExpiresAt, 1); len(got) != 1 || got[0].replica != "b" {
		t.Fatalf("sends = %v; want one, by b", got)
	}
}

// TestExpiryOnceWhileStillListed: three replicas tick together on an
// expired invitation that the store keeps listing; it is expired once.
func TestExpiryOnceWhileStillListed(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	st := newStore(clock)
	st.keepExpired = true
	inv := lifecycle.Invitation{ID: invID(2), Portal: "partners", ExpiresAt: t0.Add(-time.Minute)}
	st.add(inv)
	m := &metrics{}
	var ss []*lifecycle.Scheduler
	for i := range 3 {
		ss = append(ss, newScheduler(t, srv, clock, &replica{name: fmt.Sprint("r", i), store: st}, m, partners))
	}
	if rep := tickAll(t, ss); rep.Expired != 1 || rep.Done+rep.Held != 2 || rep.RemindersSent != 0 {
		t.Fatalf("first ticks: %+v; want 1 expired, 2 skipped", rep)
	}
	for _, after := range []time.Duration{lease, day, 20 * day} {
		clock.set(t0.Add(after))
		if rep := tickAll(t, ss); rep.Expired != 0 || rep.Done != 3 {
			t.Fatalf("at +%v: %+v; want done before on all 3", after, rep)
		}
	}
	if got := st.expired(inv.ID); len(got) != 1 || m.get("expired partners") != 1 {
		t.Fatalf("expired %v, metric %d; want once", got, m.get("expired partners"))
	}
}

// TestFailedSendRetriedAfterLease: a failed send is counted, its claim
// holds off retries until the lease lapses, and the retry succeeds.
func TestFailedSendRetriedAfterLease(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	st := newStore(clock)
	inv := lifecycle.Invitation{ID: invID(3), Portal: "partners", ExpiresAt: t0.Add(6 * day)}
	st.add(inv)
	var calls atomic.Int32
	m := &metrics{}
	s := newScheduler(t, srv, clock, &replica{name: "r", store: st, hook: func(context.Context, lifecycle.Invitation, int) error {
		if calls.Add(1) == 1 {
			return errors.New("dataverse: 503")
		}
		return nil
	}}, m, partners)
	steps := []struct {
		at                   time.Duration
		sent, failed, held   int
		metricSent, metricFl int
	}{
		{0, 0, 1, 0, 0, 1},
		{time.Minute, 0, 0, 1, 0, 1},
		{lease, 1, 0, 0, 1, 1},
		{lease + time.Hour, 0, 0, 0, 1, 1},
	}
	for _, x := range steps {
		clock.set(t0.Add(x.at))
		rep, err := s.Tick(context.Background())
		if err != nil || rep.RemindersSent != x.sent || rep.RemindersFailed != x.failed || rep.Held != x.held {
			t.Fatalf("at +%v: %+v, %v; want sent %d failed %d held %d", x.at, rep, err, x.sent, x.failed, x.held)
		}
		if m.get("sent partners 0") != x.metricSent || m.get("failed partners 0") != x.metricFl {
			t.Fatalf("at +%v metrics %v", x.at, m.m)
		}
	}
	if got := st.sent(inv.ID, inv.ExpiresAt, 0); len(got) != 1 {
		t.Fatalf("sends = %v; want 1", got)
	}
}

// TestMovedExpiryGetsRemindersAgain: a resend moves the expiry; the
// reminders apply again to the new date.
func TestMovedExpiryGetsRemindersAgain(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	st := newStore(clock)
	first := t0.Add(7*day - time.Hour)
	st.add(lifecycle.Invitation{ID: invID(4), Portal: "partners", ExpiresAt: first})
	s := newScheduler(t, srv, clock, &replica{name: "r", store: st}, nil, partners)
	if rep, err := s.Tick(context.Background()); err != nil || rep.RemindersSent != 1 {
		t.Fatalf("first: %+v, %v", rep, err)
	}
	second := t0.Add(14 * day)
	st.setExpiry(invID(4), second)
	clock.set(t0.Add(7 * day))
	if rep, err := s.Tick(context.Background()); err != nil || rep.RemindersSent != 1 {
		t.Fatalf("after the move: %+v, %v", rep, err)
	}
	if a, b := st.sent(invID(4), first, 0), st.sent(invID(4), second, 0); len(a) != 1 || len(b) != 1 {
		t.Fatalf("reminder 0 for %v: %v, for %v: %v; want once each", first, a, second, b)
	}
}

// TestNothingSentWithoutRedis: with Redis down no claim can be taken, so
// nothing is sent and the tick reports the failure.
func TestNothingSentWithoutRedis(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	st := newStore(clock)
	st.add(lifecycle.Invitation{ID: invID(5), Portal: "partners", ExpiresAt: t0.Add(time.Hour)})
	st.add(lifecycle.Invitation{ID: invID(6), Portal: "partners", ExpiresAt: t0.Add(-time.Hour)})
	s := newScheduler(t, srv, clock, &replica{name: "r", store: st}, nil, partners)
	srv.Stop()
	rep, err := s.Tick(context.Background())
	if err == nil || !strings.Contains(err.Error(), "lifecycle tick partners: claim") {
		t.Fatalf("tick with Redis down: %+v, %v; want a claim error", rep, err)
	}
	if st.totalSends() != 0 || len(st.expired(invID(6))) != 0 {
		t.Fatal("an action ran without a claim")
	}
}

// TestStoreErrorStopsOnlyItsPortal: a failing query for one portal is
// reported, and the other portal's pass still runs.
func TestStoreErrorStopsOnlyItsPortal(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	st := newStore(clock)
	st.dueErr["partners"] = errors.New("dataverse: 503")
	st.add(lifecycle.Invitation{ID: invID(7), Portal: "suppliers", ExpiresAt: t0.Add(-time.Hour)})
	suppliers := lifecycle.Portal{Name: "suppliers", ExpiresAfter: 3 * day}
	s := newScheduler(t, srv, clock, &replica{name: "r", store: st}, nil, partners, suppliers)
	rep, err := s.Tick(context.Background())
	if err == nil || !strings.Contains(err.Error(), "lifecycle tick partners: due invitations: dataverse: 503") {
		t.Fatalf("err = %v; want the partners query error", err)
	}
	if rep.Expired != 1 {
		t.Fatalf("report %+v; want the suppliers invitation expired", rep)
	}
}

// TestStartRunsOnScheduleAndStopCancels runs the real cron schedule: a
// tick starts within a few seconds; Stop with an ended context cancels the
// running tick and waits for it.
func TestStartRunsOnScheduleAndStopCancels(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock(t0)
	st := newStore(clock)
	st.add(lifecycle.Invitation{ID: invID(8), Portal: "partners", ExpiresAt: t0.Add(time.Hour)})
	entered, cancelled := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r := &replica{name: "r", store: st, hook: func(ctx context.Context, _ lifecycle.Invitation, _ int) error {
		once.Do(func() { close(entered) })
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	}}
	s, err := lifecycle.New(lifecycle.Config{Portals: []lifecycle.Portal{partners}, Invitations: st, Reminder: r, Expirer: r,
		Redis: srv.Client(t), Clock: clock.now, Schedule: "@every 1s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatalf("stop before start: %v", err)
	}
	s.Start(context.Background())
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("no tick ran within 30s of an @every 1s schedule")
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Stop(ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("stop: %v; want context.Canceled", err)
	}
	select {
	case <-cancelled:
	default:
		t.Fatal("Stop returned before the running tick ended")
	}
	if st.totalSends() != 0 {
		t.Fatal("a cancelled send was recorded")
	}
}

func TestNewRejects(t *testing.T) {
	srv := redistest.Start(t)
	st := newStore(newClock(t0))
	r := &replica{store: st}
	ok := lifecycle.Config{Invitations: st, Reminder: r, Expirer: r, Redis: srv.Client(t)}
	cases := []struct {
		name string
		edit func(*lifecycle.Config)
		want string
	}{
		{"no store", func(c *lifecycle.Config) { c.Invitations = nil }, "are required"},
		{"bad schedule", func(c *lifecycle.Config) { c.Schedule = "every five minutes" }, `schedule "every five minutes"`},
		{"negative lease", func(c *lifecycle.Config) { c.Lease = -time.Second }, "must not be negative"},
		{"repeated portal", func(c *lifecycle.Config) { c.Portals = []lifecycle.Portal{partners, partners} }, `portals[1]: name "partners" is empty or repeated`},
		{"long reminder", func(c *lifecycle.Config) {
			c.Portals = []lifecycle.Portal{{Name: "p", ExpiresAfter: 7 * day, Reminders: []time.Duration{10 * day}}}
		}, "portal p: invitation.reminders[0]: 10d is not shorter than expires_after (7d)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			_, err := lifecycle.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := lifecycle.New(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func TestCheckPortal(t *testing.T) {
	cases := []struct {
		name string
		p    lifecycle.Portal
		want []string
	}{
		{"valid", partners, nil},
		{"no reminders, no expiry", lifecycle.Portal{Name: "p"}, nil},
		{"longer than expiry", lifecycle.Portal{ExpiresAfter: 7 * day, Reminders: []time.Duration{day, 10 * day}},
			[]string{"reminders[1]: 10d is not shorter than expires_after (7d)"}},
		{"equal to expiry", lifecycle.Portal{ExpiresAfter: 7 * day, Reminders: []time.Duration{7 * day}},
			[]string{"reminders[0]: 7d is not shorter than expires_after (7d)"}},
		{"hours", lifecycle.Portal{ExpiresAfter: 36 * time.Hour, Reminders: []time.Duration{40 * time.Hour}},
			[]string{"reminders[0]: 40h0m0s is not shorter than expires_after (36h0m0s)"}},
		{"not positive", lifecycle.Portal{ExpiresAfter: 7 * day, Reminders: []time.Duration{0, -day}},
			[]string{"reminders[0]: 0s must be positive (a duration before expiry)", "reminders[1]: -1d must be positive (a duration before expiry)"}},
		{"twice", lifecycle.Portal{ExpiresAfter: 7 * day, Reminders: []time.Duration{day, 2 * day, day}},
			[]string{"reminders[2]: 1d is listed twice (also reminders[0])"}},
		{"never expires", lifecycle.Portal{Reminders: []time.Duration{day}},
			[]string{"reminders: need expires_after: invitations that never expire get no reminders"}},
		{"negative expiry", lifecycle.Portal{ExpiresAfter: -day},
			[]string{"expires_after: -1d must not be negative"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range lifecycle.CheckPortal(tc.p) {
				got = append(got, p.Error())
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("problems:\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
	// Keys are relative to the invitation block, for the loader to prefix.
	probs := lifecycle.CheckPortal(lifecycle.Portal{ExpiresAfter: day, Reminders: []time.Duration{2 * day}})
	if len(probs) != 1 || probs[0].Key != "reminders[0]" || !strings.Contains(probs[0].Message, "2d") {
		t.Fatalf("problem = %+v; want key reminders[0] naming 2d", probs)
	}
}
