package portalweb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/d365portal/connector/internal/invite"
)

func fakeSite(t *testing.T, mutate func(*Config), opts ...harnessOpts) (*harness, *fakeAccounts) {
	t.Helper()
	f := newFakeAccounts(testPortals()...)
	return newHarness(t, f, mutate, opts...), f
}

// checkPage asserts what every page must have: a language, a title with
// the portal's name, one h1, every visible input labelled, the stylesheet,
// and the security headers.
func checkPage(t *testing.T, r *resp) {
	t.Helper()
	lang, _ := r.doc.Find("html").Attr("lang")
	if lang == "" {
		t.Errorf("%s: <html> has no lang", r.url)
	}
	if title := r.text("title"); !strings.Contains(title, testPortal) {
		t.Errorf("%s: title %q lacks the portal name", r.url, title)
	}
	if n := r.doc.Find("h1").Length(); n != 1 {
		t.Errorf("%s: %d h1 elements", r.url, n)
	}
	r.doc.Find("input, select, textarea").Each(func(_ int, in *goquery.Selection) {
		if in.AttrOr("type", "") == "hidden" {
			return
		}
		id := in.AttrOr("id", "")
		if id == "" || r.doc.Find(`label[for="`+id+`"]`).Length() != 1 {
			t.Errorf("%s: input %q has no label", r.url, in.AttrOr("name", ""))
		}
		if in.AttrOr("aria-invalid", "") == "true" && r.doc.Find("#"+id+"-error").Length() != 1 {
			t.Errorf("%s: invalid input %q has no error message", r.url, id)
		}
	})
	r.doc.Find(".error-summary a").Each(func(_ int, a *goquery.Selection) {
		href := a.AttrOr("href", "")
		if r.doc.Find(href).Length() != 1 {
			t.Errorf("%s: error summary links to missing %s", r.url, href)
		}
	})
	if r.doc.Find(`link[rel="stylesheet"]`).Length() != 1 || r.doc.Find("script").Length() != 0 || r.doc.Find("[style]").Length() != 0 {
		t.Errorf("%s: want one stylesheet, no script, no inline style", r.url)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
		if r.header.Get(h) == "" {
			t.Errorf("%s: missing %s", r.url, h)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "script-src") && !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("%s: weak CSP %q", r.url, csp)
	}
}

func TestEveryGETPageRenders(t *testing.T) {
	h, f := fakeSite(t, nil)
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	b := h.browser()
	for _, path := range []string{
		"/invitation", "/invitation?code=" + code, "/Register?invitation=" + code, "/register?invitation=" + code,
		"/register", "/register/sent", "/login", "/forgot-password", "/forgot-password/sent",
		"/reset-password?token=abc", "/confirm-email?token=abc", "/nope",
	} {
		t.Run(path, func(t *testing.T) {
			r := b.get(path)
			if path == "/nope" {
				r.wantStatus(http.StatusNotFound)
			} else {
				r.wantStatus(http.StatusOK)
			}
			checkPage(t, r)
		})
	}
	// Signed-in pages.
	signUp(t, b, code)
	checkPage(t, b.get("/profile").wantStatus(http.StatusOK))
}

// signUp redeems code through the forms and returns the profile page.
func signUp(t *testing.T, b *browser, code string) *resp {
	t.Helper()
	page := b.get("/invitation?code=" + url.QueryEscape(code)).wantStatus(http.StatusOK)
	r := b.submit(page, `form[action="/invitation"][method="post"]`, map[string]string{"password": goodPassword, "confirm_password": goodPassword})
	r.wantRedirect("/profile")
	return b.get("/profile").wantStatus(http.StatusOK)
}

func TestInvitationShowsInviteeAndNeverConsumes(t *testing.T) {
	h, f := fakeSite(t, nil)
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	b := h.browser()
	for range 3 {
		r := b.get("/invitation?code=" + code).wantStatus(http.StatusOK)
		r.wantText("h1", testPortal).wantText("main", "Ada Lovelace").wantText("main", "ada@example.com")
		if v := r.doc.Find("#username").AttrOr("value", ""); v != "ada@example.com" {
			t.Fatalf("username defaults to %q, want the email", v)
		}
		if got := r.header.Get("Referrer-Policy"); got != "no-referrer" {
			t.Fatalf("Referrer-Policy %q on a page with a code in its URL", got)
		}
	}
	if n := f.called("Redeem"); n != 0 {
		t.Fatalf("GET redeemed %d times", n)
	}
}

func TestRedeemStartsNewSessionAndRedirects(t *testing.T) {
	h, f := fakeSite(t, nil)
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	b := h.browser()
	page := b.get("/invitation?code=" + code)
	before := b.cookie(h.sessionCookieName())
	if before == "" {
		t.Fatal("the sign-up form did not start a session for its CSRF token")
	}
	r := b.submit(page, `form[method="post"][action="/invitation"]`, map[string]string{"password": goodPassword, "confirm_password": goodPassword})
	r.wantRedirect("/profile")
	after := b.cookie(h.sessionCookieName())
	if after == "" || after == before {
		t.Fatalf("session token not renewed on redemption (before %q after %q)", before, after)
	}
	// The pre-redemption token is gone from Redis: no fixation.
	if n, _ := h.rdb.Exists(context.Background(), "test:session:"+hashToken(before)).Result(); n != 0 {
		t.Fatal("old session still in Redis")
	}
	if n, _ := h.rdb.Exists(context.Background(), "test:session:"+hashToken(after)).Result(); n != 1 {
		t.Fatal("new session not in Redis under the token's hash")
	}
	p := b.get("/profile").wantStatus(http.StatusOK)
	p.wantText(".notice", "Welcome").wantText("main", "ada@example.com")
	if got := f.redeemed[0]; got.Username != "ada@example.com" || got.Password != goodPassword || got.IPAddress != "127.0.0.1" {
		t.Fatalf("redeem request %+v", got)
	}
	// The code is now used up: the link says so.
	b2 := h.browser()
	b2.get("/invitation?code="+code).wantStatus(http.StatusGone).wantText("h1", "already been used")
}

