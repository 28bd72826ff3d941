package portalweb

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/d365portal/connector/internal/invite"
)

const chromiumPath = "/usr/bin/chromium"

// chrome is a headless Chromium tab driven over the DevTools protocol. It
// records console errors and uncaught exceptions; the test fails on any.
type chrome struct {
	t        *testing.T
	ctx      context.Context
	dir      string
	mu       sync.Mutex
	problems []string
	shots    int
}

func newChrome(t *testing.T) *chrome {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser tests: %s not found (CI=true); install the chromium package", chromiumPath)
		}
		t.Skipf("browser tests: %s not found; install the chromium package to run them", chromiumPath)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	c := &chrome{t: t, ctx: ctx, dir: t.TempDir()}
	// Listen starts the browser; its context has no deadline, as chromedp
	// requires for the browser's lifetime.
	if err := chromedp.Listen(ctx, c.onEvent); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.problems {
			t.Errorf("browser console: %s", p)
		}
	})
	return c
}

// onEvent runs on the tab's reader goroutine: record and return.
func (c *chrome) onEvent(ev any) {
	var problem string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			problem = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
		}
	case *runtime.EventExceptionThrown:
		problem = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			problem += " " + ev.ExceptionDetails.Exception.Description
		}
	case *log.EventEntryAdded:
		// Browser-side errors such as CSP violations. Network entries are
		// left out: error pages answer 4xx on purpose.
		if ev.Entry.Level == log.EntryLevelError && ev.Entry.Source != log.EntrySourceNetwork {
			problem = "log " + string(ev.Entry.Source) + ": " + ev.Entry.Text
		}
	}
	if problem != "" {
		c.mu.Lock()
		c.problems = append(c.problems, problem)
		c.mu.Unlock()
	}
}

// do runs steps with a deadline (derived from the tab's context, which
// has already run).
func (c *chrome) do(steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		c.t.Fatalf("browser: %v (at %s)", err, c.location())
	}
}

// navigate runs steps that load a new page and waits for it; it returns the
// HTTP status of the document.
func (c *chrome) navigate(steps ...chromedp.Action[chromedp.Void]) int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	res, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		c.t.Fatalf("browser navigation: %v (at %s)", err, c.location())
	}
	return res.Status
}

func (c *chrome) open(u string) int64 { return c.navigate(chromedp.Navigate(u)) }

func (c *chrome) location() string {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

func (c *chrome) path() string {
	u, _ := url.Parse(c.location())
	return u.Path
}

func (c *chrome) text(sel string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		c.t.Fatalf("text of %s: %v (at %s)", sel, err, c.location())
	}
	return strings.Join(strings.Fields(s), " ")
}

func (c *chrome) wantText(sel, substr string) {
	c.t.Helper()
	if got := c.text(sel); !strings.Contains(got, substr) {
		c.t.Fatalf("%s: %s says %q, want %q", c.location(), sel, got, substr)
	}
}

func (c *chrome) eval(expr string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		c.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shot saves a full-page PNG under the test's temporary directory (and
// under $PORTALWEB_SCREENSHOTS when set, to look at them after the run).
func (c *chrome) shot(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Fatalf("screenshot: %v", err)
	}
	c.shots++
	file := fmt.Sprintf("%02d-%s.png", c.shots, name)
	if err := os.WriteFile(filepath.Join(c.dir, file), png, 0o644); err != nil {
		c.t.Fatal(err)
	}
	if extra := os.Getenv("PORTALWEB_SCREENSHOTS"); extra != "" {
		_ = os.MkdirAll(extra, 0o755)
		_ = os.WriteFile(filepath.Join(extra, c.t.Name()+"-"+file), png, 0o644)
	}
}

