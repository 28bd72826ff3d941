package invite

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/google/uuid"
)

func TestRedeemSingle(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		portal, contact, contactRel string
		wantRole                    string
	}{
		{partnerPortal, e.contact(0), "powerpagecomponent_mspp_webrole_contact", emulator.DemoRolePartnersID},
		{customerPortal, e.contact(1), "adx_webrole_contact", emulator.DemoWebRoleCustomersID},
	} {
		t.Run(tc.portal, func(t *testing.T) {
			e.t = t
			res := e.invite(tc.contact, tc.portal)
			// GET never consumes: look it up twice, typed the way a person would.
			for _, typed := range []string{string(res.Code), strings.ToLower(res.Code.Grouped())} {
				inv, err := e.svc.Lookup(e.ctx, typed)
				if err != nil || inv.ID != res.Invitation.ID || inv.ContactEmail == "" || inv.Portal != tc.portal {
					t.Fatalf("Lookup(%q) = %+v, %v", typed, inv, err)
				}
			}
			if r := e.row("adx_invitation", res.Invitation.ID); num(r["adx_redemptions"]) != 0 {
				t.Fatal("lookup consumed the code")
			}
			acc, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: res.Code.Grouped(), Username: "user-" + tc.contact[len(tc.contact)-3:],
				Password: goodPassword, IPAddress: "203.0.113.9"})
			if err != nil {
				t.Fatal(err)
			}
			if acc.ContactID != tc.contact || acc.Portal != tc.portal || !acc.EmailConfirmed || acc.InvitationID != res.Invitation.ID {
				t.Fatalf("account %+v", acc)
			}
			c := e.row("contact", tc.contact)
			if str(c["adx_identity_username"]) != acc.Username || c["adx_identity_logonenabled"] != true ||
				c["adx_identity_emailaddress1confirmed"] != true || c["adx_identity_lockoutenabled"] != true ||
				num(c["adx_identity_accessfailedcount"]) != 0 || num(c[emulator.ColInviteStatus]) != emulator.InviteRedeemed {
				t.Fatalf("identity columns %v", c)
			}
			if _, err := uuid.Parse(str(c["adx_identity_securitystamp"])); err != nil || str(c["adx_identity_securitystamp"]) != acc.SecurityStamp {
				t.Fatalf("security stamp %q", c["adx_identity_securitystamp"])
			}
			if ok, _ := e.svc.hasher.Verify(str(c["adx_identity_passwordhash"]), goodPassword); !ok {
				t.Fatal("stored hash does not verify the password")
			}
			if roles := e.em.Associated(tc.contactRel, tc.contact); !sameSet(roles, []string{tc.wantRole}) {
				t.Fatalf("contact roles %v", roles)
			}
			inv := e.row("adx_invitation", res.Invitation.ID)
			if num(inv["adx_redemptions"]) != 1 || num(inv["statuscode"]) != invStatusRedeemed || num(inv["statecode"]) != 0 ||
				str(inv["adx_redeemedcontact"]) != tc.contact {
				t.Fatalf("invitation after redemption %v", inv)
			}
			var red map[string]any
			for _, r := range e.em.Rows("adx_inviteredemption") {
				if str(r["regardingobjectid"]) == res.Invitation.ID {
					red = r
				}
			}
			if red == nil || str(red["subject"]) != acc.Username || str(red["adx_ipaddress"]) != "203.0.113.9" {
				t.Fatalf("redemption activity %v", red)
			}
			customer := false
			for _, p := range e.em.Rows("activityparty") {
				if str(p["activityid"]) == str(red["activityid"]) && num(p["participationtypemask"]) == partyCustomer && str(p["partyid"]) == tc.contact {
					customer = true
				}
			}
			if !customer {
				t.Fatal("the redeeming contact is not the redemption's customer party")
			}
			// The code is used up now; the site also learns why.
			if _, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(res.Code), Username: "again", Password: goodPassword}); !errors.Is(err, ErrCodeUsedUp) {
				t.Fatalf("second redemption: %v", err)
			}
		})
	}
}