func TestRedeemFormErrors(t *testing.T) {
	h, f := fakeSite(t, func(c *Config) {
		c.Portals = []invite.Portal{{Name: testPortal, BaseURL: "https://p.example", Terms: "https://p.example/terms"}}
	})
	f.portals[0].Terms = "https://p.example/terms"
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	f.accounts["other"] = &invite.Account{ContactID: "other", Username: "taken"}
	b := h.browser()
	page := b.get("/invitation?code=" + code)
	if page.doc.Find(`input[type="checkbox"]#terms[required]`).Length() != 1 || page.doc.Find(`a[href="https://p.example/terms"]`).Length() != 1 {
		t.Fatal("terms checkbox with link missing")
	}
	cases := []struct {
		name   string
		values map[string]string
		field  string
		msg    string
	}{
		{"mismatch", map[string]string{"password": goodPassword, "confirm_password": "other", "terms": "on"}, "confirm-password", "do not match"},
		{"missing", map[string]string{"password": "", "confirm_password": "", "terms": "on"}, "password", "required"},
		{"weak", map[string]string{"password": "password", "confirm_password": "password", "terms": "on"}, "password", "stronger"},
		{"taken", map[string]string{"username": "taken", "password": goodPassword, "confirm_password": goodPassword, "terms": "on"}, "username", "already taken"},
		{"terms", map[string]string{"password": goodPassword, "confirm_password": goodPassword}, "terms", "accept the terms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := b.submit(page, `form[method="post"]`, tc.values).wantStatus(http.StatusUnprocessableEntity)
			checkPage(t, r)
			r.wantText("#"+tc.field+"-error", tc.msg)
			if r.doc.Find(`.error-summary a[href="#`+tc.field+`"]`).Length() != 1 {
				t.Fatalf("summary does not link to #%s", tc.field)
			}
			if r.doc.Find(`input[type="password"][value]`).Length() != 0 {
				t.Fatal("password echoed back")
			}
			if !strings.HasPrefix(r.text("title"), "Error:") {
				t.Fatalf("title %q does not announce the error", r.text("title"))
			}
		})
	}
}

func TestCodeProblemPages(t *testing.T) {
	h, f := fakeSite(t, nil)
	cases := []struct {
		err     error
		status  int
		heading string
		action  string
	}{
		{invite.ErrCodeExpired, http.StatusGone, "expired", "/register"},
		{invite.ErrCodeRevoked, http.StatusGone, "withdrawn", "/register"},
		{invite.ErrCodeUsedUp, http.StatusGone, "already been used", "/forgot-password"},
		{invite.ErrCodeSuperseded, http.StatusGone, "newer invitation", "/login"},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		code := f.addInvitation(testPortal, "c-"+tc.heading, "Ada", "Lovelace", "ada@example.com")
		f.setCodeErr(code, fmt.Errorf("lookup: %w", tc.err))
		r := h.browser().get("/invitation?code=" + code).wantStatus(tc.status)
		checkPage(t, r)
		r.wantText("h1", tc.heading)
		if r.doc.Find(`.actions a[href="`+tc.action+`"]`).Length() != 1 {
			t.Errorf("%s page lacks the next step %s", tc.heading, tc.action)
		}
		if r.header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s page leaks its URL in Referer", tc.heading)
		}
		seen[r.heading()] = true
	}
	// Unknown: the page offers the code box again.
	r := h.browser().get("/invitation?code=NOPE-NOPE").wantStatus(http.StatusNotFound)
	r.wantText("h1", "do not recognise")
	if r.doc.Find(`form[method="get"][action="/invitation"] input[name="code"]`).Length() != 1 {
		t.Fatal("unknown-code page has no code box")
	}
	seen[r.heading()] = true
	if len(seen) != 5 {
		t.Fatalf("pages are not distinct: %v", seen)
	}
	// A code too long to be one is refused without a lookup.
	calls := f.called("Lookup")
	h.browser().get("/invitation?code=" + strings.Repeat("A", 500)).wantStatus(http.StatusNotFound)
	if f.called("Lookup") != calls {
		t.Fatal("oversized code was looked up")
	}
}

