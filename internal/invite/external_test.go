package invite

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

const testIssuer = "https://login.microsoftonline.com/8a3c1e52-9f0b-4d6e-a1c7-2b5f9e0d4c31/v2.0"

func extLogin(key, email string, verified bool) ExternalLogin {
	return ExternalLogin{Provider: "entra", Issuer: testIssuer, Key: key, Email: email, EmailVerified: verified,
		FirstName: "Given", LastName: "Family"}
}

// externalRows returns the adx_externalidentity rows as the emulator holds
// them.
func (e *env) externalRows() []map[string]any { return e.em.Rows("adx_externalidentity") }

func (e *env) rowsFor(contact string) []map[string]any {
	var out []map[string]any
	for _, r := range e.externalRows() {
		if strings.EqualFold(str(r["adx_contactid"]), contact) {
			out = append(out, r)
		}
	}
	return out
}

func (e *env) email(i int) string { return str(e.row("contact", e.contact(i))["emailaddress1"]) }

// snapshot counts what a refused flow must leave untouched.
func (e *env) snapshot(contact, invitation string) string {
	c := e.row("contact", contact)
	inv := e.row("adx_invitation", invitation)
	return fmt.Sprintf("%d|%v|%v|%v|%d|%d", len(e.externalRows()), c["adx_identity_username"], c["adx_identity_logonenabled"],
		c["adx_identity_securitystamp"], num(inv["adx_redemptions"]), len(e.em.Rows("adx_inviteredemption")))
}

// TestRedeemExternalWritesWhatPowerPagesWrites reads back the rows: the
// adx_externalidentity row carries the ID token's iss and the provider key
// and is bound to the invited contact; the contact gets Power Pages'
// external registration columns and no password.
func TestRedeemExternalWritesWhatPowerPagesWrites(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		portal, contactRel, wantRole string
		i                            int
	}{
		{partnerPortal, "powerpagecomponent_mspp_webrole_contact", emulator.DemoRolePartnersID, 0},
		{customerPortal, "adx_webrole_contact", emulator.DemoWebRoleCustomersID, 1},
	} {
		t.Run(tc.portal, func(t *testing.T) {
			e.t = t
			contact := e.contact(tc.i)
			res := e.invite(contact, tc.portal)
			key := "pairwise-sub-" + contact[len(contact)-4:]
			// The provider asserts another address: the invited one is kept.
			login := extLogin(key, "someone.else@example.org", false)
			login.Columns = map[string]string{"jobtitle": "From the token"}
			acc, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: res.Code.Grouped(), IPAddress: "203.0.113.7", Login: login})
			if err != nil {
				t.Fatal(err)
			}
			if acc.ContactID != contact || acc.Username != key || !acc.EmailConfirmed || acc.Portal != tc.portal || acc.HasPassword {
				t.Fatalf("account %+v", acc)
			}
			rows := e.rowsFor(contact)
			if len(rows) != 1 {
				t.Fatalf("external identity rows for the contact: %v", rows)
			}
			r := rows[0]
			if str(r["adx_identityprovidername"]) != testIssuer || str(r["adx_username"]) != key || num(r["statecode"]) != 0 {
				t.Fatalf("adx_externalidentity %v", r)
			}
			c := e.row("contact", contact)
			if str(c["adx_identity_username"]) != key || c["adx_identity_logonenabled"] != true || c["adx_identity_lockoutenabled"] != true ||
				c["adx_identity_emailaddress1confirmed"] != true || c["adx_identity_passwordhash"] != nil ||
				str(c["emailaddress1"]) != e.email(tc.i) || str(c["jobtitle"]) != "From the token" ||
				num(c[emulator.ColInviteStatus]) != emulator.InviteRedeemed {
				t.Fatalf("contact after external redemption %v", c)
			}
			if _, err := uuid.Parse(str(c["adx_identity_securitystamp"])); err != nil || str(c["adx_identity_securitystamp"]) != acc.SecurityStamp {
				t.Fatalf("security stamp %v", c["adx_identity_securitystamp"])
			}
			if roles := e.em.Associated(tc.contactRel, contact); !sameSet(roles, []string{tc.wantRole}) {
				t.Fatalf("roles %v", roles)
			}
			inv := e.row("adx_invitation", res.Invitation.ID)
			if num(inv["adx_redemptions"]) != 1 || num(inv["statuscode"]) != invStatusRedeemed || str(inv["adx_redeemedcontact"]) != contact {
				t.Fatalf("invitation %v", inv)
			}
			found := false
			for _, red := range e.em.Rows("adx_inviteredemption") {
				if str(red["regardingobjectid"]) == res.Invitation.ID && str(red["subject"]) == key && str(red["adx_ipaddress"]) == "203.0.113.7" {
					found = true
				}
			}
			if !found {
				t.Fatal("no adx_inviteredemption with the provider key as subject")
			}

			// The returning user is found through the row.
			back, err := e.svc.SignInExternal(e.ctx, tc.portal, extLogin(key, "", false))
			if err != nil || back.ContactID != contact || len(back.Roles) == 0 {
				t.Fatalf("returning sign-in: %+v %v", back, err)
			}
			// Another issuer with the same key is someone else.
			other := extLogin(key, "", false)
			other.Issuer = "https://accounts.google.com"
			if _, err := e.svc.SignInExternal(e.ctx, tc.portal, other); !errors.Is(err, ErrNoAccount) {
				t.Fatalf("same key at another issuer: %v", err)
			}
			// Redeeming the used code again fails as the local path does.
			if _, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res.Code), Login: extLogin("x-"+key, "", false)}); !errors.Is(err, ErrCodeUsedUp) {
				t.Fatalf("second redemption: %v", err)
			}
		})
	}
}

