package portalweb

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/identity"
	"github.com/d365portal/connector/internal/invite"
)

// rowsOf returns the adx_externalidentity rows bound to contact.
func (x *ext) rowsOf(contact string) []map[string]any {
	var out []map[string]any
	for _, r := range x.em.Rows("adx_externalidentity") {
		if strings.EqualFold(fmt.Sprint(r["adx_contactid"]), contact) {
			out = append(out, r)
		}
	}
	return out
}

// state is what a refused sign-in must leave as it was: the Dataverse rows
// it could have written.
func (x *ext) state(contact, invitation string) string {
	c := x.contactRow(x.t, contact)
	inv, _ := x.em.Row("adx_invitation", invitation)
	return fmt.Sprintf("rows=%d user=%v logon=%v stamp=%v redemptions=%v activities=%d", len(x.em.Rows("adx_externalidentity")),
		c["adx_identity_username"], c["adx_identity_logonenabled"], c["adx_identity_securitystamp"], inv["adx_redemptions"],
		len(x.em.Rows("adx_inviteredemption")))
}

// TestExternalRedeemSignOutSignIn: the email's link, "Continue with
// Microsoft" at the emulator's Entra endpoint, the profile, RP-initiated
// sign-out, and signing in again; the adx_externalidentity row read back
// holds the ID token's iss, the oid (provider_key_claim: oid) and the contact.
func TestExternalRedeemSignOutSignIn(t *testing.T) {
	x := newExt(t, extOpts{keyClaim: "oid"})
	contactID, email, oid := x.person(0)
	res := x.invite(t, contactID)
	link := x.emailLink(t, email, invite.InvitationPath)
	b := x.browser()
	page := b.get(local(link)).wantStatus(http.StatusOK)
	checkPage(t, page)
	if got := page.text("form.providers button.provider"); got != "Continue with Microsoft" {
		t.Fatalf("provider button %q", got)
	}
	if page.doc.Find(`form[action="/invitation"]`).Length() != 1 {
		t.Fatal("the password form is missing next to the provider")
	}
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' "+x.stsURL) {
		t.Fatalf("CSP does not let the form go to the provider: %s", csp)
	}
	before := b.cookie(x.sessionCookieName())
	start := b.submit(page, "form.providers", nil)
	if loc := start.header.Get("Location"); strings.Contains(loc, string(res.Code)) || strings.Contains(loc, res.Code.Grouped()) {
		t.Fatalf("the invitation code travels to the provider: %s", loc)
	}
	cb := x.callbackFor(start, "Maria Campbell")
	b.get(cb).wantRedirect("/profile")
	if after := b.cookie(x.sessionCookieName()); after == "" || after == before {
		t.Fatal("the session id was not rotated at sign-in")
	}
	prof := b.get("/profile").wantStatus(http.StatusOK)
	checkPage(t, prof)
	prof.wantText(".notice", "Welcome").wantText("#logins-heading", "Ways to sign in").wantText(".logins", "Microsoft")
	if prof.doc.Find(`form[action="/profile/logins/remove"]`).Length() != 0 {
		t.Fatal("the only way to sign in can be removed")
	}

	rows := x.rowsOf(contactID)
	if len(rows) != 1 || rows[0]["adx_identityprovidername"] != x.issuer || rows[0]["adx_username"] != oid || fmt.Sprint(rows[0]["statecode"]) != "0" {
		t.Fatalf("adx_externalidentity rows %v (want iss %s, username %s)", rows, x.issuer, oid)
	}
	c := x.contactRow(t, contactID)
	if c["adx_identity_username"] != oid || c["adx_identity_passwordhash"] != nil || c["adx_identity_logonenabled"] != true || c["emailaddress1"] != email {
		t.Fatalf("contact %v", c)
	}

	// The callback URL again (a replayed redirect): refused, the session
	// stays signed in, nothing written.
	wantRefusal(t, b.get(cb), http.StatusBadRequest, "expired")
	b.get("/profile").wantStatus(http.StatusOK)
	if len(x.em.Rows("adx_externalidentity")) != 1 {
		t.Fatal("a replayed callback wrote")
	}

	// Sign out: here, then at the provider, which sends the browser back.
	out := b.submit(prof, `form[action="/logout"]`, nil).wantStatus(http.StatusSeeOther)
	endURL, err := url.Parse(out.header.Get("Location"))
	if err != nil || !strings.HasPrefix(endURL.String(), x.stsURL+"/") || endURL.Query().Get("id_token_hint") == "" ||
		endURL.Query().Get("post_logout_redirect_uri") != x.base+"/login" {
		t.Fatalf("sign-out goes to %q", out.header.Get("Location"))
	}
	back, err := x.idp.Get(endURL.String())
	if err != nil {
		t.Fatal(err)
	}
	back.Body.Close()
	if loc, _ := back.Location(); loc == nil || !strings.HasPrefix(loc.String(), x.base+"/login") {
		t.Fatalf("provider sign-out answered %d %v", back.StatusCode, loc)
	}
	b.get("/login").wantText(".notice", "signed out")
	b.get("/profile").wantRedirect("/login?next=%2Fprofile")

	// Sign in again with the provider, which has rotated its signing key
	// meanwhile: the new key is fetched from its JWKS.
	if _, err := x.sts.RotateKey(); err != nil {
		t.Fatal(err)
	}
	lp := b.get("/login").wantStatus(http.StatusOK)
	checkPage(t, lp)
	x.via(b, b.submit(lp, "form.providers", nil), "Maria Campbell").wantRedirect("/profile")
	b.get("/profile").wantStatus(http.StatusOK).wantText("main", email)
	if len(x.em.Rows("adx_externalidentity")) != 1 {
		t.Fatal("signing in again added a row")
	}
}