func TestManualEntryAndLinkShapes(t *testing.T) {
	h, f := fakeSite(t, nil)
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	grouped := strings.ToLower(invite.Code(code).Grouped())
	b := h.browser()
	form := b.get("/invitation").wantStatus(http.StatusOK)
	form.wantText("label[for=code]", "Invitation code")
	r := b.submit(form, `form[action="/invitation"]`, map[string]string{"code": "  " + grouped + " "}).wantStatus(http.StatusOK)
	r.wantText("main", "Ada Lovelace")
	// The hidden code carried to the POST is what the person typed; the
	// service normalises it.
	if v := r.doc.Find(`input[name="code"]`).AttrOr("value", ""); !strings.EqualFold(strings.TrimSpace(v), grouped) {
		t.Fatalf("hidden code %q", v)
	}
	for _, p := range []string{"/Register?invitation=" + code, "/register?invitation=" + code, "/register/?invitation=" + code,
		"/Register/?invitation=" + code, "/invitation/?code=" + code} {
		b.get(p).wantStatus(http.StatusOK).wantText("main", "Ada Lovelace")
	}
	b.get("/Register").wantStatus(http.StatusOK).wantText("h1", "Enter your invitation code")
}

func TestExistingUserRedirect(t *testing.T) {
	h, f := fakeSite(t, func(c *Config) {
		c.Portals = []invite.Portal{{Name: testPortal, BaseURL: "https://p.example", ExistingUserPage: "https://partners.contoso.example/SignIn"}}
	})
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	f.invitations[code].ContactHasIdentity = true
	b := h.browser()
	b.get("/invitation?code=" + code).wantRedirect("https://partners.contoso.example/SignIn")
	// The configured origin is allowed as a form target (the redirect after
	// the manual code form), nothing else is.
	csp := b.get("/invitation").header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "form-action 'self' https://partners.contoso.example;") {
		t.Fatalf("CSP %q", csp)
	}
}

func TestHTMLInjection(t *testing.T) {
	h, f := fakeSite(t, nil)
	evil := `<script>alert(1)</script><img src=x onerror=alert(2)>"'`
	code := f.addInvitation(testPortal, "c1", evil, "Lovelace", "ada@example.com")
	f.invitations[code].Roles = []string{evil}
	b := h.browser()
	pages := []*resp{
		b.get("/invitation?code=" + code),
		b.get("/invitation?code=" + url.QueryEscape(evil)),
		b.get("/login?next=" + url.QueryEscape(`"><script>alert(3)</script>`)),
		b.get("/register?lang=" + url.QueryEscape(evil)),
	}
	reg := b.get("/register")
	pages = append(pages, b.submit(reg, `form[method="post"]`, map[string]string{"first_name": evil, "last_name": evil, "email": evil}))
	for _, r := range pages {
		if r.doc.Find("script").Length() != 0 || r.doc.Find("img").Length() != 0 || r.doc.Find("[onerror]").Length() != 0 {
			t.Fatalf("%s: markup injected:\n%s", r.url, r.body)
		}
		if strings.Contains(r.body, "<script>") {
			t.Fatalf("%s: raw <script> in body", r.url)
		}
	}
	// The evil name is shown, as text.
	if !strings.Contains(pages[0].text("main"), "<script>alert(1)</script>") {
		t.Fatal("name not shown as text")
	}
}

func TestCSRF(t *testing.T) {
	h, f := fakeSite(t, nil)
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	b := h.browser()
	page := b.get("/invitation?code=" + code)
	token := page.doc.Find(`input[name="csrf_token"]`).AttrOr("value", "")
	if len(token) < 40 {
		t.Fatalf("csrf token %q", token)
	}
	good := url.Values{"csrf_token": {token}, "code": {code}, "password": {goodPassword}, "confirm_password": {goodPassword}}
	without := url.Values{"code": {code}, "password": {goodPassword}, "confirm_password": {goodPassword}}
	wrong := url.Values{"csrf_token": {token[:len(token)-2] + "xx"}, "code": {code}, "password": {goodPassword}, "confirm_password": {goodPassword}}

	b.post("/invitation", without).wantStatus(http.StatusForbidden).wantText("h1", "expired")
	b.post("/invitation", wrong).wantStatus(http.StatusForbidden)
	// Another visitor's token is worthless in this session.
	other := h.browser()
	other.get("/login")
	b.post("/login", url.Values{"csrf_token": {other.cookie("x")}, "login": {"a"}, "password": {"b"}}).wantStatus(http.StatusForbidden)
	// Cross-origin requests are refused even with the right token.
	b.post("/invitation", good, "Sec-Fetch-Site", "cross-site").wantStatus(http.StatusForbidden).wantText("h1", "blocked")
	b.post("/invitation", good, "Origin", "https://evil.example").wantStatus(http.StatusForbidden)
	// Signing out without a session only sends the visitor to sign in.
	h.browser().post("/logout", url.Values{"csrf_token": {token}}).wantRedirect("/login")
	// A form post in another encoding is refused.
	if n := f.called("Redeem"); n != 0 {
		t.Fatalf("a refused request reached Redeem %d times", n)
	}
	b.post("/invitation", good, "Sec-Fetch-Site", "same-origin").wantRedirect("/profile")
}

