package invite

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

func TestInviteIsIdempotent(t *testing.T) {
	e := newEnv(t, nil)
	c := e.contact(3)
	first := e.invite(c, partnerPortal)
	again := e.invite(c, partnerPortal)
	if !again.Reused || again.EmailSent || again.Created || again.Invitation.ID != first.Invitation.ID || again.Code != "" {
		t.Fatalf("second invite %+v", again)
	}
	if n := len(e.invitationsOf(c)); n != 1 {
		t.Fatalf("%d invitations", n)
	}
	if n := len(e.emailsTo(str(e.row("contact", c)["emailaddress1"]))); n != 1 {
		t.Fatalf("%d emails after a repeated invite", n)
	}
	// Another portal is another invitation.
	other := e.invite(c, customerPortal)
	if other.Reused || other.Invitation.ID == first.Invitation.ID {
		t.Fatal("invitation reused across portals")
	}
}

func TestConcurrentInvites(t *testing.T) {
	e := newEnv(t, nil)
	c := e.contact(4)
	const n = 20
	var wg sync.WaitGroup
	results := make([]*InviteResult, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = e.svc.Invite(e.ctx, InviteRequest{ContactID: c, Portal: partnerPortal, Source: "webhook"})
		})
	}
	wg.Wait()
	created, sent := 0, 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if results[i].Created {
			created++
		}
		if results[i].EmailSent {
			sent++
		}
		if results[i].Invitation.ID != results[0].Invitation.ID {
			t.Fatalf("call %d got invitation %s, call 0 %s", i, results[i].Invitation.ID, results[0].Invitation.ID)
		}
	}
	invs := e.invitationsOf(c)
	mails := e.emailsTo(str(e.row("contact", c)["emailaddress1"]))
	t.Logf("20 concurrent invites: %d invitation rows, %d emails, %d HTTP requests", len(invs), len(mails), e.em.Stats().Total)
	if created != 1 || sent != 1 || len(invs) != 1 || len(mails) != 1 {
		t.Fatalf("created %d, sent %d, rows %d, emails %d; want 1 each", created, sent, len(invs), len(mails))
	}
}

func TestInviteRefusals(t *testing.T) {
	e := newEnv(t, nil)
	// A contact who already has a portal identity.
	userID, err := e.em.Insert("contact", map[string]any{"firstname": "Pat", "lastname": "User", "emailaddress1": "pat@example.com",
		"adx_identity_username": "pat", "adx_identity_logonenabled": true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, contact, portal string
		roles                 []string
		want                  error
		wantStatus            int
		wantReason            string
	}{
		{"no email", emulator.DemoContactNoEmailID, partnerPortal, nil, ErrNoEmail, emulator.InviteFailed, "no email address"},
		{"inactive", emulator.DemoContactInactiveID, partnerPortal, nil, ErrInactiveContact, emulator.InviteFailed, "inactive"},
		{"unknown portal", e.contact(0), "Fabrikam Portal", nil, ErrUnknownPortal, emulator.InviteFailed, `"Fabrikam Portal"`},
		{"unknown role", e.contact(1), partnerPortal, []string{"Partners", "Wizards"}, ErrUnknownRole, emulator.InviteFailed, `"Wizards"`},
		{"role of the other website", e.contact(2), partnerPortal, []string{"Administrators"}, ErrUnknownRole, emulator.InviteFailed, "Administrators"},
		{"already a portal user", userID, partnerPortal, nil, ErrAlreadyPortalUser, emulator.InviteRedeemed, "Already a portal user"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Invite(e.ctx, InviteRequest{ContactID: tc.contact, Portal: tc.portal, Roles: tc.roles})
			if !errors.Is(err, tc.want) || !IsPermanent(err) {
				t.Fatalf("err = %v, want %v (permanent)", err, tc.want)
			}
			c := e.row("contact", tc.contact)
			if num(c[emulator.ColInviteStatus]) != tc.wantStatus || !strings.Contains(str(c[emulator.ColInviteError]), tc.wantReason) {
				t.Fatalf("write-back status %v reason %q", c[emulator.ColInviteStatus], c[emulator.ColInviteError])
			}
			if n := len(e.invitationsOf(tc.contact)); n != 0 {
				t.Fatalf("%d invitations created", n)
			}
		})
	}
	if _, err := e.svc.Invite(e.ctx, InviteRequest{ContactID: "00000000-0000-4000-8000-00000000dead", Portal: partnerPortal}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing contact: %v", err)
	}
	if len(e.em.Outbox()) != 0 {
		t.Fatal("a refused invitation sent email")
	}
	// A later successful invitation clears the written-back reason.
	e.invite(e.contact(1), partnerPortal)
	if c := e.row("contact", e.contact(1)); c[emulator.ColInviteError] != nil || num(c[emulator.ColInviteStatus]) != emulator.InviteSent {
		t.Fatalf("reason not cleared: %v", c[emulator.ColInviteError])
	}
	if err := e.svc.MarkFailed(e.ctx, e.contact(1), "gave up after 8 attempts: dataverse 503"); err != nil {
		t.Fatal(err)
	}
	if c := e.row("contact", e.contact(1)); num(c[emulator.ColInviteStatus]) != emulator.InviteFailed || !strings.Contains(str(c[emulator.ColInviteError]), "8 attempts") {
		t.Fatal("MarkFailed not written")
	}
	if err := e.svc.MarkFailed(e.ctx, "00000000-0000-4000-8000-00000000dead", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MarkFailed unknown: %v", err)
	}
}

