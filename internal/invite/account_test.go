package invite

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

// redeemed invites contact i to portal and redeems it as username.
func (e *env) redeemed(i int, portal, username string) *Account {
	e.t.Helper()
	res := e.invite(e.contact(i), portal)
	acc, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(res.Code), Username: username, Password: goodPassword})
	if err != nil {
		e.t.Fatalf("Redeem: %v", err)
	}
	return acc
}

func TestSignInAndLockout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Lockout = Lockout{MaxFailed: 3, Duration: 10 * time.Minute} })
	acc := e.redeemed(0, partnerPortal, "maria")
	email := acc.Email

	got, err := e.svc.SignIn(e.ctx, partnerPortal, "maria", goodPassword)
	if err != nil || got.ContactID != acc.ContactID || !sameSet(got.Roles, []string{"Partners"}) || got.Portal != partnerPortal {
		t.Fatalf("SignIn = %+v, %v", got, err)
	}
	if c := e.row("contact", acc.ContactID); c["adx_identity_lastsuccessfullogin"] == nil {
		t.Fatal("last successful login not recorded")
	}
	// By email address too, and the role list is per portal.
	if got, err := e.svc.SignIn(e.ctx, customerPortal, strings.ToUpper(email), goodPassword); err != nil || len(got.Roles) != 0 {
		t.Fatalf("SignIn by email on the other portal = %+v, %v", got, err)
	}
	tests := []struct {
		name, portal, login, password string
		want                          error
	}{
		{"unknown user", partnerPortal, "nobody", goodPassword, ErrBadCredentials},
		{"empty login", partnerPortal, "", goodPassword, ErrBadCredentials},
		{"unknown portal", "Nope", "maria", goodPassword, ErrUnknownPortal},
		{"contact without identity", partnerPortal, str(e.row("contact", e.contact(3))["emailaddress1"]), goodPassword, ErrBadCredentials},
	}
	for _, tc := range tests {
		if _, err := e.svc.SignIn(e.ctx, tc.portal, tc.login, tc.password); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Lockout after MaxFailed wrong passwords; even the right one is refused then.
	for i := 1; i <= 2; i++ {
		if _, err := e.svc.SignIn(e.ctx, partnerPortal, "maria", "wrong"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if n := num(e.row("contact", acc.ContactID)["adx_identity_accessfailedcount"]); n != i {
			t.Fatalf("failed count %d after %d failures", n, i)
		}
	}
	_, err = e.svc.SignIn(e.ctx, partnerPortal, "maria", "wrong")
	var lo *LockedOutError
	if !errors.As(err, &lo) || !errors.Is(err, ErrLockedOut) || !lo.Until.Equal(e.clock.Now().Add(10*time.Minute)) {
		t.Fatalf("third failure: %v", err)
	}
	if _, err := e.svc.SignIn(e.ctx, partnerPortal, "maria", goodPassword); !errors.Is(err, ErrLockedOut) {
		t.Fatalf("right password while locked: %v", err)
	}
	e.clock.Add(11 * time.Minute)
	if _, err := e.svc.SignIn(e.ctx, partnerPortal, "maria", goodPassword); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	c := e.row("contact", acc.ContactID)
	if num(c["adx_identity_accessfailedcount"]) != 0 || c["adx_identity_lockoutenddate"] != nil {
		t.Fatalf("lockout not cleared: %v %v", c["adx_identity_accessfailedcount"], c["adx_identity_lockoutenddate"])
	}
	// Disabled sign-in.
	if _, err := e.dv.Update(e.ctx, "contacts", acc.ContactID, map[string]any{"adx_identity_logonenabled": false}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SignIn(e.ctx, partnerPortal, "maria", goodPassword); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("logon disabled: %v", err)
	}
}

func TestSignInRehashes(t *testing.T) {
	t.Parallel()        // PBKDF2 is slow under -race
	e := newEnv(t, nil) // creates V2 hashes
	acc := e.redeemed(1, partnerPortal, "nancy")
	v3, err := New(e.dv, Config{Portals: e.svc.Portals(), PasswordHash: HashAspNetV3, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	before := str(e.row("contact", acc.ContactID)["adx_identity_passwordhash"])
	if !v3.hasher.NeedsRehash(before) {
		t.Fatal("V2 hash should need a rehash under aspnet-v3")
	}
	if _, err := v3.SignIn(e.ctx, partnerPortal, "nancy", goodPassword); err != nil {
		t.Fatal(err)
	}
	after := str(e.row("contact", acc.ContactID)["adx_identity_passwordhash"])
	if after == before || v3.hasher.NeedsRehash(after) || !strings.HasPrefix(after, "AQAAAAIAAYag") {
		t.Fatalf("not rehashed to V3/SHA512/100000: %s", after)
	}
	if _, err := v3.SignIn(e.ctx, partnerPortal, "nancy", goodPassword); err != nil {
		t.Fatalf("sign in with the new hash: %v", err)
	}
}

func TestAccountProfileAndEmailConfirmation(t *testing.T) {
	e := newEnv(t, nil)
	acc := e.redeemed(2, partnerPortal, "paul")
	got, err := e.svc.Account(e.ctx, acc.ContactID)
	if err != nil || got.Username != "paul" || !sameSet(got.Roles, []string{"Partners"}) || !got.EmailConfirmed {
		t.Fatalf("Account = %+v, %v", got, err)
	}
	if _, err := e.svc.Account(e.ctx, e.contact(3)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Account of a contact without identity: %v", err)
	}
	// Changing the email address unconfirms it.
	if err := e.svc.UpdateProfile(e.ctx, acc.ContactID, Profile{FirstName: "Paul", LastName: "Cannon-Smith", Email: "paul@new.example", JobTitle: "CEO"}); err != nil {
		t.Fatal(err)
	}
	c := e.row("contact", acc.ContactID)
	if str(c["lastname"]) != "Cannon-Smith" || str(c["emailaddress1"]) != "paul@new.example" || c["adx_identity_emailaddress1confirmed"] != false {
		t.Fatalf("profile %v", c)
	}
	if err := e.svc.UpdateProfile(e.ctx, acc.ContactID, Profile{Email: "not an email"}); !errors.Is(err, ErrNoEmail) {
		t.Fatalf("bad email: %v", err)
	}
	// Confirm the new address by the emailed link, once.
	if err := e.svc.SendEmailConfirmation(e.ctx, partnerPortal, acc.ContactID); err != nil {
		t.Fatal(err)
	}
	mails := e.emailsTo("paul@new.example")
	if len(mails) != 1 || !strings.Contains(mails[0].HTML, "https://partners.contoso.example/confirm-email?token=") || mails[0].RegardingID != acc.ContactID {
		t.Fatalf("confirmation email %+v", mails)
	}
	tok := tokenFrom(t, mails[0])
	if err := e.svc.ResetPassword(e.ctx, tok, "Another-Kettle-7"); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("a confirmation token reset a password: %v", err)
	}
	confirmed, err := e.svc.ConfirmEmail(e.ctx, tok)
	if err != nil || !confirmed.EmailConfirmed || e.row("contact", acc.ContactID)["adx_identity_emailaddress1confirmed"] != true {
		t.Fatalf("ConfirmEmail = %+v, %v", confirmed, err)
	}
	if _, err := e.svc.ConfirmEmail(e.ctx, tok); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("confirmation token used twice: %v", err)
	}
	if err := e.svc.SendEmailConfirmation(e.ctx, partnerPortal, acc.ContactID); err != nil || len(e.emailsTo("paul@new.example")) != 1 {
		t.Fatalf("confirmed address emailed again: %v", err)
	}
	// A token for the old address dies when the address changes.
	if err := e.svc.UpdateProfile(e.ctx, acc.ContactID, Profile{FirstName: "Paul", Email: "paul@third.example"}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SendEmailConfirmation(e.ctx, partnerPortal, acc.ContactID); err != nil {
		t.Fatal(err)
	}
	tok3 := tokenFrom(t, e.emailsTo("paul@third.example")[0])
	if err := e.svc.UpdateProfile(e.ctx, acc.ContactID, Profile{FirstName: "Paul", Email: "paul@fourth.example"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmEmail(e.ctx, tok3); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("token for a replaced address: %v", err)
	}
	e.clock.Add(49 * time.Hour)
	if err := e.svc.SendEmailConfirmation(e.ctx, partnerPortal, acc.ContactID); err != nil {
		t.Fatal(err)
	}
	tok4 := tokenFrom(t, e.emailsTo("paul@fourth.example")[0])
	e.clock.Add(49 * time.Hour)
	if _, err := e.svc.ConfirmEmail(e.ctx, tok4); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("expired confirmation token: %v", err)
	}
}

func TestPasswordReset(t *testing.T) {
	e := newEnv(t, nil)
	acc := e.redeemed(3, partnerPortal, "rene")
	// Unknown addresses: silence, no email.
	before := len(e.em.Outbox())
	for _, addr := range []string{"nobody@example.com", "not an email", str(e.row("contact", e.contact(4))["emailaddress1"])} {
		if err := e.svc.RequestPasswordReset(e.ctx, partnerPortal, addr); err != nil {
			t.Fatalf("%q: %v", addr, err)
		}
	}
	if len(e.em.Outbox()) != before {
		t.Fatal("reset email sent to an unknown address")
	}
	if err := e.svc.RequestPasswordReset(e.ctx, partnerPortal, strings.ToUpper(acc.Email)); err != nil {
		t.Fatal(err)
	}
	mails := e.emailsTo(acc.Email)
	last := mails[len(mails)-1]
	if !strings.Contains(last.HTML, "/reset-password?token=") {
		t.Fatalf("reset email %q", last.HTML)
	}
	tok := tokenFrom(t, last)
	if err := e.svc.ResetPassword(e.ctx, tok, "short"); !errors.As(err, new(*PolicyError)) {
		t.Fatalf("weak new password: %v", err)
	}
	stamp := str(e.row("contact", acc.ContactID)["adx_identity_securitystamp"])
	if err := e.svc.ResetPassword(e.ctx, tok, "Green-Teapot-77"); err != nil {
		t.Fatal(err)
	}
	if str(e.row("contact", acc.ContactID)["adx_identity_securitystamp"]) == stamp {
		t.Fatal("security stamp not renewed")
	}
	if err := e.svc.ResetPassword(e.ctx, tok, "Green-Teapot-78"); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("reset token used twice: %v", err)
	}
	if _, err := e.svc.SignIn(e.ctx, partnerPortal, "rene", goodPassword); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old password still works: %v", err)
	}
	if _, err := e.svc.SignIn(e.ctx, partnerPortal, "rene", "Green-Teapot-77"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if err := e.svc.ResetPassword(e.ctx, "garbage", "Green-Teapot-79"); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("garbage token: %v", err)
	}
	// Without a token secret these operations say so.
	bare, _ := New(e.dv, Config{Portals: e.svc.Portals()})
	if err := bare.RequestPasswordReset(e.ctx, partnerPortal, acc.Email); !errors.Is(err, ErrNotConfigured) {
		t.Fatalf("no secret: %v", err)
	}
}