func TestRateLimits(t *testing.T) {
	h, f := fakeSite(t, func(c *Config) {
		c.RateLimits = RateLimits{CodeLookups: 2, Redemptions: 1000, SignIns: 2, Registrations: 1, PasswordResets: 1}
		c.TrustedProxies = []string{"127.0.0.1"}
	})
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	b := h.browser()
	b.get("/invitation?code=" + code).wantStatus(http.StatusOK)
	b.get("/invitation?code=" + code).wantStatus(http.StatusOK)
	r := b.get("/invitation?code=" + code).wantStatus(http.StatusTooManyRequests)
	checkPage(t, r)
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 60 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	r.wantText("h1", "Too many attempts").wantText("main", "try again in")

	// Per target: another address (through the trusted proxy) still may
	// not hammer the same code.
	b2 := h.browser()
	b2.header.Set("X-Forwarded-For", "203.0.113.9")
	b2.get("/invitation?code=" + code).wantStatus(http.StatusTooManyRequests)
	// Per address: that address can look up other codes.
	b2.get("/invitation?code=" + f.addInvitation(testPortal, "c2", "B", "C", "b@example.com")).wantStatus(http.StatusOK)

	// Sign-ins per user name, from different addresses.
	for i, want := range []int{http.StatusUnprocessableEntity, http.StatusUnprocessableEntity, http.StatusTooManyRequests} {
		bb := h.browser()
		bb.header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
		p := bb.get("/login")
		bb.submit(p, `form[method="post"]`, map[string]string{"login": "victim@example.com", "password": "guess"}).wantStatus(want)
	}
	// Registrations and resets.
	reg := b.get("/register")
	b.submit(reg, `form[method="post"]`, map[string]string{"first_name": "A", "last_name": "B", "email": "a@example.com"}).wantRedirect("/register/sent")
	b.submit(reg, `form[method="post"]`, map[string]string{"first_name": "A", "last_name": "B", "email": "z@example.com"}).wantStatus(http.StatusTooManyRequests)
	fp := b.get("/forgot-password")
	b.submit(fp, `form[method="post"]`, map[string]string{"email": "a@example.com"}).wantRedirect("/forgot-password/sent")
	b.submit(fp, `form[method="post"]`, map[string]string{"email": "a@example.com"}).wantStatus(http.StatusTooManyRequests)
	// Keys hold no codes or addresses.
	keys, _ := h.rdb.Keys(context.Background(), "*").Result()
	for _, k := range keys {
		if strings.Contains(k, code) || strings.Contains(k, "@") {
			t.Fatalf("Redis key %q holds a secret", k)
		}
	}
}

func TestOpenRedirects(t *testing.T) {
	h, f := fakeSite(t, nil)
	f.accounts["c1"] = &invite.Account{ContactID: "c1", Username: "ada", Email: "ada@example.com", SecurityStamp: "s"}
	f.passwords["c1"] = goodPassword
	attempts := []string{
		"//evil.example", "https://evil.example/", "/\\evil.example", "/%2F%2Fevil.example", "\\\\evil.example",
		"/\t/evil.example", "javascript:alert(1)", "http:evil.example", "//evil.example/%2e%2e", " /profile", "/%5Cevil.example",
		"https:/evil.example", "/.//evil.example",
	}
	for _, next := range attempts {
		b := h.browser()
		p := b.get("/login?next=" + url.QueryEscape(next))
		r := b.submit(p, `form[method="post"]`, map[string]string{"login": "ada", "password": goodPassword, "next": next})
		loc := r.header.Get("Location")
		u, err := url.Parse(loc)
		if r.status != http.StatusSeeOther || err != nil || u.Host != "" || u.Scheme != "" || strings.HasPrefix(loc, "//") || strings.Contains(loc, "\\") {
			t.Errorf("next=%q redirected to %q (status %d)", next, loc, r.status)
		}
		// Redirect as the browser would resolve it.
		if res, _ := url.Parse(h.ts.URL); res.ResolveReference(u).Host != res.Host {
			t.Errorf("next=%q leaves the site: %q", next, loc)
		}
	}
	// Paths and proxy headers never shape a redirect to another site.
	for _, p := range []string{"//evil.example/", "///evil.example/", "/register/", "/static/x/", "/profile/"} {
		r := h.browser().get(p, "X-Forwarded-Prefix", "//evil.example", "X-Forwarded-Host", "evil.example")
		if loc := r.header.Get("Location"); strings.Contains(loc, "evil") {
			t.Errorf("%s redirected to %q", p, loc)
		}
	}
	// A good local path is honoured.
	b := h.browser()
	p := b.get("/login?next=/profile%3Fx%3D1")
	b.submit(p, `form[method="post"]`, map[string]string{"login": "ada", "password": goodPassword}).wantRedirect("/profile?x=1")
	if got, ok := localPath("/a/b?c=d#e"); !ok || got != "/a/b?c=d#e" {
		t.Fatalf("localPath = %q, %v", got, ok)
	}
}

