package sync

import (
	"context"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/delivery"
)

// scaledClock runs speed times faster than the wall clock from its start.
func scaledClock(speed float64) func() time.Time {
	start := time.Now()
	return func() time.Time { return start.Add(time.Duration(float64(time.Since(start)) * speed)) }
}

// Three replicas pace one portal's two sender mailboxes to their limits,
// with the emulator's mailbox limits and the pacer's clock scaled down the
// same way (a minute lasts a second): every contact gets one invitation and
// one email, from the senders round-robin; the mail server never refuses
// one for its quota; an invitation costs two Dataverse requests.
func TestIntegrationPacingAcrossReplicas(t *testing.T) {
	const (
		n         = 24
		perMinute = 3  // per sender, in scaled minutes
		speed     = 20 // a scaled minute lasts 3 seconds
	)
	mailer := "systemuser:" + emulator.DemoMailerUserID
	admin := "systemuser:" + emulator.DemoAdminUserID
	c := newCluster(t, clusterOpts{
		contacts: n, instances: 3, workers: 4,
		emailSync: emulator.EmailSyncOptions{Limits: emulator.MailboxLimits{
			MessageWindow: time.Minute / speed, Messages: perMinute, Recipients: -1}},
		pace: map[string][]delivery.Sender{itPortal: {
			{Name: mailer, PerMinute: perMinute, PerDay: 10000}, {Name: admin, PerMinute: perMinute, PerDay: 10000}}},
		now: scaledClock(speed),
		// Submission follows the reservation by a read and a change set (and
		// a replica's first role lookup); 300 ms of real time covers it
		// under the race detector.
		guard: 6 * time.Second,
	})
	ctx := context.Background()
	if err := c.flag(ctx, c.contacts, 8); err != nil {
		t.Fatal(err)
	}
	c.em.ResetStats()
	for _, id := range c.contacts {
		if _, err := c.live().Enqueue(ctx, Request{ContactID: id, Source: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	var parkedSeen int64
	var mu stdsync.Mutex
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if p, err := c.live().Parked(ctx); err == nil {
				mu.Lock()
				parkedSeen = max(parkedSeen, p)
				mu.Unlock()
			}
		}
	}()
	c.waitDrained(c.contacts, 60*time.Second)
	close(done)
	st := c.em.Stats()

	invs := c.invitationsPer()
	emails, total := c.emailsPer()
	for _, id := range c.contacts {
		if invs[id] != 1 || emails[id] != 1 {
			t.Errorf("contact %s: %d invitations, %d emails", id, invs[id], emails[id])
		}
	}
	if total != n {
		t.Errorf("%d emails, want %d", total, n)
	}
	quota := 0
	for _, r := range c.em.Rows("tracelog") {
		if s, _ := r["text"].(string); strings.Contains(s, "ErrorSubmissionQuotaExceeded") {
			quota++
		}
	}
	if quota != 0 {
		t.Errorf("%d quota alerts: the connector sent past a mailbox's limit", quota)
	}
	mu.Lock()
	defer mu.Unlock()
	if parkedSeen == 0 {
		t.Error("no request ever waited for a budget: the test does not exercise pacing")
	}
	// Two requests per invitation: the worker's read (which Invite uses) and
	// the change set; each replica also looks the portal's roles up once.
	reads, batches := st.Count("GET", "contacts({id})"), st.Count("POST", "$batch")
	perInvitation := float64(reads+batches) / n
	t.Logf("%d invitations: %d Dataverse requests in all, %d contact reads and %d change sets (%.2f per invitation), up to %d parked at once",
		n, st.Total, reads, batches, perInvitation, parkedSeen)
	if perInvitation > 2.0 || st.Total > reads+batches+3 {
		t.Errorf("%.2f Dataverse requests per invitation (want 2.0), %d in all: %v", perInvitation, st.Total, st.ByRoute)
	}
}