// narrow checks the page at 320 CSS pixels: nothing may need horizontal
// scrolling.
func (c *chrome) narrow(name string) {
	c.t.Helper()
	c.do(chromedp.EmulateViewport(320, 720))
	if overflow := c.eval(`String(document.documentElement.scrollWidth - document.documentElement.clientWidth)`); overflow != "0" {
		c.t.Errorf("%s at 320px scrolls sideways by %spx", c.location(), overflow)
	}
	c.shot(name + "-320px")
	c.do(chromedp.EmulateViewport(1024, 900))
}

// tabTo presses Tab until the element with id has focus, as a keyboard
// user would.
func (c *chrome) tabTo(id string) {
	c.t.Helper()
	for range 30 {
		if c.eval(`document.activeElement ? document.activeElement.id : ""`) == id {
			return
		}
		c.do(chromedp.KeyEvent("\t"))
	}
	c.t.Fatalf("Tab never reached #%s on %s", id, c.location())
}

func (c *chrome) typeInto(sel, text string) {
	c.t.Helper()
	c.do(chromedp.WaitVisible(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).value = ""`, sel)),
		chromedp.SendKeys(chromedp.CSS(sel), text))
}

func liveBrowserSite(t *testing.T) *live {
	return newLive(t, liveOpts{plainHTTP: true})
}

// TestBrowserInvitationJourney: the email's link → sign up → profile → edit
// → sign out → sign in with the keyboard only.
func TestBrowserInvitationJourney(t *testing.T) {
	c := newChrome(t)
	l := liveBrowserSite(t)
	contactID, email := l.contact(0)
	l.invite(t, contactID)
	link := l.emailLink(t, email, invite.InvitationPath)

	if st := c.open(link); st != 200 {
		t.Fatalf("invitation link: status %d", st)
	}
	c.wantText("h1", "You are invited to "+testPortal)
	c.wantText("main", email)
	c.shot("invitation")
	c.narrow("invitation")

	c.typeInto("#password", goodPassword)
	c.typeInto("#confirm-password", "Not-The-Same-1")
	c.navigate(chromedp.Click(chromedp.CSS(`form[action="/invitation"] button[type="submit"]`)))
	c.wantText(".error-summary", "do not match")
	c.wantText("#confirm-password-error", "do not match")
	c.shot("invitation-error")
	c.narrow("invitation-error")

	c.typeInto("#password", goodPassword)
	c.typeInto("#confirm-password", goodPassword)
	c.navigate(chromedp.Click(chromedp.CSS(`form[action="/invitation"] button[type="submit"]`)))
	if c.path() != "/profile" {
		t.Fatalf("after sign-up at %s, want /profile", c.location())
	}
	c.wantText(".notice", "Welcome")
	c.wantText("h1", "Your profile")
	c.shot("profile")
	c.narrow("profile")

	c.typeInto("#job-title", "Purchasing lead")
	c.typeInto("#phone", "+1 425 555 0142")
	c.navigate(chromedp.Click(chromedp.CSS(`form[action="/profile"] button[type="submit"]`)))
	c.wantText(".notice", "saved")
	if row := l.contactRow(t, contactID); row["jobtitle"] != "Purchasing lead" {
		t.Fatalf("job title in Dataverse: %v", row["jobtitle"])
	}
	c.shot("profile-saved")

	c.navigate(chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
	if c.path() != "/login" {
		t.Fatalf("after sign-out at %s", c.location())
	}
	c.wantText(".notice", "signed out")
	c.shot("signed-out")

	// Sign in with the keyboard alone.
	c.do(chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`))
	c.tabTo("login")
	c.do(chromedp.KeyEvent(email))
	c.tabTo("password")
	c.do(chromedp.KeyEvent(goodPassword))
	c.navigate(chromedp.KeyEvent("\r"))
	if c.path() != "/profile" {
		t.Fatalf("after keyboard sign-in at %s", c.location())
	}
	if v := c.eval(`document.getElementById("job-title").value`); v != "Purchasing lead" {
		t.Fatalf("job title after sign-in: %q", v)
	}
	c.shot("signed-in")
}