func TestCookieFlagsAndTimeouts(t *testing.T) {
	h, _ := fakeSite(t, func(c *Config) {
		c.SessionIdleTimeout = 20 * time.Minute
		c.SessionLifetime = 8 * time.Hour
	})
	r := h.browser().get("/login")
	sc := r.header.Get("Set-Cookie")
	for _, want := range []string{"__Host-session=", "HttpOnly", "Secure", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %s", sc, want)
		}
	}
	if strings.Contains(sc, "Domain=") || strings.Contains(sc, "Expires=") {
		t.Errorf("Set-Cookie %q: want a host-only session cookie", sc)
	}
	if r.header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over HTTPS")
	}
	// The Redis TTL is the idle timeout.
	token := regexp.MustCompile(`__Host-session=([^;]+)`).FindStringSubmatch(sc)[1]
	ttl, _ := h.rdb.TTL(context.Background(), "test:session:"+hashToken(token)).Result()
	if ttl <= 0 || ttl > 20*time.Minute {
		t.Fatalf("session TTL %s, want the 20m idle timeout", ttl)
	}
	if h.srv.sm.Lifetime != 8*time.Hour || h.srv.sm.IdleTimeout != 20*time.Minute {
		t.Fatalf("timeouts %s/%s", h.srv.sm.Lifetime, h.srv.sm.IdleTimeout)
	}

	// Development over plain HTTP: not Secure, no __Host- prefix, no HSTS.
	hd, _ := fakeSite(t, nil, harnessOpts{plainHTTP: true})
	rd := hd.browser().get("/login")
	sc = rd.header.Get("Set-Cookie")
	if !strings.HasPrefix(sc, "session=") || strings.Contains(sc, "Secure") || !strings.Contains(sc, "HttpOnly") {
		t.Fatalf("dev Set-Cookie %q", sc)
	}
	if rd.header.Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS over plain HTTP")
	}
}

func TestHSTSBehindTrustedProxy(t *testing.T) {
	h, _ := fakeSite(t, func(c *Config) { c.TrustedProxies = []string{"127.0.0.0/8"} }, harnessOpts{plainHTTP: true})
	if h.browser().get("/login", "X-Forwarded-Proto", "https").header.Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS behind a TLS-terminating proxy")
	}
	h2, _ := fakeSite(t, nil, harnessOpts{plainHTTP: true})
	if h2.browser().get("/login", "X-Forwarded-Proto", "https").header.Get("Strict-Transport-Security") != "" {
		t.Fatal("an untrusted X-Forwarded-Proto turned on HSTS")
	}
}

func TestLoginLogoutAndRotation(t *testing.T) {
	h, f := fakeSite(t, nil)
	f.accounts["c1"] = &invite.Account{ContactID: "c1", Username: "ada", Email: "ada@example.com", FirstName: "Ada", SecurityStamp: "s1"}
	f.passwords["c1"] = goodPassword
	b := h.browser()
	b.get("/").wantRedirect("/login")
	b.get("/profile").wantRedirect("/login?next=%2Fprofile")
	p := b.get("/login?next=%2Fprofile")
	anon := b.cookie(h.sessionCookieName())
	r := b.submit(p, `form[method="post"]`, map[string]string{"login": "ada", "password": "wrong"}).wantStatus(http.StatusUnprocessableEntity)
	checkPage(t, r)
	r.wantText("#login-error", "not right")
	r = b.submit(p, `form[method="post"]`, map[string]string{"login": "ADA@example.com", "password": goodPassword}).wantRedirect("/profile")
	signed := b.cookie(h.sessionCookieName())
	if signed == anon || signed == "" {
		t.Fatal("session token not renewed at sign-in")
	}
	prof := b.get("/profile").wantStatus(http.StatusOK)
	oldCSRF := p.doc.Find(`input[name="csrf_token"]`).AttrOr("value", "")
	newCSRF := prof.doc.Find(`input[name="csrf_token"]`).AttrOr("value", "")
	if oldCSRF == newCSRF {
		t.Fatal("CSRF token not renewed at sign-in")
	}
	b.get("/login").wantRedirect("/profile")
	b.get("/").wantRedirect("/profile")
	// A forged sign-out (wrong token) is refused while signed in.
	b.post("/logout", url.Values{"csrf_token": {"forged"}}).wantStatus(http.StatusForbidden)
	b.submit(prof, `form[action="/logout"]`, nil).wantRedirect("/login")
	b.get("/login").wantText(".notice", "signed out")
	b.get("/profile").wantRedirect("/login?next=%2Fprofile")
	if n, _ := h.rdb.Exists(context.Background(), "test:session:"+hashToken(signed)).Result(); n != 0 {
		t.Fatal("signed-in session survives sign-out in Redis")
	}
	// Replaying the old cookie does not sign in.
	b3 := h.browser()
	u, _ := url.Parse(h.ts.URL)
	b3.c.Jar.SetCookies(u, []*http.Cookie{{Name: h.sessionCookieName(), Value: signed, Path: "/", Secure: true}})
	b3.get("/profile").wantRedirect("/login?next=%2Fprofile")
}

func TestLockoutMessage(t *testing.T) {
	h, f := fakeSite(t, func(c *Config) { c.Now = func() time.Time { return time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC) } })
	f.setFail("SignIn", fmt.Errorf("sign in: %w", &invite.LockedOutError{Until: time.Date(2030, 1, 1, 12, 4, 10, 0, time.UTC)}))
	b := h.browser()
	p := b.get("/login")
	r := b.submit(p, `form[method="post"]`, map[string]string{"login": "ada", "password": "x"}).wantStatus(http.StatusUnprocessableEntity)
	r.wantText(".error-summary", "locked").wantText(".error-summary", "in about 5 minutes")
}

