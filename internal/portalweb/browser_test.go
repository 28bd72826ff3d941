package portalweb

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/d365portal/connector/internal/browsertest"
	"github.com/d365portal/connector/internal/invite"
)

func liveBrowserSite(t *testing.T) *live {
	return newLive(t, liveOpts{plainHTTP: true})
}

// TestBrowserInvitationJourney: the email's link → sign up → profile → edit
// → sign out → sign in with the keyboard only.
func TestBrowserInvitationJourney(t *testing.T) {
	c := browsertest.New(t)
	l := liveBrowserSite(t)
	contactID, email := l.contact(0)
	l.invite(t, contactID)
	link := l.emailLink(t, email, invite.InvitationPath)

	if st := c.Open(link); st != 200 {
		t.Fatalf("invitation link: status %d", st)
	}
	c.WantText("h1", "You are invited to "+testPortal)
	c.WantText("main", email)
	c.Shot("invitation")
	c.Narrow("invitation")

	c.TypeInto("#password", goodPassword)
	c.TypeInto("#confirm-password", "Not-The-Same-1")
	c.Navigate(chromedp.Click(chromedp.CSS(`form[action="/invitation"] button[type="submit"]`)))
	c.WantText(".error-summary", "do not match")
	c.WantText("#confirm-password-error", "do not match")
	c.Shot("invitation-error")
	c.Narrow("invitation-error")

	c.TypeInto("#password", goodPassword)
	c.TypeInto("#confirm-password", goodPassword)
	c.Navigate(chromedp.Click(chromedp.CSS(`form[action="/invitation"] button[type="submit"]`)))
	if c.Path() != "/profile" {
		t.Fatalf("after sign-up at %s, want /profile", c.Location())
	}
	c.WantText(".notice", "Welcome")
	c.WantText("h1", "Your profile")
	c.Shot("profile")
	c.Narrow("profile")

	c.TypeInto("#job-title", "Purchasing lead")
	c.TypeInto("#phone", "+1 425 555 0142")
	c.Navigate(chromedp.Click(chromedp.CSS(`form[action="/profile"] button[type="submit"]`)))
	c.WantText(".notice", "saved")
	if row := l.contactRow(t, contactID); row["jobtitle"] != "Purchasing lead" {
		t.Fatalf("job title in Dataverse: %v", row["jobtitle"])
	}
	c.Shot("profile-saved")

	c.Navigate(chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
	if c.Path() != "/login" {
		t.Fatalf("after sign-out at %s", c.Location())
	}
	c.WantText(".notice", "signed out")
	c.Shot("signed-out")

	// Sign in with the keyboard alone.
	c.Do(chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`))
	c.TabTo("login")
	c.Do(chromedp.KeyEvent(email))
	c.TabTo("password")
	c.Do(chromedp.KeyEvent(goodPassword))
	c.Navigate(chromedp.KeyEvent("\r"))
	if c.Path() != "/profile" {
		t.Fatalf("after keyboard sign-in at %s", c.Location())
	}
	if v := c.Eval(`document.getElementById("job-title").value`); v != "Purchasing lead" {
		t.Fatalf("job title after sign-in: %q", v)
	}
	c.Shot("signed-in")
}

func TestBrowserManualCodeEntry(t *testing.T) {
	c := browsertest.New(t)
	l := liveBrowserSite(t)
	contactID, _ := l.contact(1)
	res := l.invite(t, contactID)
	c.Open(l.ts.URL + "/invitation")
	c.WantText("h1", "Enter your invitation code")
	c.Shot("code-entry")
	c.Narrow("code-entry")
	c.TypeInto("#code", strings.ToLower(res.Code.Grouped()))
	c.Navigate(chromedp.Click(chromedp.CSS(`form[action="/invitation"] button`)))
	c.WantText("h1", "You are invited")
	c.Shot("code-accepted")
	// A mistyped code: the friendly page with the box again.
	c.Open(l.ts.URL + "/invitation")
	c.TypeInto("#code", "ABCD-EFGH")
	if st := c.Navigate(chromedp.Click(chromedp.CSS(`form[action="/invitation"] button`))); st != 404 {
		t.Fatalf("unknown code: status %d", st)
	}
	c.WantText("h1", "do not recognise")
	c.Shot("code-unknown")
}

func TestBrowserExpiredCode(t *testing.T) {
	c := browsertest.New(t)
	l := liveBrowserSite(t)
	contactID, email := l.contact(2)
	l.invite(t, contactID)
	link := l.emailLink(t, email, invite.InvitationPath)
	l.clock.Add(31 * 24 * time.Hour)
	if st := c.Open(link); st != 410 {
		t.Fatalf("expired link: status %d", st)
	}
	c.WantText("h1", "This invitation has expired")
	c.WantText(".actions", "Ask for a new invitation")
	c.Shot("expired")
	c.Narrow("expired")
}

func TestBrowserExistingUserRedirect(t *testing.T) {
	c := browsertest.New(t)
	l := liveBrowserSite(t)
	contactID, email := l.contact(3)
	l.invite(t, contactID)
	if _, err := l.dv.Update(l.ctx, "contacts", contactID, map[string]any{"adx_identity_username": "existing.user"}, nil); err != nil {
		t.Fatal(err)
	}
	c.Open(l.emailLink(t, email, invite.InvitationPath))
	if c.Path() != "/login" {
		t.Fatalf("existing user landed on %s, want /login", c.Location())
	}
	c.WantText("h1", "Sign in")
	c.Shot("existing-user")
}

func TestBrowserSelfRegistration(t *testing.T) {
	c := browsertest.New(t)
	l := liveBrowserSite(t)
	c.Open(l.ts.URL + "/register")
	c.Shot("register")
	c.Narrow("register")
	// Submitting empty shows every problem at once, summarised and at the fields.
	c.Navigate(chromedp.Click(chromedp.CSS(`form[action="/register"] button`)))
	c.WantText(".error-summary", "First name is required")
	c.Shot("register-errors")
	c.Narrow("register-errors")
	const email = "robin.fields@fabrikam.example"
	c.TypeInto("#first-name", "Robin")
	c.TypeInto("#last-name", "Fields")
	c.TypeInto("#email", email)
	c.Navigate(chromedp.Click(chromedp.CSS(`form[action="/register"] button`)))
	c.WantText("h1", "Check your inbox")
	c.Shot("register-sent")
	// The invitation email reaches the outbox (the service sends it before
	// answering, so no waiting is needed; the loop only guards a slow CI).
	deadline := time.Now().Add(10 * time.Second)
	for l.findEmailLink(email, invite.InvitationPath) == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no invitation email to %s in the outbox", email)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Open(l.emailLink(t, email, invite.InvitationPath))
	c.WantText("main", "Robin Fields")
	c.Shot("register-invitation")
}

func TestBrowserFrench(t *testing.T) {
	c := browsertest.New(t)
	l := liveBrowserSite(t)
	c.Open(l.ts.URL + "/login?lang=fr")
	if lang := c.Eval(`document.documentElement.lang`); lang != "fr" {
		t.Fatalf("lang %q", lang)
	}
	c.WantText("h1", "Se connecter")
	c.Open(l.ts.URL + "/forgot-password")
	c.WantText("h1", "Réinitialiser votre mot de passe")
	c.Shot("french")
}