func TestRedeemExternalRefusalsWriteNothing(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Portals[0].RequireEmailMatch = true })
	// Ada redeems contact 0's invitation with her login.
	res0 := e.invite(e.contact(0), partnerPortal)
	if _, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res0.Code), Login: extLogin("ada", e.email(0), true)}); err != nil {
		t.Fatal(err)
	}

	res1 := e.invite(e.contact(1), partnerPortal)
	before := e.snapshot(e.contact(1), res1.Invitation.ID)
	upper := strings.ToUpper(e.email(1))
	for _, tc := range []struct {
		name  string
		login ExternalLogin
		check func(error) bool
	}{
		{"email of someone else", extLogin("bob", "bob@example.org", true), func(err error) bool {
			var me *EmailMismatchError
			return errors.As(err, &me) && me.Invited == MaskEmail(e.email(1)) && me.Verified && !strings.Contains(me.Invited, e.email(1))
		}},
		{"unverified invited email", extLogin("bob", e.email(1), false), func(err error) bool {
			var me *EmailMismatchError
			return errors.As(err, &me) && !me.Verified
		}},
		{"no email", extLogin("bob", "", false), func(err error) bool { return errors.Is(err, ErrEmailMismatch) }},
	} {
		_, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res1.Code), Login: tc.login})
		if !tc.check(err) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if after := e.snapshot(e.contact(1), res1.Invitation.ID); after != before {
			t.Fatalf("%s wrote: %s -> %s", tc.name, before, after)
		}
	}
	// The same address in other case matches.
	acc, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res1.Code), Login: extLogin("bob", upper, true)})
	if err != nil || acc.ContactID != e.contact(1) {
		t.Fatalf("matching email: %+v %v", acc, err)
	}
	// The invitee's own login on a fresh invitation: already an account.
	res1b, err := e.svc.Invite(e.ctx, InviteRequest{ContactID: e.contact(2), Portal: partnerPortal, Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Lookup(e.ctx, string(res1b.Code)); err != nil {
		t.Fatal(err)
	}
	// Bob's login for another invitee with a match on the invited address:
	// as Power Pages, the invitation is redeemed for Bob's own account.
	before2 := e.snapshot(e.contact(2), res1b.Invitation.ID)
	acc2, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res1b.Code), Login: extLogin("bob", e.email(2), true)})
	if err != nil || acc2.ContactID != e.contact(1) || !acc2.LinkedAccount {
		t.Fatalf("bob's login for another invitee: %+v %v", acc2, err)
	}
	if c := e.row("contact", e.contact(2)); c["adx_identity_username"] != nil || len(e.rowsFor(e.contact(2))) != 0 {
		t.Fatalf("the invited contact was changed: %v", c["adx_identity_username"])
	}
	if after := e.snapshot(e.contact(2), res1b.Invitation.ID); after == before2 {
		t.Fatal("no redemption recorded")
	}
	// A contact that already has a local account.
	res3 := e.invite(e.contact(3), partnerPortal)
	if _, err := e.dv.Update(e.ctx, "contacts", e.contact(3), map[string]any{"adx_identity_username": "local-user"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res3.Code), Login: extLogin("carol", e.email(3), true)}); !errors.Is(err, ErrExistingUser) {
		t.Fatalf("contact with a local account: %v", err)
	}
	if len(e.rowsFor(e.contact(3))) != 0 {
		t.Fatal("a row was written for the existing user")
	}
}