func TestProfile(t *testing.T) {
	h, f := fakeSite(t, nil)
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	b := h.browser()
	prof := signUp(t, b, code)
	prof.wantText("main", "Not confirmed")
	if v := prof.doc.Find("#first-name").AttrOr("value", ""); v != "Ada" {
		t.Fatalf("first name %q", v)
	}
	r := b.submit(prof, `form[action="/profile"]`, map[string]string{"first_name": "", "phone": "call me", "job_title": strings.Repeat("x", 101)})
	r.wantStatus(http.StatusUnprocessableEntity)
	checkPage(t, r)
	for _, id := range []string{"first-name", "phone", "job-title"} {
		if r.doc.Find("#"+id+"-error").Length() != 1 {
			t.Errorf("no error for %s", id)
		}
	}
	b.submit(prof, `form[action="/profile"]`, map[string]string{"first_name": "Augusta Ada", "phone": "+44 20 7946 0000", "job_title": "Analyst"}).wantRedirect("/profile")
	after := b.get("/profile").wantText(".notice", "saved")
	if v := after.doc.Find("#job-title").AttrOr("value", ""); v != "Analyst" || f.accounts["c1"].FirstName != "Augusta Ada" {
		t.Fatalf("profile not saved: %q %+v", v, f.accounts["c1"])
	}
	b.submit(after, `form[action="/profile/confirm-email"]`, nil).wantRedirect("/profile")
	b.get("/profile").wantText(".notice", "confirmation email")
	if len(f.confirmSent) != 1 {
		t.Fatal("confirmation not sent")
	}
	// The confirmation link: GET shows a button, POST confirms.
	c := b.get("/confirm-email?token=confirm-c1").wantStatus(http.StatusOK)
	if f.called("ConfirmEmail") != 0 {
		t.Fatal("GET consumed the token")
	}
	b.submit(c, `form[action="/confirm-email"]`, nil).wantRedirect("/profile")
	b.get("/profile").wantText("main", "Confirmed")
	b.submit(c, `form[action="/confirm-email"]`, nil).wantStatus(http.StatusBadRequest).wantText("h1", "invalid or has expired")

	// A password change elsewhere (new security stamp) ends this session.
	f.accounts["c1"].SecurityStamp = "changed"
	b.get("/profile").wantRedirect("/login")
	b.get("/login").wantText(".notice", "session has ended")
}

func TestRegister(t *testing.T) {
	h, f := fakeSite(t, nil)
	b := h.browser()
	p := b.get("/register").wantStatus(http.StatusOK)
	r := b.submit(p, `form[method="post"]`, map[string]string{"first_name": "", "last_name": "B", "email": "not-an-email"}).wantStatus(http.StatusUnprocessableEntity)
	checkPage(t, r)
	r.wantText("#first-name-error", "required").wantText("#email-error", "right format")
	if len(f.registered) != 0 {
		t.Fatal("invalid form registered")
	}
	known := b.submit(p, `form[method="post"]`, map[string]string{"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"})
	known.wantRedirect("/register/sent")
	f.setFail("Register", nil)
	unknown := b.submit(p, `form[method="post"]`, map[string]string{"first_name": "Bo", "last_name": "Diddley", "email": "bo@example.com"})
	unknown.wantRedirect("/register/sent")
	if len(f.registered) != 2 || f.registered[0].Portal != testPortal || f.registered[0].IPAddress == "" {
		t.Fatalf("registered %+v", f.registered)
	}
	b.get("/register/sent").wantStatus(http.StatusOK).wantText("h1", "Check your inbox")
	// The service rejects the address: shown at the field.
	f.setFail("Register", fmt.Errorf("register: %w", invite.ErrNoEmail))
	b.submit(p, `form[method="post"]`, map[string]string{"first_name": "A", "last_name": "B", "email": "x@example.com"}).
		wantStatus(http.StatusUnprocessableEntity).wantText("#email-error", "right format")
}

func TestForgotAndResetPassword(t *testing.T) {
	h, f := fakeSite(t, nil)
	f.accounts["c1"] = &invite.Account{ContactID: "c1", Username: "ada", Email: "ada@example.com", SecurityStamp: "s1"}
	f.passwords["c1"] = "Old-Password-1"
	b := h.browser()
	p := b.get("/forgot-password")
	b.submit(p, `form[method="post"]`, map[string]string{"email": "ada@example.com"}).wantRedirect("/forgot-password/sent")
	b.submit(p, `form[method="post"]`, map[string]string{"email": "nobody@example.com"}).wantRedirect("/forgot-password/sent")
	b.submit(p, `form[method="post"]`, map[string]string{"email": "nope"}).wantStatus(http.StatusUnprocessableEntity)

	rp := b.get("/reset-password?token=reset-c1").wantStatus(http.StatusOK)
	if rp.header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatal("reset page leaks its token in Referer")
	}
	b.submit(rp, `form[method="post"]`, map[string]string{"password": "a", "confirm_password": "b"}).
		wantStatus(http.StatusUnprocessableEntity).wantText("#confirm-password-error", "do not match")
	b.submit(rp, `form[method="post"]`, map[string]string{"password": "password", "confirm_password": "password"}).
		wantStatus(http.StatusUnprocessableEntity).wantText("#password-error", "stronger")
	b.submit(rp, `form[method="post"]`, map[string]string{"password": goodPassword, "confirm_password": goodPassword}).wantRedirect("/login")
	b.get("/login").wantText(".notice", "password has been changed")
	// The session ended with the reset, so the old form is dead; a fresh
	// copy of the link is used up.
	b.submit(rp, `form[method="post"]`, map[string]string{"password": goodPassword, "confirm_password": goodPassword}).
		wantStatus(http.StatusForbidden)
	rp = b.get("/reset-password?token=reset-c1")
	b.submit(rp, `form[method="post"]`, map[string]string{"password": goodPassword, "confirm_password": goodPassword}).
		wantStatus(http.StatusBadRequest).wantText("h1", "invalid or has expired")
	b.get("/reset-password").wantStatus(http.StatusBadRequest)
	b.get("/confirm-email").wantStatus(http.StatusBadRequest)
	if f.passwords["c1"] != goodPassword {
		t.Fatal("password not changed")
	}
}