// TestExternalBadInputsFromTheProvider: cancel and login_required answers,
// a missing or reused state, a replayed authorization code. Each gets a
// page with the request id, nothing in Dataverse, no change to the session,
// and no code or token in the logs.
func TestExternalBadInputsFromTheProvider(t *testing.T) {
	x := newExt(t, extOpts{})
	c1, _, _ := x.person(1)
	c2, _, _ := x.person(2)
	res1 := x.invite(t, c1)
	res2 := x.invite(t, c2)

	// A completed redemption elsewhere leaves a used authorization code.
	other := x.browser()
	op := other.get("/invitation?code=" + string(res2.Code)).wantStatus(http.StatusOK)
	usedCB := x.callbackFor(other.submit(op, "form.providers", nil), "Nancy Anderson")
	other.get(usedCB).wantRedirect("/profile")
	usedCode, _ := url.Parse(usedCB)
	if rows := x.rowsOf(c2); len(rows) != 1 || len(fmt.Sprint(rows[0]["adx_username"])) != 43 || rows[0]["adx_username"] != x.contactRow(t, c2)["adx_identity_username"] {
		t.Fatalf("sub-keyed row %v", rows)
	}

	b := x.browser()
	page := b.get("/invitation?code=" + string(res1.Code)).wantStatus(http.StatusOK)
	want := x.state(c1, res1.Invitation.ID)
	cases := []struct {
		name     string
		callback func(start *resp) string
		status   int
		heading  string
	}{
		{"cancelled at the provider", func(start *resp) string { return x.callbackFor(start, "Cancel") }, http.StatusForbidden, "cancelled"},
		{"login_required", func(start *resp) string {
			return CallbackPath("entra") + "?error=login_required&error_description=AADSTS50058&state=" + url.QueryEscape(stateOf(t, start))
		}, http.StatusForbidden, "cancelled"},
		{"missing state", func(start *resp) string {
			cb, _ := url.Parse(x.callbackFor(start, "Paul Cannon"))
			q := cb.Query()
			q.Del("state")
			return cb.Path + "?" + q.Encode()
		}, http.StatusBadRequest, "expired"},
		{"replayed authorization code", func(start *resp) string {
			return CallbackPath("entra") + "?code=" + url.QueryEscape(usedCode.Query().Get("code")) + "&state=" + url.QueryEscape(stateOf(t, start))
		}, http.StatusBadRequest, "could not complete"},
	}
	var lastCB string
	for _, tc := range cases {
		start := b.submit(page, "form.providers", nil)
		cb := tc.callback(start)
		r := b.get(cb)
		wantRefusal(t, r, tc.status, tc.heading)
		checkPage(t, r)
		if got := x.state(c1, res1.Invitation.ID); got != want {
			t.Fatalf("%s wrote to Dataverse: %s -> %s", tc.name, want, got)
		}
		b.get("/profile").wantRedirect("/login?next=%2Fprofile")
		lastCB = cb
	}
	// The state of a finished (refused) sign-in cannot be used again.
	wantRefusal(t, b.get(lastCB), http.StatusBadRequest, "expired")
	// A callback with no sign-in started at all.
	wantRefusal(t, x.browser().get(CallbackPath("entra")+"?code=abc&state=def"), http.StatusBadRequest, "expired")

	// After all that the invitation still works.
	b.get("/invitation?code=" + string(res1.Code)).wantStatus(http.StatusOK)
	x.via(b, b.submit(page, "form.providers", nil), "Paul Cannon").wantRedirect("/profile")

	logs := x.logs.String()
	for _, secret := range []string{usedCode.Query().Get("code"), "eyJ", extSecret} {
		if secret != "" && strings.Contains(logs, secret) {
			t.Fatalf("logs contain %q", secret)
		}
	}
}

