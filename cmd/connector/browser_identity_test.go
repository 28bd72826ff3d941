package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/d365portal/connector/internal/browsertest"
)

// TestBrowserDemoContinueWithMicrosoft clicks through `connector dev` with
// the emulator's Entra ID endpoint: Invite to portal, the email's link from
// the outbox, "Continue with Microsoft", the profile, sign-out (at the
// provider too), and signing in again with the provider.
func TestBrowserDemoContinueWithMicrosoft(t *testing.T) {
	_, info := startDev(t)
	// Chromium trusts the emulator's throwaway certificate, and nothing else
	// it would not trust anyway.
	c := browsertest.New(t, chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, info.Emulator.OrgURL)))

	if st := c.Open(info.DynamicsURL); st != 200 {
		t.Fatalf("Dynamics page: %d", st)
	}
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
	c.Navigate(chromedp.Click(chromedp.CSS("a.button")))
	c.WantText("h1", "You are invited to")
	c.WantText("form.providers button.provider", "Continue with Microsoft")
	c.Shot("invitation-providers")

	pickAtProvider := func() {
		t.Helper()
		c.Navigate(chromedp.Click(chromedp.CSS("form.providers button.provider")))
		if !strings.HasPrefix(c.Location(), info.Emulator.OrgURL+"/") {
			t.Fatalf("the provider button went to %s, not the emulator's sign-in page", c.Location())
		}
		c.WantText("body", name)
		c.Shot("provider-sign-in")
		c.Navigate(chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll("button.user")].find(b => b.textContent.includes(` + jsString(name) + `)).click(); undefined`))
	}
	pickAtProvider()
	if c.Path() != "/profile" {
		t.Fatalf("after continuing with Microsoft at %s, want /profile", c.Location())
	}
	c.WantText(".notice", "Welcome")
	c.WantText(".logins", "Microsoft")
	c.Shot("profile-external")

	c.Navigate(chromedp.Click(chromedp.CSS(`form[action="/logout"] button[type="submit"]`)))
	if c.Path() != "/login" {
		t.Fatalf("after sign-out at %s, want /login (back from the provider)", c.Location())
	}
	c.WantText(".notice", "signed out")

	pickAtProvider()
	if c.Path() != "/profile" {
		t.Fatalf("after signing in again at %s, want /profile", c.Location())
	}
	c.WantText("h1", "Your profile")
	c.WantText(".logins", "Microsoft")
}

// spkiHash is the base64 SHA-256 of the server certificate's public key at
// rawURL, the form Chromium's ignore-certificate-errors-spki-list takes.
func spkiHash(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true}) // only to read the certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