func TestSignInExternalRefusesLikeLocal(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Lockout = Lockout{MaxFailed: 3, Duration: 10 * time.Minute} })
	res := e.invite(e.contact(4), partnerPortal)
	if _, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res.Code), Login: extLogin("dan", "", false)}); err != nil {
		t.Fatal(err)
	}
	id := e.contact(4)
	set := func(cols map[string]any) {
		t.Helper()
		if _, err := e.dv.Update(e.ctx, "contacts", id, cols, nil); err != nil {
			t.Fatal(err)
		}
	}
	signIn := func() error {
		_, err := e.svc.SignInExternal(e.ctx, partnerPortal, extLogin("dan", "", false))
		return err
	}
	if err := signIn(); err != nil {
		t.Fatal(err)
	}
	set(map[string]any{"adx_identity_logonenabled": false})
	if err := signIn(); !errors.Is(err, ErrAccountDisabled) {
		t.Fatalf("logon disabled: %v", err)
	}
	set(map[string]any{"adx_identity_logonenabled": true, "adx_identity_lockoutenddate": e.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	var locked *LockedOutError
	if err := signIn(); !errors.As(err, &locked) {
		t.Fatalf("locked out: %v", err)
	}
	set(map[string]any{"adx_identity_lockoutenddate": nil, "statecode": 1, "statuscode": 2})
	if err := signIn(); !errors.Is(err, ErrAccountDisabled) {
		t.Fatalf("deactivated contact: %v", err)
	}
	// An inactive login row no longer signs in.
	set(map[string]any{"statecode": 0, "statuscode": 1})
	row := e.rowsFor(id)[0]
	if _, err := e.dv.Update(e.ctx, "adx_externalidentities", str(row["adx_externalidentityid"]), map[string]any{"statecode": 1, "statuscode": 2}, nil); err != nil {
		t.Fatal(err)
	}
	if err := signIn(); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("inactive row: %v", err)
	}
}

func TestSignInExternalMappingAndRegistration(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Portals[1].OpenRegistration = true })
	mapping := func(key, email string, verified bool) ExternalLogin {
		l := extLogin(key, email, verified)
		l.AllowEmailMapping = true
		return l
	}
	// Mapping needs the setting, a verified email and exactly one active contact.
	for _, l := range []ExternalLogin{extLogin("m1", e.email(5), true), mapping("m1", e.email(5), false)} {
		if _, err := e.svc.SignInExternal(e.ctx, partnerPortal, l); !errors.Is(err, ErrNoAccount) {
			t.Fatalf("mapping without setting or verification: %v", err)
		}
	}
	if len(e.externalRows()) != 0 {
		t.Fatal("a refused sign-in wrote a row")
	}
	acc, err := e.svc.SignInExternal(e.ctx, partnerPortal, mapping("m1", strings.ToUpper(e.email(5)), true))
	if err != nil || acc.ContactID != e.contact(5) {
		t.Fatalf("mapping: %+v %v", acc, err)
	}
	if rows := e.rowsFor(e.contact(5)); len(rows) != 1 || str(rows[0]["adx_username"]) != "m1" {
		t.Fatalf("mapped rows %v", rows)
	}
	if c := e.row("contact", e.contact(5)); str(c["adx_identity_username"]) != "m1" || c["adx_identity_logonenabled"] != true {
		t.Fatalf("mapped contact %v", c)
	}
	// Two active contacts share an address: nobody is picked.
	if _, err := e.dv.Update(e.ctx, "contacts", e.contact(7), map[string]any{"emailaddress1": e.email(6)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SignInExternal(e.ctx, partnerPortal, mapping("m2", e.email(6), true)); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("shared address: %v", err)
	}

	// Open registration on the customer portal creates a contact.
	reg, err := e.svc.SignInExternal(e.ctx, customerPortal, extLogin("new-1", "new.person@fabrikam.example", true))
	if err != nil {
		t.Fatal(err)
	}
	c := e.row("contact", reg.ContactID)
	if str(c["emailaddress1"]) != "new.person@fabrikam.example" || str(c["adx_identity_username"]) != "new-1" || str(c["firstname"]) != "Given" ||
		c["adx_identity_passwordhash"] != nil || c["adx_identity_emailaddress1confirmed"] != true {
		t.Fatalf("registered contact %v", c)
	}
	if rows := e.rowsFor(reg.ContactID); len(rows) != 1 || str(rows[0]["adx_identityprovidername"]) != testIssuer {
		t.Fatalf("registered rows %v", rows)
	}
	again, err := e.svc.SignInExternal(e.ctx, customerPortal, extLogin("new-1", "", false))
	if err != nil || again.ContactID != reg.ContactID {
		t.Fatalf("returning registered user: %v", err)
	}
	// An address an active contact already has is not registered twice.
	if _, err := e.svc.SignInExternal(e.ctx, customerPortal, extLogin("new-2", e.email(8), true)); !errors.Is(err, ErrEmailInUse) {
		t.Fatalf("address in use: %v", err)
	}
	if _, err := e.svc.SignInExternal(e.ctx, customerPortal, extLogin("new-3", "", false)); !errors.Is(err, ErrNoEmail) {
		t.Fatalf("registration without email: %v", err)
	}
}

