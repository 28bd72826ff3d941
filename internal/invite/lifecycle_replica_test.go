package invite

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/lifecycle"
	"github.com/d365portal/connector/internal/redistest"
)

// dyingReminder sends through the real adapter and, after the n-th email,
// kills its replica: the tick's context ends before the scheduler records
// the reminder, as when the process dies between sending and recording.
type dyingReminder struct {
	lc   *Lifecycle
	n    int32
	sent atomic.Int32
	kill context.CancelFunc
}

func (d *dyingReminder) Send(ctx context.Context, inv lifecycle.Invitation, index int) error {
	if err := d.lc.Send(ctx, inv, index); err != nil {
		return err
	}
	if d.sent.Add(1) == d.n {
		d.kill()
		return context.Canceled
	}
	return nil
}

// TestLifecycleReplicaKilledDuringReminders: replica A dies right after
// sending its second reminder, before recording it. Replica B sends the
// rest at once, waits out A's lease on the unrecorded one, then finds the
// reminder email A sent (its subcategory marker) and sends nothing: every
// invitee gets exactly one reminder.
func TestLifecycleReplicaKilledDuringReminders(t *testing.T) {
	const day = 24 * time.Hour
	const lease = time.Minute
	e := newEnv(t, func(c *Config) { c.Portals[0].ExpiresAfter = 14 * day })
	rdb := redistest.Start(t).Client(t)
	lc := e.svc.Lifecycle(LifecycleConfig{})
	portals := []lifecycle.Portal{{Name: partnerPortal, ExpiresAfter: 14 * day, Reminders: []time.Duration{7 * day}}}
	ctxA, killA := context.WithCancel(e.ctx)
	defer killA()
	dying := &dyingReminder{lc: lc, n: 2, kill: killA}
	replica := func(r lifecycle.Reminder) *lifecycle.Scheduler {
		s, err := lifecycle.New(lifecycle.Config{Portals: portals, Invitations: lc, Reminder: r, Expirer: lc,
			Redis: rdb, Clock: e.clock.Now, Lease: lease})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := replica(dying), replica(lc)
	const invitees = 6
	var addrs []string
	for i := range invitees {
		e.invite(e.contact(i), partnerPortal)
		e.clock.Add(time.Second) // distinct expiries: Due lists them in order
		addrs = append(addrs, str(e.row("contact", e.contact(i))["emailaddress1"]))
	}
	e.clock.Add(8 * day)

	if rep, err := a.Tick(ctxA); err == nil || rep.RemindersSent != 1 {
		t.Fatalf("replica A: %+v, %v; want killed after one recorded reminder", rep, err)
	}
	rep, err := b.Tick(e.ctx)
	if err != nil || rep.RemindersSent != invitees-2 || rep.Done != 1 || rep.Held != 1 {
		t.Fatalf("replica B inside A's lease: %+v, %v; want %d sent, 1 done, 1 held", rep, err, invitees-2)
	}
	e.clock.Add(lease)
	if rep, err = b.Tick(e.ctx); err != nil || rep.RemindersSent != 0 || rep.Skipped != 1 || rep.Done != invitees-1 {
		t.Fatalf("replica B after A's lease: %+v, %v; want the lapsed claim settled", rep, err)
	}
	if rep, err = b.Tick(e.ctx); err != nil || rep.Done != invitees || rep.RemindersSent != 0 {
		t.Fatalf("replica B at the end: %+v, %v; want all %d recorded", rep, err, invitees)
	}
	for i, addr := range addrs {
		mails := e.emailsTo(addr)
		reminders := 0
		for _, m := range mails {
			if strings.HasPrefix(m.Subject, "Reminder: ") {
				reminders++
			}
		}
		if len(mails) != 2 || reminders != 1 {
			t.Errorf("invitee %d: %d emails, %d reminders; want the invitation and one reminder", i, len(mails), reminders)
		}
	}
}
