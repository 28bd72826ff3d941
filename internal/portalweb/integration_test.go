package portalweb

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/invite"
)

// TestLiveJourney walks the whole portal against the real service and the
// emulator: the emailed link, sign-up, profile edits, email confirmation,
// sign-out and sign-in, and a password reset, checking Dataverse after each
// step.
func TestLiveJourney(t *testing.T) {
	l := newLive(t, liveOpts{})
	contactID, email := l.contact(0)
	res := l.invite(t, contactID)
	link := l.emailLink(t, email, invite.InvitationPath)
	if !strings.HasPrefix(link, l.ts.URL) {
		t.Fatalf("link %q does not point at the site %s", link, l.ts.URL)
	}
	b := l.browser()
	page := b.get(local(link)).wantStatus(http.StatusOK)
	checkPage(t, page)
	page.wantText("main", email).wantText("main", "Partners")
	if res.Invitation.ContactName != "" {
		page.wantText("main", res.Invitation.ContactName)
	}
	// Looking does not consume.
	b.get(local(link)).wantStatus(http.StatusOK)

	r := b.submit(page, `form[method="post"][action="/invitation"]`, map[string]string{"password": "short", "confirm_password": "short"})
	r.wantStatus(http.StatusUnprocessableEntity).wantText("#password-error", "stronger")
	b.submit(page, `form[method="post"][action="/invitation"]`, map[string]string{"password": goodPassword, "confirm_password": goodPassword}).
		wantRedirect("/profile")
	prof := b.get("/profile").wantStatus(http.StatusOK)
	// Redeeming the emailed link proves the address.
	prof.wantText(".notice", "Welcome").wantText("main", email).wantText("main", "Confirmed")
	row := l.contactRow(t, contactID)
	if row["adx_identity_username"] != email || row["adx_identity_logonenabled"] != true {
		t.Fatalf("identity not written: %v %v", row["adx_identity_username"], row["adx_identity_logonenabled"])
	}

	// Edit the profile.
	b.submit(prof, `form[action="/profile"]`, map[string]string{"phone": "+1 425 555 0199", "job_title": "Buyer"}).wantRedirect("/profile")
	prof = b.get("/profile").wantText(".notice", "saved")
	row = l.contactRow(t, contactID)
	if row["jobtitle"] != "Buyer" || row["mobilephone"] != "+1 425 555 0199" {
		t.Fatalf("profile not in Dataverse: %v %v", row["jobtitle"], row["mobilephone"])
	}

	// Confirm the email address through the emailed link, after someone
	// in CRM cleared the flag.
	if _, err := l.dv.Update(l.ctx, "contacts", contactID, map[string]any{"adx_identity_emailaddress1confirmed": false}, nil); err != nil {
		t.Fatal(err)
	}
	prof = b.get("/profile").wantText("main", "Not confirmed")
	b.submit(prof, `form[action="/profile/confirm-email"]`, nil).wantRedirect("/profile")
	confirm := l.emailLink(t, email, invite.ConfirmEmailPath)
	cp := b.get(local(confirm)).wantStatus(http.StatusOK)
	if l.contactRow(t, contactID)["adx_identity_emailaddress1confirmed"] == true {
		t.Fatal("GET confirmed the address")
	}
	b.submit(cp, `form[action="/confirm-email"]`, nil).wantRedirect("/profile")
	prof = b.get("/profile").wantText("main", "Confirmed")
	if l.contactRow(t, contactID)["adx_identity_emailaddress1confirmed"] != true {
		t.Fatal("address not confirmed in Dataverse")
	}

	// Sign out, sign in with the email address.
	b.submit(prof, `form[action="/logout"]`, nil).wantRedirect("/login")
	b.get("/profile").wantRedirect("/login?next=%2Fprofile")
	lp := b.get("/login")
	b.submit(lp, `form[method="post"]`, map[string]string{"login": email, "password": goodPassword}).wantRedirect("/profile")

	// A second browser resets the password; the first session ends.
	other := l.browser()
	fp := other.get("/forgot-password")
	other.submit(fp, `form[method="post"]`, map[string]string{"email": email}).wantRedirect("/forgot-password/sent")
	reset := l.emailLink(t, email, invite.ResetPasswordPath)
	rp := other.get(local(reset)).wantStatus(http.StatusOK)
	const newPassword = "Green-Teapot-77"
	other.submit(rp, `form[method="post"]`, map[string]string{"password": newPassword, "confirm_password": newPassword}).wantRedirect("/login")
	b.get("/profile").wantRedirect("/login")
	lp = other.get("/login")
	other.submit(lp, `form[method="post"]`, map[string]string{"login": email, "password": goodPassword}).wantStatus(http.StatusUnprocessableEntity)
	other.submit(lp, `form[method="post"]`, map[string]string{"login": email, "password": newPassword}).wantRedirect("/profile")
	// The reset link works once.
	b2 := l.browser()
	rp = b2.get(local(reset))
	b2.submit(rp, `form[method="post"]`, map[string]string{"password": "Third-Password-9", "confirm_password": "Third-Password-9"}).
		wantStatus(http.StatusBadRequest).wantText("h1", "invalid or has expired")

	// The invitation link is used up now.
	l.browser().get(local(link)).wantStatus(http.StatusGone).wantText("h1", "already been used")
}