func TestLinkAndUnlinkExternal(t *testing.T) {
	e := newEnv(t, nil)
	res := e.invite(e.contact(0), partnerPortal)
	acc, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res.Code), Login: extLogin("k1", "", false)})
	if err != nil {
		t.Fatal(err)
	}
	google := ExternalLogin{Provider: "google", Issuer: "https://accounts.google.com", Key: "g-1"}
	if err := e.svc.LinkExternal(e.ctx, acc.ContactID, google); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.LinkExternal(e.ctx, acc.ContactID, google); err != nil {
		t.Fatalf("linking again: %v", err)
	}
	logins, err := e.svc.ExternalLogins(e.ctx, acc.ContactID)
	if err != nil || len(logins) != 2 {
		t.Fatalf("logins %v %v", logins, err)
	}
	// Someone else cannot take the login.
	res2 := e.invite(e.contact(1), partnerPortal)
	other, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res2.Code), Login: extLogin("k2", "", false)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.LinkExternal(e.ctx, other.ContactID, google); !errors.Is(err, ErrLoginAlreadyAssociated) {
		t.Fatalf("taking a linked login: %v", err)
	}
	if err := e.svc.UnlinkExternal(e.ctx, other.ContactID, logins[0].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing someone else's login: %v", err)
	}
	// Remove one, then the last is kept.
	if err := e.svc.UnlinkExternal(e.ctx, acc.ContactID, logins[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.em.Row("adx_externalidentity", logins[0].ID); ok {
		t.Fatal("the row was not deleted")
	}
	if err := e.svc.UnlinkExternal(e.ctx, acc.ContactID, logins[1].ID); !errors.Is(err, ErrLastLogin) {
		t.Fatalf("removing the last login: %v", err)
	}
	// With a password the last login may go, unless local sign-in is off.
	if _, err := e.dv.Update(e.ctx, "contacts", acc.ContactID, map[string]any{"adx_identity_passwordhash": "AQAAAAEAACcQAAAAE-test"}, nil); err != nil {
		t.Fatal(err)
	}
	noLocal := newEnvShared(e, func(c *Config) { c.LocalLoginDisabled = true })
	if err := noLocal.UnlinkExternal(e.ctx, acc.ContactID, logins[1].ID); !errors.Is(err, ErrLastLogin) {
		t.Fatalf("local login disabled: %v", err)
	}
	if err := e.svc.UnlinkExternal(e.ctx, acc.ContactID, logins[1].ID); err != nil {
		t.Fatalf("with a password: %v", err)
	}
	// Both logins are gone: they sign in to nothing.
	for _, l := range []ExternalLogin{extLogin("k1", "", false), google} {
		if _, err := e.svc.SignInExternal(e.ctx, partnerPortal, l); !errors.Is(err, ErrNoAccount) {
			t.Fatalf("sign-in with removed login %s: %v", l.Key, err)
		}
	}
}

// newEnvShared builds a second service over the same emulator.
func newEnvShared(e *env, mutate func(*Config)) *Service {
	e.t.Helper()
	cfg := Config{Portals: e.svc.cfg.Portals, PasswordHash: HashAspNetV2, Now: e.clock.Now}
	mutate(&cfg)
	svc, err := New(e.dv, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

// TestConcurrentExternalRedeem: 50 people redeem one single-use code at
// once, each with their own login; exactly one account results.
func TestConcurrentExternalRedeem(t *testing.T) {
	e := newEnv(t, nil)
	res := e.invite(e.contact(2), partnerPortal)
	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res.Code), Login: extLogin(fmt.Sprintf("racer-%02d", i), "", false)})
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, ErrCodeUsedUp), errors.Is(err, ErrExistingUser):
		default:
			t.Fatalf("redeemer %d: %v", i, err)
		}
	}
	inv := e.row("adx_invitation", res.Invitation.ID)
	reds := 0
	for _, r := range e.em.Rows("adx_inviteredemption") {
		if str(r["regardingobjectid"]) == res.Invitation.ID {
			reds++
		}
	}
	rows := e.externalRows()
	if wins != 1 || num(inv["adx_redemptions"]) != 1 || reds != 1 || len(rows) != 1 || str(rows[0]["adx_contactid"]) != e.contact(2) {
		t.Fatalf("wins %d, redemptions %v, activities %d, identity rows %d", wins, inv["adx_redemptions"], reds, len(rows))
	}
	if c := e.row("contact", e.contact(2)); str(c["adx_identity_username"]) != str(rows[0]["adx_username"]) {
		t.Fatalf("contact user name %v, row %v", c["adx_identity_username"], rows[0]["adx_username"])
	}
}