// TestExternalCraftedTokensAndOutages: tokens a real provider would never
// issue, and providers that are down or misconfigured. Local sign-in keeps
// working throughout.
func TestExternalCraftedTokensAndOutages(t *testing.T) {
	sc := startScripted(t)
	other := startScripted(t)
	other.set(func() { other.docIssuer = "https://someone-else.example" })
	slow := startScripted(t)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	slow.set(func() { slow.jwksHang = hang })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "https://" + ln.Addr().String()
	ln.Close()

	x := newExt(t, extOpts{extra: []identity.ProviderConfig{
		sc.config("scripted", nil),
		other.config("otheriss", nil),
		slow.config("slowkeys", func(c *identity.ProviderConfig) {
			c.HTTPClient = &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{TLSClientConfig: slow.srv.Client().Transport.(*http.Transport).TLSClientConfig}}
		}),
		{Name: "down", DisplayName: "Down", Issuer: downURL, ClientID: "c", ClientSecret: "s"},
	}})
	// A local account, to show password sign-in is not affected.
	lc, lemail := x.contact(3)
	x.invite(t, lc)
	lb := x.browser()
	signUp(t, lb, strings.TrimPrefix(local(x.emailLink(t, lemail, invite.InvitationPath)), "/invitation?code="))

	c1, _ := x.contact(1)
	res1 := x.invite(t, c1)
	b := x.browser()
	page := b.get("/invitation?code=" + string(res1.Code)).wantStatus(http.StatusOK)
	if n := page.doc.Find("form.providers button.provider").Length(); n != 5 {
		t.Fatalf("%d provider buttons, want 5", n)
	}
	want := x.state(c1, res1.Invitation.ID)
	follow := func(s *scripted, start *resp) string {
		t.Helper()
		if start.status != http.StatusSeeOther {
			t.Fatalf("start: %d\n%s", start.status, start.body)
		}
		cl := s.srv.Client()
		cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		r, err := cl.Get(start.header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		loc, err := r.Location()
		if err != nil {
			t.Fatal(err)
		}
		return loc.RequestURI()
	}
	submitTo := func(provider string) *resp {
		t.Helper()
		form := url.Values{"csrf_token": {page.doc.Find(`form.providers input[name="csrf_token"]`).AttrOr("value", "")}, "intent": {"redeem"}}
		return b.post(startPrefix+provider, form)
	}
	wrongKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	crafted := []struct {
		name   string
		mutate func(map[string]any)
		sign   func(testing.TB, *scripted, map[string]any) string
	}{
		{"wrong nonce", func(c map[string]any) { c["nonce"] = "not-the-nonce" }, nil},
		{"unknown key", nil, func(t testing.TB, _ *scripted, c map[string]any) string {
			return signWithKey(t, wrongKey, "rotated-away", c)
		}},
		{"wrong aud", func(c map[string]any) { c["aud"] = "someone-else" }, nil},
		{"wrong iss", func(c map[string]any) { c["iss"] = "https://evil.example" }, nil},
		{"expired", func(c map[string]any) {
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		}, nil},
		{"alg none", nil, unsignedToken},
	}
	for _, tc := range crafted {
		sc.set(func() { sc.mutate, sc.signWith = tc.mutate, tc.sign })
		r := b.get(follow(sc, submitTo("scripted")))
		wantRefusal(t, r, http.StatusBadRequest, "could not complete")
		if got := x.state(c1, res1.Invitation.ID); got != want {
			t.Fatalf("%s wrote: %s -> %s", tc.name, want, got)
		}
		b.get("/profile").wantRedirect("/login?next=%2Fprofile")
	}

	// Discovery unreachable, or naming another issuer: refused at the start.
	for _, name := range []string{"down", "otheriss"} {
		r := submitTo(name)
		wantRefusal(t, r, http.StatusServiceUnavailable, "not answering")
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", name)
		}
	}
	// The key set times out: refused at the callback.
	wantRefusal(t, b.get(follow(slow, submitTo("slowkeys"))), http.StatusServiceUnavailable, "not answering")
	if got := x.state(c1, res1.Invitation.ID); got != want {
		t.Fatalf("outages wrote: %s -> %s", want, got)
	}
	// Local sign-in works while providers are down.
	lp := x.browser()
	lpage := lp.get("/login")
	lp.submit(lpage, `form[action="/login"]`, map[string]string{"login": lemail, "password": goodPassword}).wantRedirect("/profile")

	// The scripted provider behaving: redemption works (sub as key, its email).
	sc.set(func() { sc.mutate, sc.signWith = nil, nil })
	b.get(follow(sc, submitTo("scripted"))).wantRedirect("/profile")
	if rows := x.rowsOf(c1); len(rows) != 1 || rows[0]["adx_identityprovidername"] != sc.srv.URL || rows[0]["adx_username"] != "scripted-user-42" {
		t.Fatalf("rows %v", rows)
	}

	logs := x.logs.String()
	for _, s := range append(sc.secrets(), slow.secrets()...) {
		if strings.Contains(logs, s) {
			t.Fatalf("logs contain a code or token %q", s[:min(len(s), 12)])
		}
	}
}