func TestBrowserManualCodeEntry(t *testing.T) {
	c := newChrome(t)
	l := liveBrowserSite(t)
	contactID, _ := l.contact(1)
	res := l.invite(t, contactID)
	c.open(l.ts.URL + "/invitation")
	c.wantText("h1", "Enter your invitation code")
	c.shot("code-entry")
	c.narrow("code-entry")
	c.typeInto("#code", strings.ToLower(res.Code.Grouped()))
	c.navigate(chromedp.Click(chromedp.CSS(`form[action="/invitation"] button`)))
	c.wantText("h1", "You are invited")
	c.shot("code-accepted")
	// A mistyped code: the friendly page with the box again.
	c.open(l.ts.URL + "/invitation")
	c.typeInto("#code", "ABCD-EFGH")
	if st := c.navigate(chromedp.Click(chromedp.CSS(`form[action="/invitation"] button`))); st != 404 {
		t.Fatalf("unknown code: status %d", st)
	}
	c.wantText("h1", "do not recognise")
	c.shot("code-unknown")
}

func TestBrowserExpiredCode(t *testing.T) {
	c := newChrome(t)
	l := liveBrowserSite(t)
	contactID, email := l.contact(2)
	l.invite(t, contactID)
	link := l.emailLink(t, email, invite.InvitationPath)
	l.clock.Add(31 * 24 * time.Hour)
	if st := c.open(link); st != 410 {
		t.Fatalf("expired link: status %d", st)
	}
	c.wantText("h1", "This invitation has expired")
	c.wantText(".actions", "Ask for a new invitation")
	c.shot("expired")
	c.narrow("expired")
}

func TestBrowserExistingUserRedirect(t *testing.T) {
	c := newChrome(t)
	l := liveBrowserSite(t)
	contactID, email := l.contact(3)
	l.invite(t, contactID)
	if _, err := l.dv.Update(l.ctx, "contacts", contactID, map[string]any{"adx_identity_username": "existing.user"}, nil); err != nil {
		t.Fatal(err)
	}
	c.open(l.emailLink(t, email, invite.InvitationPath))
	if c.path() != "/login" {
		t.Fatalf("existing user landed on %s, want /login", c.location())
	}
	c.wantText("h1", "Sign in")
	c.shot("existing-user")
}

func TestBrowserSelfRegistration(t *testing.T) {
	c := newChrome(t)
	l := liveBrowserSite(t)
	c.open(l.ts.URL + "/register")
	c.shot("register")
	c.narrow("register")
	// Submitting empty shows every problem at once, summarised and at the fields.
	c.navigate(chromedp.Click(chromedp.CSS(`form[action="/register"] button`)))
	c.wantText(".error-summary", "First name is required")
	c.shot("register-errors")
	c.narrow("register-errors")
	const email = "robin.fields@fabrikam.example"
	c.typeInto("#first-name", "Robin")
	c.typeInto("#last-name", "Fields")
	c.typeInto("#email", email)
	c.navigate(chromedp.Click(chromedp.CSS(`form[action="/register"] button`)))
	c.wantText("h1", "Check your inbox")
	c.shot("register-sent")
	// The invitation email reaches the outbox (the service sends it before
	// answering, so no waiting is needed; the loop only guards a slow CI).
	deadline := time.Now().Add(10 * time.Second)
	for l.findEmailLink(email, invite.InvitationPath) == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no invitation email to %s in the outbox", email)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.open(l.emailLink(t, email, invite.InvitationPath))
	c.wantText("main", "Robin Fields")
	c.shot("register-invitation")
}

func TestBrowserFrench(t *testing.T) {
	c := newChrome(t)
	l := liveBrowserSite(t)
	c.open(l.ts.URL + "/login?lang=fr")
	if lang := c.eval(`document.documentElement.lang`); lang != "fr" {
		t.Fatalf("lang %q", lang)
	}
	c.wantText("h1", "Se connecter")
	c.open(l.ts.URL + "/forgot-password")
	c.wantText("h1", "Réinitialiser votre mot de passe")
	c.shot("french")
}