func TestMaskEmail(t *testing.T) {
	for in, want := range map[string]string{
		"ada@contoso.example":         "a••@contoso.example",
		"maria.campbell@fabrikam.com": "m••••••@fabrikam.com",
		"x@y.z":                       "x••@y.z",
		"":                            "",
		"no-at-sign":                  "",
	} {
		if got := MaskEmail(in); got != want {
			t.Errorf("MaskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRedeemExternalWithLoginLinkedElsewhere follows Power Pages: a login
// that already belongs to another contact signs that contact in and the
// invitation is redeemed for it (roles, redemption, redeemed contact), the
// invited contact untouched; a holder that cannot sign in is refused with
// LoginAlreadyAssociated and nothing is written.
func TestRedeemExternalWithLoginLinkedElsewhere(t *testing.T) {
	e := newEnv(t, nil)
	res0 := e.invite(e.contact(0), partnerPortal)
	if _, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res0.Code), Login: extLogin("ada", "", false)}); err != nil {
		t.Fatal(err)
	}
	res1 := e.invite(e.contact(1), partnerPortal)
	acc, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res1.Code), IPAddress: "192.0.2.7", Login: extLogin("ada", "", false)})
	if err != nil || acc.ContactID != e.contact(0) || !acc.LinkedAccount {
		t.Fatalf("redeem with Ada's login: %+v %v", acc, err)
	}
	inv := e.row("adx_invitation", res1.Invitation.ID)
	if num(inv["adx_redemptions"]) != 1 || str(inv["adx_redeemedcontact"]) != e.contact(0) {
		t.Fatalf("invitation after redemption: redemptions %v redeemed %v", inv["adx_redemptions"], inv["adx_redeemedcontact"])
	}
	if c := e.row("contact", e.contact(1)); c["adx_identity_username"] != nil || len(e.rowsFor(e.contact(1))) != 0 {
		t.Fatal("the invited contact was changed")
	}
	if n := len(e.externalRows()); n != 1 {
		t.Fatalf("external identity rows: %d, want 1 (no second link)", n)
	}
	if _, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res1.Code), Login: extLogin("ada", "", false)}); !errors.Is(err, ErrCodeUsedUp) {
		t.Fatalf("code used twice: %v", err)
	}

	// Ada's sign-in disabled: LoginAlreadyAssociated, nothing written.
	if _, err := e.dv.Update(e.ctx, "contacts", e.contact(0), map[string]any{"adx_identity_logonenabled": false}, nil); err != nil {
		t.Fatal(err)
	}
	res2 := e.invite(e.contact(2), partnerPortal)
	before := e.snapshot(e.contact(2), res2.Invitation.ID)
	if _, err := e.svc.RedeemExternal(e.ctx, ExternalRedeemRequest{Code: string(res2.Code), Login: extLogin("ada", "", false)}); !errors.Is(err, ErrLoginAlreadyAssociated) {
		t.Fatalf("holder that cannot sign in: %v", err)
	}
	if after := e.snapshot(e.contact(2), res2.Invitation.ID); after != before {
		t.Fatalf("refusal wrote: %s -> %s", before, after)
	}
}