// TestExternalLinkedElsewhereAndEmailMatch: a login already linked to
// another contact redeems the invitation for that contact (or is refused
// when it cannot sign in); with require_email_match the page names the
// invited address, masked; refusals write nothing.
func TestExternalLinkedElsewhereAndEmailMatch(t *testing.T) {
	x := newExt(t, extOpts{service: func(c *invite.Config) { c.Portals[0].RequireEmailMatch = true }})
	x.sts.SetOptionalClaims(extClient, "xms_edov") // Entra's "email domain verified": emails count as verified
	c0, e0, _ := x.person(0)
	c1, e1, _ := x.person(1)
	x.invite(t, c0)
	res1 := x.invite(t, c1)
	b := x.browser()
	p0 := b.get(local(x.emailLink(t, e0, invite.InvitationPath)))
	x.via(b, b.submit(p0, "form.providers", nil), "Maria Campbell").wantRedirect("/profile")

	nb := x.browser()
	p1 := nb.get("/invitation?code=" + string(res1.Code)).wantStatus(http.StatusOK)
	want := x.state(c1, res1.Invitation.ID)
	// Paul's login (verified, his own address) for Nancy's invitation.
	x.person(2)
	r := x.via(nb, nb.submit(p1, "form.providers", nil), "Paul Cannon")
	wantRefusal(t, r, http.StatusForbidden, "another email address")
	masked := invite.MaskEmail(e1)
	r.wantText("main", masked)
	if strings.Contains(r.body, e1) {
		t.Fatal("the refusal shows the whole invited address")
	}
	if got := x.state(c1, res1.Invitation.ID); got != want {
		t.Fatalf("email mismatch wrote: %s -> %s", want, got)
	}

	// Without the email rule, Maria's login on Nancy's invitation signs
	// Maria in and redeems the invitation for her account, as Power Pages
	// does; Nancy's contact gets no identity.
	y := newExt(t, extOpts{})
	d0, f0, _ := y.person(0)
	d1, _, _ := y.person(1)
	y.invite(t, d0)
	r1 := y.invite(t, d1)
	yb := y.browser()
	yp := yb.get(local(y.emailLink(t, f0, invite.InvitationPath)))
	y.via(yb, yb.submit(yp, "form.providers", nil), "Maria Campbell").wantRedirect("/profile")
	zb := y.browser()
	zp := zb.get("/invitation?code=" + string(r1.Code))
	y.via(zb, zb.submit(zp, "form.providers", nil), "Maria Campbell").wantRedirect("/profile")
	zb.get("/profile").wantStatus(http.StatusOK).wantText(".notice", "already belongs to your account")
	if c := y.contactRow(t, d1); c["adx_identity_username"] != nil {
		t.Fatalf("the invited contact got an identity: %v", c["adx_identity_username"])
	}
	if inv, _ := y.em.Row("adx_invitation", r1.Invitation.ID); fmt.Sprint(inv["adx_redemptions"]) != "1" || !strings.EqualFold(fmt.Sprint(inv["adx_redeemedcontact"]), d0) {
		t.Fatalf("invitation not redeemed for Maria: %v %v", inv["adx_redemptions"], inv["adx_redeemedcontact"])
	}
	if n := len(y.em.Rows("adx_externalidentity")); n != 1 {
		t.Fatalf("external identity rows: %d, want 1", n)
	}
	// A holder that cannot sign in is Power Pages' LoginAlreadyAssociated:
	// refused, said so, nothing written, the invitation offered again.
	d2, _, _ := y.person(2)
	r2 := y.invite(t, d2)
	if _, err := y.dv.Update(y.ctx, "contacts", d0, map[string]any{"adx_identity_logonenabled": false}, nil); err != nil {
		t.Fatal(err)
	}
	wb := y.browser()
	wp := wb.get("/invitation?code=" + string(r2.Code))
	ywant := y.state(d2, r2.Invitation.ID)
	wantRefusal(t, y.via(wb, wb.submit(wp, "form.providers", nil), "Maria Campbell"), http.StatusConflict, "already linked")
	if got := y.state(d2, r2.Invitation.ID); got != ywant {
		t.Fatalf("LoginAlreadyAssociated wrote: %s -> %s", ywant, got)
	}
	if href := wb.get("/invitation?code=" + string(r2.Code)).status; href != http.StatusOK {
		t.Fatalf("invitation after refusal: %d", href)
	}
	// A login linked to nobody cannot just sign in.
	nobody := y.browser()
	lp := nobody.get("/login")
	y.person(5)
	wantRefusal(t, y.via(nobody, nobody.submit(lp, "form.providers", nil), "Scott Konersmann"), http.StatusForbidden, "No account")
}

