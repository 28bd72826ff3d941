package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/d365portal/connector/internal/browsertest"
)

// TestBrowserDemoStory clicks through `connector dev` in headless Chromium as
// a newcomer would: Invite to portal on the Dynamics page, the email in the
// outbox, its link, the sign-up, and the contact Redeemed.
func TestBrowserDemoStory(t *testing.T) {
	c := browsertest.New(t)
	_, info := startDev(t)

	if st := c.Open(info.DynamicsURL); st != 200 {
		t.Fatalf("Dynamics page: %d", st)
	}
	c.WantText("h1", "Active contacts")
	c.Shot("dynamics")
	name := c.Eval(`document.querySelector("form.invite button").dataset.contact`)
	c.Navigate(chromedp.Click(chromedp.CSS("form.invite button[type=submit]")))
	c.WantText(".flash", "Invitation requested")

	var link string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		c.Open(info.OutboxURL)
		if link = c.Eval(`(document.querySelector("a.button") || {}).href || ""`); link != "" {
			break
		}
	}
	if link == "" {
		t.Fatal("no invitation email in the outbox after 30s")
	}
	c.Shot("outbox")
	c.Navigate(chromedp.Click(chromedp.CSS("a.button")))
	c.WantText("h1", "You are invited to Contoso Partner Portal")
	c.WantText("main", name)
	c.TypeInto("#password", "Blue-Harbor-Lantern-42")
	c.TypeInto("#confirm-password", "Blue-Harbor-Lantern-42")
	c.Navigate(chromedp.Click(chromedp.CSS(`form[action="/invitation"] button[type="submit"]`)))
	if c.Path() != "/profile" {
		t.Fatalf("after sign-up at %s, want /profile", c.Location())
	}
	c.Shot("profile")

	c.Open(info.DynamicsURL)
	status := c.Eval(`[...document.querySelectorAll("tbody tr")].find(tr => tr.cells[0].textContent.trim() === ` + jsString(name) + `).cells[2].textContent.trim()`)
	if !strings.HasPrefix(status, "Redeemed") {
		t.Errorf("%s's invite status on the Dynamics page is %q, want Redeemed", name, status)
	}
	c.Shot("dynamics-redeemed")
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