func TestRedisOutage(t *testing.T) {
	h, f := fakeSite(t, nil)
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	b := h.browser()
	b.get("/login").wantStatus(http.StatusOK) // a session cookie now exists
	h.redis.Stop()
	for _, path := range []string{"/login", "/invitation?code=" + code, "/profile"} {
		r := b.get(path).wantStatus(http.StatusServiceUnavailable)
		checkPage(t, r)
		r.wantText("h1", "unavailable").wantText("main", "try again shortly")
		if r.header.Get("Retry-After") == "" || r.doc.Find(".reference code").Text() != r.header.Get("X-Request-ID") {
			t.Fatalf("%s: outage page lacks Retry-After or request id", path)
		}
		if strings.Contains(r.body, "connect") || strings.Contains(r.body, "refused") || strings.Contains(r.body, "dial") {
			t.Fatalf("%s: internal error text shown:\n%s", path, r.body)
		}
	}
	// A fresh visitor without a cookie also gets the outage page, not a
	// broken form.
	h.browser().get("/register").wantStatus(http.StatusServiceUnavailable)
	// Static assets need no Redis.
	css := b.get("/invitation").doc.Find(`link[rel="stylesheet"]`).AttrOr("href", "")
	b.get(css).wantStatus(http.StatusOK)
	if !strings.Contains(h.logs.String(), "portal error") {
		t.Fatal("outage not logged")
	}
}