// TestExternalProfileLinkAndUnlink: link a second provider from the
// profile, remove one, and the last one stays.
func TestExternalProfileLinkAndUnlink(t *testing.T) {
	sc := startScripted(t)
	x := newExt(t, extOpts{extra: []identity.ProviderConfig{sc.config("scripted", nil)}})
	c0, e0, _ := x.person(0)
	x.invite(t, c0)
	b := x.browser()
	p := b.get(local(x.emailLink(t, e0, invite.InvitationPath)))
	x.via(b, b.submit(p, `form.providers`, nil), "Maria Campbell").wantRedirect("/profile")
	prof := b.get("/profile").wantStatus(http.StatusOK)
	if got := prof.text(`#logins-heading ~ form.providers button`); got != "Link Scripted scripted" {
		t.Fatalf("link buttons %q", got)
	}
	start := b.post(startPrefix+"scripted", url.Values{"csrf_token": {prof.doc.Find(`form.providers input[name="csrf_token"]`).AttrOr("value", "")}, "intent": {"link"}})
	cl := sc.srv.Client()
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	ar, err := cl.Get(start.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	ar.Body.Close()
	loc, _ := ar.Location()
	b.get(loc.RequestURI()).wantRedirect("/profile")
	prof = b.get("/profile").wantText(".notice", "linked")
	if n := prof.doc.Find(".logins li").Length(); n != 2 || len(x.rowsOf(c0)) != 2 {
		t.Fatalf("%d logins listed, %d rows", n, len(x.rowsOf(c0)))
	}
	if prof.doc.Find(`form.providers`).Length() != 0 {
		t.Fatal("link buttons offered for providers already linked")
	}
	// Remove Microsoft; the scripted login stays and cannot be removed.
	b.submit(prof, `form[action="/profile/logins/remove"]`, nil).wantRedirect("/profile")
	prof = b.get("/profile").wantText(".notice", "removed")
	rows := x.rowsOf(c0)
	if len(rows) != 1 || rows[0]["adx_identityprovidername"] != sc.srv.URL {
		t.Fatalf("rows after removal %v", rows)
	}
	if prof.doc.Find(`form[action="/profile/logins/remove"]`).Length() != 0 {
		t.Fatal("the last login offers removal")
	}
	csrf := prof.doc.Find(`form[action="/logout"] input[name="csrf_token"]`).AttrOr("value", "")
	b.post("/profile/logins/remove", url.Values{"csrf_token": {csrf}, "login_id": {fmt.Sprint(rows[0]["adx_externalidentityid"])}}).wantRedirect("/profile")
	b.get("/profile").wantText(".notice", "only way left")
	if len(x.rowsOf(c0)) != 1 {
		t.Fatal("the last login was removed")
	}
	// Signing in with the remaining login reaches the account; the
	// removed one does not.
	nb := x.browser()
	x.via(nb, nb.submit(nb.get("/login"), "form.providers", nil), "Maria Campbell").wantStatus(http.StatusForbidden)
}

// TestExternalLocalLoginDisabled: provider buttons instead of the password
// forms, whose routes answer 404.
func TestExternalLocalLoginDisabled(t *testing.T) {
	x := newExt(t, extOpts{localDisabled: true})
	c0, e0, _ := x.person(0)
	x.invite(t, c0)
	b := x.browser()
	page := b.get(local(x.emailLink(t, e0, invite.InvitationPath))).wantStatus(http.StatusOK)
	checkPage(t, page)
	if page.doc.Find(`form[action="/invitation"]`).Length() != 0 || page.doc.Find("form.providers").Length() != 1 {
		t.Fatal("invitation page still offers a password")
	}
	lp := b.get("/login").wantStatus(http.StatusOK)
	if lp.doc.Find(`form[action="/login"]`).Length() != 0 || lp.doc.Find(`a[href="/forgot-password"]`).Length() != 0 {
		t.Fatal("sign-in page still offers a password")
	}
	csrf := lp.doc.Find(`input[name="csrf_token"]`).AttrOr("value", "")
	b.post("/login", url.Values{"csrf_token": {csrf}, "login": {e0}, "password": {goodPassword}}).wantStatus(http.StatusNotFound)
	b.get("/forgot-password").wantStatus(http.StatusNotFound)
	x.via(b, b.submit(page, "form.providers", nil), "Maria Campbell").wantRedirect("/profile")
}

// TestExternalParallelRedemptions: 50 browsers redeem one single-use code
// with 50 different people at once; exactly one account results.
func TestExternalParallelRedemptions(t *testing.T) {
	x := newExt(t, extOpts{})
	c0, _ := x.contact(0)
	res := x.invite(t, c0)
	const n = 50
	cbs := make([]string, n)
	browsers := make([]*browser, n)
	for i := range n {
		x.sts.AddDemoUser(fmt.Sprintf("Racer %02d", i), fmt.Sprintf("racer%02d@example.org", i), "")
		browsers[i] = x.browser()
		page := browsers[i].get("/invitation?code=" + string(res.Code)).wantStatus(http.StatusOK)
		cbs[i] = x.callbackFor(browsers[i].submit(page, "form.providers", nil), fmt.Sprintf("Racer %02d", i))
	}
	statuses, locations := make([]int, n), make([]string, n)
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-startGate
			req, _ := http.NewRequest(http.MethodGet, x.ts.URL+cbs[i], nil)
			r, err := browsers[i].c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			r.Body.Close()
			statuses[i] = r.StatusCode
			locations[i] = r.Header.Get("Location")
		})
	}
	close(startGate)
	wg.Wait()
	wins := 0
	for i, st := range statuses {
		switch {
		case st == http.StatusSeeOther && locations[i] == "/profile":
			wins++
		case st == http.StatusGone, st == http.StatusSeeOther && locations[i] == "/login":
			// used up, or the invitee already has the account the winner made
		default:
			t.Errorf("browser %d: status %d", i, st)
		}
	}
	inv, _ := x.em.Row("adx_invitation", res.Invitation.ID)
	if wins != 1 || len(x.em.Rows("adx_externalidentity")) != 1 || fmt.Sprint(inv["adx_redemptions"]) != "1" || len(x.rowsOf(c0)) != 1 {
		t.Fatalf("wins %d, identity rows %d, redemptions %v", wins, len(x.em.Rows("adx_externalidentity")), inv["adx_redemptions"])
	}
}