func TestLiveCodeStates(t *testing.T) {
	l := newLive(t, liveOpts{})
	// Manual entry: grouped, lower case, with spaces.
	c1, _ := l.contact(1)
	res := l.invite(t, c1)
	b := l.browser()
	form := b.get("/invitation")
	typed := " " + strings.ToLower(res.Code.Grouped()) + " "
	b.submit(form, `form[action="/invitation"]`, map[string]string{"code": typed}).wantStatus(http.StatusOK).wantText("h1", "You are invited")
	// Power Pages' link shape.
	b.get("/Register?invitation=" + string(res.Code)).wantStatus(http.StatusOK)

	// Revoked.
	c2, _ := l.contact(2)
	rev := l.invite(t, c2)
	if err := l.svc.Revoke(l.ctx, rev.Invitation.ID); err != nil {
		t.Fatal(err)
	}
	b.get("/invitation?code="+string(rev.Code)).wantStatus(http.StatusGone).wantText("h1", "withdrawn")

	// Unknown.
	b.get("/invitation?code=ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ").wantStatus(http.StatusNotFound).wantText("h1", "do not recognise")

	// Existing user: the contact got a portal identity some other way.
	c3, _ := l.contact(3)
	ex := l.invite(t, c3)
	if _, err := l.dv.Update(l.ctx, "contacts", c3, map[string]any{"adx_identity_username": "already-here"}, nil); err != nil {
		t.Fatal(err)
	}
	b.get("/invitation?code=" + string(ex.Code)).wantRedirect("/login")

	// Expired: the service's clock moves past the 30-day default.
	l.clock.Add(31 * 24 * time.Hour)
	r := b.get("/invitation?code=" + string(res.Code)).wantStatus(http.StatusGone)
	checkPage(t, r)
	r.wantText("h1", "expired")
	// Posting an expired code fails the same way.
	l.clock.Add(-31 * 24 * time.Hour)
	page := b.get("/invitation?code=" + string(res.Code)).wantStatus(http.StatusOK)
	l.clock.Add(31 * 24 * time.Hour)
	b.submit(page, `form[method="post"]`, map[string]string{"password": goodPassword, "confirm_password": goodPassword}).
		wantStatus(http.StatusGone).wantText("h1", "expired")
}

func TestLiveSelfRegistration(t *testing.T) {
	l := newLive(t, liveOpts{})
	b := l.browser()
	p := b.get("/register")
	const email = "new.person@fabrikam.example"
	b.submit(p, `form[method="post"]`, map[string]string{"first_name": "New", "last_name": "Person", "email": email}).wantRedirect("/register/sent")
	link := l.emailLink(t, email, invite.InvitationPath)
	page := b.get(local(link)).wantStatus(http.StatusOK).wantText("main", "New Person")
	b.submit(page, `form[method="post"]`, map[string]string{"password": goodPassword, "confirm_password": goodPassword}).wantRedirect("/profile")

	// Registering a known portal user's address looks exactly the same.
	known := l.browser()
	kp := known.get("/register")
	r1 := known.submit(kp, `form[method="post"]`, map[string]string{"first_name": "New", "last_name": "Person", "email": email})
	unknown := l.browser()
	up := unknown.get("/register")
	r2 := unknown.submit(up, `form[method="post"]`, map[string]string{"first_name": "Some", "last_name": "One", "email": "some.one@fabrikam.example"})
	if r1.status != r2.status || r1.header.Get("Location") != r2.header.Get("Location") || r1.body != r2.body {
		t.Fatalf("known and unknown addresses answer differently: %d %q / %d %q", r1.status, r1.header.Get("Location"), r2.status, r2.header.Get("Location"))
	}
}

func TestLiveLockout(t *testing.T) {
	l := newLive(t, liveOpts{})
	contactID, email := l.contact(4)
	l.invite(t, contactID)
	b := l.browser()
	signUp(t, b, strings.TrimPrefix(local(l.emailLink(t, email, invite.InvitationPath)), "/invitation?code="))
	lb := l.browser()
	lp := lb.get("/login")
	for range 3 {
		lb.submit(lp, `form[method="post"]`, map[string]string{"login": email, "password": "Wrong-Password-1"}).
			wantStatus(http.StatusUnprocessableEntity)
	}
	r := lb.submit(lp, `form[method="post"]`, map[string]string{"login": email, "password": goodPassword}).wantStatus(http.StatusUnprocessableEntity)
	r.wantText(".error-summary", "locked").wantText(".error-summary", "10 minutes")
	row := l.contactRow(t, contactID)
	if row["adx_identity_lockoutenddate"] == nil {
		t.Fatal("lockout end not written to the contact")
	}
	l.clock.Add(11 * time.Minute)
	lb.submit(lp, `form[method="post"]`, map[string]string{"login": email, "password": goodPassword}).wantRedirect("/profile")
}

func TestLiveDataverseOutage(t *testing.T) {
	l := newLive(t, liveOpts{})
	contactID, email := l.contact(5)
	l.invite(t, contactID)
	link := local(l.emailLink(t, email, invite.InvitationPath))
	b := l.browser()
	page := b.get(link).wantStatus(http.StatusOK)
	_ = l.em.Close()
	r := b.get(link).wantStatus(http.StatusServiceUnavailable)
	checkPage(t, r)
	r.wantText("h1", "unavailable")
	b.submit(page, `form[method="post"]`, map[string]string{"password": goodPassword, "confirm_password": goodPassword}).
		wantStatus(http.StatusServiceUnavailable)
	for _, leak := range []string{"dial", "refused", "127.0.0.1", "dataverse"} {
		if strings.Contains(strings.ToLower(r.text("main")), leak) {
			t.Fatalf("outage page shows %q", leak)
		}
	}
}