func TestDataverseOutageAndInternalErrors(t *testing.T) {
	h, f := fakeSite(t, nil)
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	f.setFail("Lookup", fmt.Errorf("lookup: find invitation code: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}))
	r := h.browser().get("/invitation?code=" + code).wantStatus(http.StatusServiceUnavailable)
	r.wantText("h1", "unavailable")
	if strings.Contains(r.body, "connection refused") {
		t.Fatal("error text leaked")
	}
	f.setFail("Lookup", permanentErr{})
	r = h.browser().get("/invitation?code=" + code).wantStatus(http.StatusInternalServerError)
	r.wantText("h1", "went wrong")
	if strings.Contains(r.body, "secret detail") {
		t.Fatal("error text leaked")
	}
	f.setFail("Lookup", transientErr{})
	h.browser().get("/invitation?code=" + code).wantStatus(http.StatusServiceUnavailable)
	if !strings.Contains(h.logs.String(), "secret detail") {
		t.Fatal("cause not logged")
	}
}

type permanentErr struct{}

func (permanentErr) Error() string   { return "dataverse: 400 Bad Request: secret detail" }
func (permanentErr) Permanent() bool { return true }

type transientErr struct{}

func (transientErr) Error() string   { return "dataverse: 503 Service Unavailable" }
func (transientErr) Permanent() bool { return false }

func TestPanicGivesRequestID(t *testing.T) {
	h, f := fakeSite(t, nil)
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	f.panicIn = "Lookup"
	r := h.browser().get("/invitation?code=" + code).wantStatus(http.StatusInternalServerError)
	checkPage(t, r)
	id := r.header.Get("X-Request-ID")
	if id == "" || r.doc.Find(".reference code").Text() != id {
		t.Fatalf("request id %q not on the page", id)
	}
	if strings.Contains(r.body, "boom") || strings.Contains(r.body, "goroutine") {
		t.Fatal("panic text on the page")
	}
	if logs := h.logs.String(); !strings.Contains(logs, "boom") || !strings.Contains(logs, id) {
		t.Fatal("panic not logged with its request id")
	}
	f.panicIn = ""
	h.browser().get("/invitation?code=" + code).wantStatus(http.StatusOK)
}

func TestBodyLimitAndContentType(t *testing.T) {
	h, _ := fakeSite(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	b := h.browser()
	p := b.get("/login")
	token := p.doc.Find(`input[name="csrf_token"]`).AttrOr("value", "")
	b.post("/login", url.Values{"csrf_token": {token}, "login": {strings.Repeat("a", 4096)}}).wantStatus(http.StatusRequestEntityTooLarge)
	req, _ := http.NewRequest(http.MethodPost, h.ts.URL+"/login", strings.NewReader(`{"login":"a"}`))
	req.Header.Set("Content-Type", "application/json")
	b.do(req).wantStatus(http.StatusUnsupportedMediaType)
	// Invalid UTF-8 never reaches the service (it would be stored as U+FFFD).
	b.post("/login", url.Values{"csrf_token": {token}, "login": {"ab\xffcd"}, "password": {"x"}}).wantStatus(http.StatusBadRequest)
}

func TestStaticAssets(t *testing.T) {
	h, _ := fakeSite(t, nil)
	b := h.browser()
	p := b.get("/login")
	css := p.doc.Find(`link[rel="stylesheet"]`).AttrOr("href", "")
	if !regexp.MustCompile(`^/static/app\.[0-9a-f]{12}\.css$`).MatchString(css) {
		t.Fatalf("stylesheet URL %q has no content hash", css)
	}
	r := b.get(css).wantStatus(http.StatusOK)
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "immutable") || !strings.Contains(cc, "max-age=31536000") {
		t.Fatalf("Cache-Control %q", cc)
	}
	if r.header.Get("Content-Type") != "text/css; charset=utf-8" || r.header.Get("Set-Cookie") != "" {
		t.Fatal("stylesheet headers")
	}
	if !strings.Contains(r.body, "@media") {
		t.Fatal("no responsive rules")
	}
	b.get(css, "If-None-Match", r.header.Get("ETag")).wantStatus(http.StatusNotModified)
	b.get("/static/app.000000000000.css").wantStatus(http.StatusNotFound)
	b.get(p.doc.Find(`link[rel="icon"]`).AttrOr("href", "")).wantStatus(http.StatusOK)
	// Other methods on pages.
	req, _ := http.NewRequest(http.MethodPut, h.ts.URL+"/login", nil)
	b.do(req).wantStatus(http.StatusMethodNotAllowed)
}

func TestLanguage(t *testing.T) {
	h, _ := fakeSite(t, nil)
	b := h.browser()
	fr := b.get("/login", "Accept-Language", "fr-CA,fr;q=0.9,en;q=0.5")
	if lang, _ := fr.doc.Find("html").Attr("lang"); lang != "fr" {
		t.Fatalf("lang %q", lang)
	}
	fr.wantText("h1", "Se connecter").wantText("label[for=login]", "Nom d’utilisateur")
	// ?lang= wins and sticks for the session.
	b.get("/login?lang=en", "Accept-Language", "fr").wantText("h1", "Sign in")
	en := b.get("/register", "Accept-Language", "fr")
	en.wantText("h1", "Ask for an account")
	if en.doc.Find(`.languages a[hreflang="fr"]`).Length() != 1 || en.doc.Find(`.languages [aria-current]`).Text() != "English" {
		t.Fatal("language switcher")
	}
	b.get("/login", "Accept-Language", "de").wantText("h1", "Sign in")
	h.browser().get("/nope", "Accept-Language", "fr").wantStatus(http.StatusNotFound).wantText("h1", "Page introuvable")
}

func TestLogsHoldNoSecrets(t *testing.T) {
	h, f := fakeSite(t, nil)
	code := f.addInvitation(testPortal, "c1", "Ada", "Lovelace", "ada@example.com")
	b := h.browser()
	signUp(t, b, code)
	b.get("/reset-password?token=reset-secret-token")
	logs := h.logs.String()
	for _, secret := range []string{code, goodPassword, "reset-secret-token"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, "path=/invitation") {
		t.Fatal("requests not logged")
	}
}

func TestNewValidates(t *testing.T) {
	f := newFakeAccounts(testPortals()...)
	rdb := newHarness(t, f, nil).rdb
	cases := map[string]Config{
		"no accounts":   {Redis: rdb},
		"no redis":      {Accounts: f},
		"bad proxy":     {Accounts: f, Redis: rdb, TrustedProxies: []string{"nope"}},
		"bad page":      {Accounts: f, Redis: rdb, Portals: []invite.Portal{{Name: "x", AfterRedeemPage: "//evil.example"}}},
		"bad language":  {Accounts: f, Redis: rdb, DefaultLanguage: "xx"},
		"no portals":    {Accounts: newFakeAccounts(), Redis: rdb},
		"javascript pg": {Accounts: f, Redis: rdb, Portals: []invite.Portal{{Name: "x", ExistingUserPage: "javascript:alert(1)"}}},
	}
	for name, cfg := range cases {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestGroupInvitation(t *testing.T) {
	h, f := fakeSite(t, nil)
	code := f.addInvitation(testPortal, "", "", "", "")
	f.invitations[code].Type = invite.TypeGroup
	f.invitations[code].MaxRedemptions = 10
	b := h.browser()
	page := b.get("/invitation?code=" + code).wantStatus(http.StatusOK)
	checkPage(t, page)
	page.wantText("main", "Tell us who you are")
	for _, id := range []string{"first-name", "last-name", "email"} {
		if page.doc.Find("#"+id).Length() != 1 {
			t.Fatalf("group sign-up lacks #%s", id)
		}
	}
	r := b.submit(page, `form[method="post"]`, map[string]string{"password": goodPassword, "confirm_password": goodPassword, "email": "nope"})
	r.wantStatus(http.StatusUnprocessableEntity)
	r.wantText("#first-name-error", "required").wantText("#email-error", "right format")
	if f.called("Redeem") != 0 {
		t.Fatal("an incomplete group form reached Redeem")
	}
	b.submit(page, `form[method="post"]`, map[string]string{"first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com",
		"username": "", "password": goodPassword, "confirm_password": goodPassword}).wantRedirect("/profile")
	got := f.redeemed[0]
	if got.Email != "grace@example.com" || got.FirstName != "Grace" || got.LastName != "Hopper" {
		t.Fatalf("redeem request %+v", got)
	}
	b.get("/profile").wantStatus(http.StatusOK).wantText("main", "grace@example.com")
}
