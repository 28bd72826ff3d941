package main

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	contactStatusRe = regexp.MustCompile(`class="status status-([A-Za-z]+)"`)
	contactErrorRe  = regexp.MustCompile(`<small class="error">([^<]*)</small>`)
)

// TestDevDeliveryFollowed is the demo of issue 15 in `connector dev`: an
// invitation from the partner portal (the mailer's approved mailbox) shows
// Sent, then Delivered once emulated server-side sync sent it; with the demo
// queue's mailbox set to pending approval (a flag), an invitation from the
// customer portal (sent from the queue) ends Failed with the mailbox's
// alert after pending_alert_after.
func TestDevDeliveryFollowed(t *testing.T) {
	cmd, info := startDev(t, "--email-delay", "1s", "--mailbox", "queue=pending", "--pending-alert-after", "3s")
	client := &http.Client{Timeout: 30 * time.Second}
	page := func() string {
		t.Helper()
		resp, err := client.Get(info.DynamicsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	row := func(contact string) (status, reason string) {
		for _, tr := range strings.Split(page(), "<tr>") {
			if strings.Contains(tr, `value="`+contact+`"`) {
				if m := contactStatusRe.FindStringSubmatch(tr); m != nil {
					status = m[1]
				}
				if m := contactErrorRe.FindStringSubmatch(tr); m != nil {
					reason = html.UnescapeString(m[1])
				}
			}
		}
		return status, reason
	}
	ids := contactFormRe.FindAllStringSubmatch(page(), -1)
	if len(ids) < 2 {
		t.Fatalf("%d contacts with an Invite button, want 2", len(ids))
	}
	partner, customer := ids[0][1], ids[1][1]
	invite := func(contact, portal, role string) {
		t.Helper()
		resp, err := client.PostForm(info.DynamicsURL+"invite", url.Values{"contact": {contact}, "portal": {portal}, "role": {role}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	invite(partner, "Contoso Partner Portal", "Partners")
	seen := map[string]bool{}
	waitFor(t, "the partner contact Delivered", 60*time.Second, func() bool {
		st, _ := row(partner)
		seen[st] = true
		return st == "Delivered"
	})
	if !seen["Sent"] {
		t.Errorf("the contact went to Delivered without showing Sent first (saw %v)", seen)
	}

	invite(customer, "Contoso Customer Portal", "Customers")
	var reason string
	waitFor(t, "the customer contact Failed", 60*time.Second, func() bool {
		var st string
		st, reason = row(customer)
		seen["customer "+st] = true
		return st == "Failed"
	})
	if !seen["customer Sent"] {
		t.Errorf("the contact went to Failed without showing Sent first (saw %v)", seen)
	}
	if !strings.Contains(reason, "have not been approved") {
		t.Errorf("Failed reason %q, want the mailbox's approval alert", reason)
	}
	stopGracefully(t, cmd, 30*time.Second)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