func TestResendRevokeGetList(t *testing.T) {
	e := newEnv(t, nil)
	c := e.contact(6)
	addr := str(e.row("contact", c)["emailaddress1"])
	res := e.invite(c, partnerPortal)

	// Hashed storage: resend issues a new code and the old one stops working.
	re, err := e.svc.Resend(e.ctx, res.Invitation.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !re.EmailSent || re.Code == "" || re.Code == res.Code || len(e.emailsTo(addr)) != 2 {
		t.Fatalf("resend %+v, %d emails", re, len(e.emailsTo(addr)))
	}
	if _, err := e.svc.Lookup(e.ctx, string(res.Code)); !errors.Is(err, ErrCodeUnknown) {
		t.Fatalf("old code after resend: %v", err)
	}
	if inv, err := e.svc.Lookup(e.ctx, re.Code.Grouped()); err != nil || inv.ID != res.Invitation.ID {
		t.Fatalf("new code: %v", err)
	}

	// Plain storage keeps the code while it is valid; expiry renews both.
	pres := e.invite(c, customerPortal)
	pre, err := e.svc.Resend(e.ctx, pres.Invitation.ID)
	if err != nil || pre.Code != pres.Code {
		t.Fatalf("plain resend changed the code: %v %s %s", err, pre.Code, pres.Code)
	}
	e.clock.Add(31 * 24 * time.Hour)
	if _, err := e.svc.Lookup(e.ctx, string(pres.Code)); !errors.Is(err, ErrCodeExpired) {
		t.Fatalf("expired lookup: %v", err)
	}
	pre2, err := e.svc.Resend(e.ctx, pres.Invitation.ID)
	if err != nil || pre2.Code == pres.Code || !pre2.Invitation.ExpiresAt.After(e.clock.Now()) {
		t.Fatalf("resend of an expired invitation: %v %+v", err, pre2)
	}
	if _, err := e.svc.Lookup(e.ctx, string(pre2.Code)); err != nil {
		t.Fatalf("renewed code: %v", err)
	}

	// Get and List.
	inv, err := e.svc.Get(e.ctx, pres.Invitation.ID)
	if err != nil || inv.Portal != customerPortal || inv.Status != StatusSent || inv.ContactID != c ||
		inv.ContactEmail != addr || !sameSet(inv.Roles, []string{"Customers"}) || inv.Code != string(pre2.Code) {
		t.Fatalf("Get = %+v, %v", inv, err)
	}
	if _, err := e.svc.Get(e.ctx, "00000000-0000-4000-8000-00000000dead"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}
	list, err := e.svc.List(e.ctx, ListFilter{ContactID: c, Status: "open"})
	if err != nil || len(list) != 2 {
		t.Fatalf("List open = %d, %v", len(list), err)
	}

	// Revoke: inactive, refused everywhere, idempotent.
	if err := e.svc.Revoke(e.ctx, res.Invitation.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Revoke(e.ctx, res.Invitation.ID); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	row := e.row("adx_invitation", res.Invitation.ID)
	if num(row["statecode"]) != 1 || num(row["statuscode"]) != invStatusInactive {
		t.Fatalf("revoked row %v/%v", row["statecode"], row["statuscode"])
	}
	if inv, err := e.svc.Lookup(e.ctx, string(re.Code)); !errors.Is(err, ErrCodeRevoked) || inv == nil {
		t.Fatalf("revoked lookup: %v", err)
	}
	if _, err := e.svc.Resend(e.ctx, res.Invitation.ID); !errors.Is(err, ErrCodeRevoked) {
		t.Fatalf("resend revoked: %v", err)
	}
	if err := e.svc.Revoke(e.ctx, "00000000-0000-4000-8000-00000000dead"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	inactive, err := e.svc.List(e.ctx, ListFilter{ContactID: c, Status: StatusInactive})
	if err != nil || len(inactive) != 1 {
		t.Fatalf("List inactive = %d, %v", len(inactive), err)
	}
	// A revoked invitation is not reused: inviting again creates a new one.
	again := e.invite(c, partnerPortal)
	if again.Reused || !again.Created {
		t.Fatal("revoked invitation reused")
	}
}

func TestInviteSendsUnsentOpenInvitation(t *testing.T) {
	e := newEnv(t, nil)
	c := e.contact(7)
	// An invitation made in Portal Management: status New, never emailed.
	invID, err := e.em.Insert("adx_invitation", map[string]any{"adx_name": "manual", "adx_type": invTypeSingle,
		"adx_invitationcode": "manual-code", "adx_maximumredemptions": 1, "adx_redemptions": 0,
		"adx_invitecontact": c, "mspp_websiteid": emulator.DemoSiteID})
	if err != nil {
		t.Fatal(err)
	}
	res := e.invite(c, partnerPortal)
	if res.Created || !res.EmailSent || res.Invitation.ID != invID {
		t.Fatalf("%+v", res)
	}
	row := e.row("adx_invitation", invID)
	if num(row["statuscode"]) != invStatusSent || str(row["adx_invitationcode"]) != HashCode(res.Code) {
		t.Fatalf("row %v", row)
	}
	if len(e.invitationsOf(c)) != 1 {
		t.Fatal("second invitation created")
	}
}

func TestDetectDataModel(t *testing.T) {
	e := newEnv(t, nil)
	for id, want := range map[string]string{emulator.DemoSiteID: ModelEnhanced, emulator.DemoWebsiteID: ModelStandard} {
		got, err := e.svc.DetectDataModel(e.ctx, id)
		if err != nil || got != want {
			t.Errorf("DetectDataModel(%s) = %q, %v; want %q", id, got, err, want)
		}
	}
	if _, err := e.svc.DetectDataModel(e.ctx, "00000000-0000-4000-8000-00000000dead"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown website: %v", err)
	}
}