func TestRegister(t *testing.T) {
	e := newEnv(t, nil)
	// A new address: a contact is created and invited.
	if err := e.svc.Register(e.ctx, RegisterRequest{Portal: partnerPortal, FirstName: "Dana", LastName: "Lee", Email: "dana@example.com", IPAddress: "198.51.100.1"}); err != nil {
		t.Fatal(err)
	}
	var dana map[string]any
	for _, c := range e.em.Rows("contact") {
		if str(c["emailaddress1"]) == "dana@example.com" {
			dana = c
		}
	}
	if dana == nil || str(dana["firstname"]) != "Dana" || num(dana[emulator.ColInviteStatus]) != emulator.InviteSent {
		t.Fatalf("registered contact %v", dana)
	}
	if len(e.invitationsOf(str(dana["contactid"]))) != 1 || len(e.emailsTo("dana@example.com")) != 1 {
		t.Fatal("registration did not invite")
	}
	// Registering again: no second contact, no second email.
	if err := e.svc.Register(e.ctx, RegisterRequest{Portal: partnerPortal, FirstName: "Dana", LastName: "Lee", Email: "DANA@example.com"}); err != nil {
		t.Fatal(err)
	}
	if len(e.emailsTo("dana@example.com")) != 1 {
		t.Fatal("second registration sent a second invitation")
	}
	// A known contact is invited as is.
	known := str(e.row("contact", e.contact(5))["emailaddress1"])
	if err := e.svc.Register(e.ctx, RegisterRequest{Portal: customerPortal, FirstName: "X", LastName: "Y", Email: known}); err != nil {
		t.Fatal(err)
	}
	if len(e.invitationsOf(e.contact(5))) != 1 {
		t.Fatal("known contact not invited")
	}
	// An existing portal user gets a password reset link instead; the
	// answer is the same nil.
	acc := e.redeemed(6, partnerPortal, "scott")
	n := len(e.emailsTo(acc.Email))
	if err := e.svc.Register(e.ctx, RegisterRequest{Portal: partnerPortal, FirstName: "S", LastName: "K", Email: acc.Email}); err != nil {
		t.Fatal(err)
	}
	mails := e.emailsTo(acc.Email)
	if len(mails) != n+1 || !strings.Contains(mails[len(mails)-1].HTML, "/reset-password?token=") {
		t.Fatal("existing user did not get a reset email")
	}
	if err := e.svc.Register(e.ctx, RegisterRequest{Portal: partnerPortal, Email: "nope"}); !errors.Is(err, ErrNoEmail) {
		t.Fatalf("bad email: %v", err)
	}
	if err := e.svc.Register(e.ctx, RegisterRequest{Portal: "Nope", Email: "a@b.example"}); !errors.Is(err, ErrUnknownPortal) {
		t.Fatalf("unknown portal: %v", err)
	}
}