// TestExternalRefusalsMapToPages: every refusal of the external flows has
// its own page, never the internal-error one.
func TestExternalRefusalsMapToPages(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		key    string
	}{
		{invite.ErrNoEmail, http.StatusBadRequest, "no_email"},
		{invite.ErrUsernameTaken, http.StatusConflict, "login_taken"},
		{invite.ErrLoginAlreadyAssociated, http.StatusConflict, "login_taken"},
		{invite.ErrNoAccount, http.StatusForbidden, "no_account"},
		{invite.ErrAccountDisabled, http.StatusForbidden, "account_disabled"},
		{&invite.LockedOutError{Until: time.Now().Add(time.Hour)}, http.StatusForbidden, "account_locked"},
		{invite.ErrEmailInUse, http.StatusConflict, "email_in_use"},
		{&invite.EmailMismatchError{Invited: "a••@b.example", Verified: true}, http.StatusForbidden, "email_mismatch"},
		{&invite.EmailMismatchError{}, http.StatusForbidden, "email_unverified"},
		{identity.ErrJWKSUnavailable, http.StatusServiceUnavailable, "provider_unavailable"},
		{identity.ErrNonceMismatch, http.StatusBadRequest, "signin_failed"},
		{identity.ErrStateReused, http.StatusBadRequest, "signin_expired"},
		{identity.ErrAccessDenied, http.StatusForbidden, "signin_denied"},
	} {
		e := classify(fmt.Errorf("wrapped: %w", tc.err))
		if e.Status != tc.status || e.Key != tc.key || !e.ShowID {
			t.Errorf("%v: %d %s (id shown %v), want %d %s", tc.err, e.Status, e.Key, e.ShowID, tc.status, tc.key)
		}
	}
}