func TestRedeemRefusals(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Portals[1].Terms = "https://customers.contoso.example/terms" })
	taken := e.invite(e.contact(0), partnerPortal)
	if _, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(taken.Code), Username: "taken.name", Password: goodPassword}); err != nil {
		t.Fatal(err)
	}
	expired := e.invite(e.contact(1), partnerPortal)
	revoked := e.invite(e.contact(2), partnerPortal)
	if err := e.svc.Revoke(e.ctx, revoked.Invitation.ID); err != nil {
		t.Fatal(err)
	}
	open := e.invite(e.contact(3), partnerPortal)
	terms := e.invite(e.contact(4), customerPortal)
	// An invitation for a contact who became a portal user after it was sent.
	existing := e.invite(e.contact(5), partnerPortal)
	if _, err := e.dv.Update(e.ctx, "contacts", e.contact(5), map[string]any{"adx_identity_username": "already", "adx_identity_logonenabled": true}, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		req   RedeemRequest
		want  error
		later time.Duration
	}{
		{"unknown code", RedeemRequest{Code: "0000-0000-0000-0000-0000-0000-0000-0000", Username: "x1", Password: goodPassword}, ErrCodeUnknown, 0},
		{"garbage code", RedeemRequest{Code: "' or 1 eq 1 or '", Username: "x2", Password: goodPassword}, ErrCodeUnknown, 0},
		{"empty code", RedeemRequest{Code: "", Username: "x3", Password: goodPassword}, ErrCodeUnknown, 0},
		{"revoked", RedeemRequest{Code: string(revoked.Code), Username: "x4", Password: goodPassword}, ErrCodeRevoked, 0},
		{"used up", RedeemRequest{Code: string(taken.Code), Username: "x5", Password: goodPassword}, ErrCodeUsedUp, 0},
		{"user name taken", RedeemRequest{Code: string(open.Code), Username: "Taken.Name", Password: goodPassword}, ErrUsernameTaken, 0},
		{"existing user", RedeemRequest{Code: string(existing.Code), Username: "x6", Password: goodPassword}, ErrExistingUser, 0},
		{"terms not accepted", RedeemRequest{Code: string(terms.Code), Username: "x7", Password: goodPassword}, ErrTermsRequired, 0},
		{"weak password", RedeemRequest{Code: string(open.Code), Username: "x8", Password: "password1"}, &PolicyError{}, 0},
		{"password contains user name", RedeemRequest{Code: string(open.Code), Username: "kettle", Password: "Kettle-Blue-42"}, &PolicyError{}, 0},
		{"expired", RedeemRequest{Code: string(expired.Code), Username: "x9", Password: goodPassword}, ErrCodeExpired, 31 * 24 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Add(tc.later)
			acc, err := e.svc.Redeem(e.ctx, tc.req)
			var pe *PolicyError
			switch want := tc.want.(type) {
			case *PolicyError:
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v, want a *PolicyError", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("err = %v, want %v", err, want)
				}
			}
			if tc.want == ErrExistingUser && (acc == nil || acc.ContactID != e.contact(5)) {
				t.Fatalf("existing user without the account: %+v", acc)
			}
		})
	}
	// Nothing was consumed by the refusals.
	for _, id := range []string{open.Invitation.ID, terms.Invitation.ID, existing.Invitation.ID} {
		if r := e.row("adx_invitation", id); num(r["adx_redemptions"]) != 0 {
			t.Fatalf("refused redemption counted on %s", id)
		}
	}
	if c := e.row("contact", e.contact(3)); c["adx_identity_username"] != nil {
		t.Fatal("refused redemption wrote an identity")
	}
	// With terms accepted (and back before the expiry) it works.
	e.clock.Add(-31 * 24 * time.Hour)
	if _, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(terms.Code), Username: "x7", Password: goodPassword, AcceptedTerms: true}); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentRedeem: two goroutines redeem one single-use code at once;
