package delivery_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	smtpd "github.com/emersion/go-smtp"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/delivery"
	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/redistest"
	intake "github.com/d365portal/connector/internal/sync"
)

var messageIDRe = regexp.MustCompile(`(?m)^Message-ID: (<[^>]+>)`)

// TestSMTPChannelEndToEnd runs invitations through the whole connector on
// the SMTP channel: two replicas sharing a real redis-server queue, the
// emulator over HTTP, and an in-process go-smtp server with STARTTLS and
// AUTH that answers 451 to every fifth MAIL and cuts 10% of the connections
// after the message's final dot. Every invitation is delivered at least
// once, each dropped connection costs exactly one duplicate with the same
// Message-ID, and no contact gets a second invitation or email activity.
func TestSMTPChannelEndToEnd(t *testing.T) {
	n := 40
	if testing.Short() {
		n = 15
	}
	pki := newPKI(t)
	drops, dropped := randomDrops(0.10, 42)
	var mu sync.Mutex
	mails := 0
	srv := startServer(t, pki, serverConfig{
		security: "starttls", users: map[string]string{testUser: testPassword}, onData: drops,
		onMail: func(_ *smtpd.Conn, _ string) error {
			mu.Lock()
			defer mu.Unlock()
			if mails++; mails%5 == 0 {
				return &smtpd.SMTPError{Code: 451, EnhancedCode: smtpd.EnhancedCode{4, 7, 1}, Message: "greylisted, try again"}
			}
			return nil
		},
	})
	sender := newSender(t, srv.host, srv.port, delivery.SMTPOptions{
		Security: delivery.SecurityStartTLS, Username: testUser, Password: testPassword, TLSConfig: pki.client,
	})

	em, err := emulator.Start(emulator.Options{Auth: emulator.AuthOptions{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	if _, err := emulator.SeedDemo(em.Server); err != nil {
		t.Fatal(err)
	}
	contacts := make([]string, n)
	byAddress := map[string]string{}
	for i := range contacts {
		addr := fmt.Sprintf("smtp-invitee%03d@example.com", i)
		// As the Invite to portal button leaves it.
		if contacts[i], err = em.Insert("contact", map[string]any{"firstname": "Invitee", "lastname": fmt.Sprint(i), "emailaddress1": addr,
			emulator.ColInviteStatus: emulator.InviteRequested, emulator.ColInvitePortal: followPortal}); err != nil {
			t.Fatal(err)
		}
		byAddress[addr] = contacts[i]
	}
	rs := redistest.Start(t)
	cols := invite.DefaultContactColumns
	var replicas []*intake.Intake
	for r := range 2 {
		rdb := rs.Client(t)
		dv, err := dataverse.New(dataverse.Config{URL: em.OrgURL}, nil, &dataverse.Options{HTTPClient: em.HTTPClient,
			RetryDelay: time.Millisecond, MaxRetryDelay: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := invite.New(dv, invite.Config{
			Portals: []invite.Portal{{Name: followPortal, WebsiteID: emulator.DemoSiteID, BaseURL: "https://partners.contoso.example",
				DefaultRoles: []string{"Partners"}, Email: invite.EmailSettings{Sender: "systemuser:" + emulator.DemoMailerUserID, Channel: invite.ChannelSMTP}}},
			PasswordHash: invite.HashAspNetV2, Locker: intake.NewLocker(rdb, "e2e:"),
		})
		if err != nil {
			t.Fatal(err)
		}
		deliveries, err := intake.NewDeliveries(svc, delivery.FollowerConfig{Dataverse: dv, SMTP: sender})
		if err != nil {
			t.Fatal(err)
		}
		in, err := intake.New(intake.Config{
			Redis: rdb, KeyPrefix: "e2e:", Invites: svc, Dataverse: dv, Contact: cols, DefaultPortal: followPortal,
			Workers: 3, MaxAttempts: 12, Lease: time.Second, RetryDelay: 20 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond,
			Consumer: fmt.Sprintf("replica-%d", r), Deliveries: deliveries,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := in.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = in.Shutdown(sctx)
			scancel()
			cancel()
		})
		replicas = append(replicas, in)
	}
	for _, id := range contacts {
		// Each request twice, once through each replica, with no dedupe key:
		// the second must change nothing.
		for _, in := range replicas {
			if _, err := in.Enqueue(context.Background(), intake.Request{ContactID: id, Portal: followPortal, Source: "cli"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	status := func(id string) int {
		row, _ := em.Row("contact", id)
		v, _ := row[cols.Status].(int)
		return v
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		done := 0
		for _, id := range contacts {
			if status(id) == cols.Delivered {
				done++
			}
		}
		s, err := replicas[0].Stats(context.Background())
		if done == n && err == nil && s.Depth == 0 && s.Pending == 0 && s.Retrying == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d/%d Delivered after 90s; queue %+v", done, n, s)
		}
		time.Sleep(20 * time.Millisecond)
	}

	copies := map[string][]string{} // contact -> Message-IDs received
	for _, m := range srv.messages() {
		id := byAddress[strings.ToLower(m.To)]
		mid := messageIDRe.FindSubmatch(m.Data)
		if id == "" || mid == nil {
			t.Fatalf("unexpected message to %q", m.To)
		}
		copies[id] = append(copies[id], string(mid[1]))
	}
	duplicates := 0
	for _, id := range contacts {
		got := copies[id]
		if len(got) == 0 {
			t.Errorf("contact %s: no message delivered", id)
			continue
		}
		for _, mid := range got[1:] {
			if mid != got[0] {
				t.Errorf("contact %s: copies with different Message-IDs %v", id, got)
			}
		}
		duplicates += len(got) - 1
	}
	invitations := map[string]int{}
	for _, r := range em.Rows("adx_invitation") {
		invitations[strings.ToLower(r["adx_invitecontact"].(string))]++
	}
	for _, id := range contacts {
		if invitations[id] != 1 {
			t.Errorf("contact %s: %d invitations", id, invitations[id])
		}
	}
	emails := em.Rows("email")
	if len(emails) != n {
		t.Errorf("%d email activities, want %d", len(emails), n)
	}
	for _, r := range emails {
		if st, _ := r["statuscode"].(int); st != delivery.EmailSent || r["messageid"] == nil {
			t.Errorf("email %v: status %v messageid %v, want Sent with the Message-ID", r["activityid"], r["statuscode"], r["messageid"])
		}
	}
	if duplicates != dropped() {
		t.Errorf("%d duplicates for %d connections cut after the dot; want one per cut", duplicates, dropped())
	}
	t.Logf("%d invitations: %d messages received, %d duplicates from %d connections cut after the dot, %d MAIL commands (every 5th answered 451)",
		n, len(srv.messages()), duplicates, dropped(), mails)
}