// exactly one account is created.
func TestConcurrentRedeem(t *testing.T) {
	for round := range 5 {
		e := newEnv(t, nil)
		res := e.invite(e.contact(round), partnerPortal)
		var wg sync.WaitGroup
		accs := make([]*Account, 2)
		errs := make([]error, 2)
		start := make(chan struct{})
		for i := range 2 {
			wg.Go(func() {
				<-start
				accs[i], errs[i] = e.svc.Redeem(e.ctx, RedeemRequest{Code: string(res.Code), Username: []string{"alpha", "bravo"}[i], Password: goodPassword})
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		var winner string
		for i := range 2 {
			switch {
			case errs[i] == nil:
				wins++
				winner = accs[i].Username
			case errors.Is(errs[i], ErrCodeUsedUp), errors.Is(errs[i], ErrExistingUser):
			default:
				t.Fatalf("redeemer %d: %v", i, errs[i])
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners (%v)", round, wins, errs)
		}
		c := e.row("contact", e.contact(round))
		inv := e.row("adx_invitation", res.Invitation.ID)
		reds := 0
		for _, r := range e.em.Rows("adx_inviteredemption") {
			if str(r["regardingobjectid"]) == res.Invitation.ID {
				reds++
			}
		}
		if str(c["adx_identity_username"]) != winner || num(inv["adx_redemptions"]) != 1 || reds != 1 {
			t.Fatalf("round %d: username %v (winner %s), redemptions %v, activities %d", round, c["adx_identity_username"], winner, inv["adx_redemptions"], reds)
		}
	}
}

func TestRedeemGroupInvitation(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Portals[0].MaxRedemptions = 3
	})
	res := e.invite(e.contact(0), partnerPortal)
	if res.Invitation.Type != TypeGroup {
		t.Fatalf("type %s", res.Invitation.Type)
	}
	if r := e.row("adx_invitation", res.Invitation.ID); num(r["adx_type"]) != invTypeGroup || num(r["adx_maximumredemptions"]) != 3 {
		t.Fatalf("row %v", r)
	}
	// 1: a new person: a contact is created.
	a, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(res.Code), Username: "newbie", Password: goodPassword,
		Email: "newbie@example.com", FirstName: "New", LastName: "Bie", IPAddress: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	nc := e.row("contact", a.ContactID)
	if str(nc["emailaddress1"]) != "newbie@example.com" || str(nc["firstname"]) != "New" || nc["adx_identity_emailaddress1confirmed"] == true ||
		str(nc["adx_identity_username"]) != "newbie" {
		t.Fatalf("new contact %v", nc)
	}
	if roles := e.em.Associated("powerpagecomponent_mspp_webrole_contact", a.ContactID); !sameSet(roles, []string{emulator.DemoRolePartnersID}) {
		t.Fatalf("new contact roles %v", roles)
	}
	// 2: an existing contact with that email is linked, not duplicated.
	existing := e.row("contact", e.contact(7))
	b, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(res.Code), Username: str(existing["emailaddress1"]), Password: goodPassword})
	if err != nil {
		t.Fatal(err)
	}
	if b.ContactID != e.contact(7) {
		t.Fatalf("linked %s, want %s", b.ContactID, e.contact(7))
	}
	// The same person again: existing user.
	if _, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(res.Code), Username: "other", Password: goodPassword,
		Email: "newbie@example.com"}); !errors.Is(err, ErrExistingUser) {
		t.Fatalf("repeat redeemer: %v", err)
	}
	// No email for a group redemption.
	if _, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(res.Code), Username: "noemail", Password: goodPassword}); !errors.Is(err, ErrNoEmail) {
		t.Fatalf("group redemption without email: %v", err)
	}
	redeemed := e.em.Associated("adx_invitation_redeemedcontacts", res.Invitation.ID)
	if !sameSet(redeemed, []string{a.ContactID, b.ContactID}) {
		t.Fatalf("redeemed contacts %v", redeemed)
	}
	inv := e.row("adx_invitation", res.Invitation.ID)
	if num(inv["adx_redemptions"]) != 2 || num(inv["statuscode"]) == invStatusRedeemed {
		t.Fatalf("after two of three: %v", inv)
	}
	// 3: the last seat, then used up.
	if _, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(res.Code), Username: "third", Password: goodPassword, Email: "third@example.com"}); err != nil {
		t.Fatal(err)
	}
	if inv := e.row("adx_invitation", res.Invitation.ID); num(inv["statuscode"]) != invStatusRedeemed || num(inv["adx_redemptions"]) != 3 {
		t.Fatalf("after three of three: %v", inv)
	}
	if _, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(res.Code), Username: "fourth", Password: goodPassword, Email: "fourth@example.com"}); !errors.Is(err, ErrCodeUsedUp) {
		t.Fatalf("fourth: %v", err)
	}
}

func TestRedeemAssignsParentAccountAndPowerPagesCode(t *testing.T) {
	e := newEnv(t, nil)
	// A contact without a parent account, invited with adx_assigntoaccount set.
	cid, err := e.em.Insert("contact", map[string]any{"firstname": "Lee", "lastname": "Park", "emailaddress1": "lee@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	res := e.invite(cid, customerPortal)
	if _, err := e.dv.Update(e.ctx, "adx_invitations", res.Invitation.ID,
		map[string]any{"adx_assignToAccount@odata.bind": "/accounts(" + emulator.DemoAccountID + ")"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(res.Code), Username: "lee", Password: goodPassword}); err != nil {
		t.Fatal(err)
	}
	if c := e.row("contact", cid); str(c["parentcustomerid"]) != emulator.DemoAccountID {
		t.Fatalf("parent account %v", c["parentcustomerid"])
	}
	// A code generated by Power Pages itself (Base64 with '-') on a plain-storage portal.
	ppCode := strings.Repeat("Ab9-", 43)
	cid2, _ := e.em.Insert("contact", map[string]any{"firstname": "Kim", "lastname": "Ode", "emailaddress1": "kim@example.com"})
	invID, err := e.em.Insert("adx_invitation", map[string]any{"adx_name": "pp", "adx_type": invTypeSingle, "adx_invitationcode": ppCode,
		"adx_maximumredemptions": 1, "adx_redemptions": 0, "adx_invitecontact": cid2, "adx_website": emulator.DemoWebsiteID, "statuscode": invStatusSent})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := e.svc.Lookup(e.ctx, " "+ppCode+" ")
	if err != nil || inv.ID != invID {
		t.Fatalf("Power Pages code lookup: %v", err)
	}
	if _, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: ppCode, Username: "kim", Password: goodPassword}); err != nil {
		t.Fatal(err)
	}
	// Hashed storage never exposes the code.
	h := e.invite(e.contact(2), partnerPortal)
	if got, _ := e.svc.Get(e.ctx, h.Invitation.ID); got.Code != "" {
		t.Fatal("hashed invitation revealed its code")
	}
}
