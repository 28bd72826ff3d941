package main

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestDevResendRevoke: the Dynamics page's Resend and Revoke buttons go
// through the running connector: a resend mails a new link and the old one
// says a newer invitation was sent; a revoke turns the contact Revoked and
// the link withdrawn.
func TestDevResendRevoke(t *testing.T) {
	cmd, info := startDev(t)
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (int, string) {
		t.Helper()
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(path string, form url.Values) {
		t.Helper()
		resp, err := client.PostForm(info.DynamicsURL+path, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	links := func(n int) []string {
		t.Helper()
		var out []string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			_, page := get(info.OutboxURL)
			out = out[:0]
			for _, m := range invitationRe.FindAllStringSubmatch(page, -1) {
				out = append(out, strings.ReplaceAll(m[1], "&amp;", "&"))
			}
			if len(out) >= n {
				return out
			}
		}
		t.Fatalf("%d invitation emails in the outbox after 30s, want %d", len(out), n)
		return nil
	}
	rowStatus := func(contact, want string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			_, page := get(info.DynamicsURL)
			for _, tr := range strings.Split(page, "<tr>") {
				if strings.Contains(tr, `value="`+contact+`"`) && strings.Contains(tr, `status-`+want) {
					return
				}
			}
		}
		t.Fatalf("contact %s not %s on the Dynamics page after 30s", contact, want)
	}

	_, page := get(info.DynamicsURL)
	m := contactFormRe.FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, "Resend invitation</button>") || !strings.Contains(page, "Revoke invitation</button>") {
		t.Fatal("the Dynamics page lacks the Invite, Resend or Revoke buttons")
	}
	contact := m[1]
	post("invite", url.Values{"contact": {contact}, "portal": {"Contoso Partner Portal"}, "role": {"Partners"}})
	first := links(1)[0]
	rowStatus(contact, "Sent")

	post("resend", url.Values{"contact": {contact}})
	all := links(2)
	var second string
	for _, l := range all {
		if l != first {
			second = l
		}
	}
	if second == "" {
		t.Fatalf("the resent email carries the same link %s", first)
	}
	if code, body := get(first); code != http.StatusGone || !strings.Contains(body, "newer invitation") {
		t.Errorf("old link after resend: %d, want 410 saying a newer invitation was sent", code)
	}
	if code, _ := get(second); code != http.StatusOK {
		t.Errorf("new link: %d", code)
	}

	post("revoke", url.Values{"contact": {contact}})
	rowStatus(contact, "Revoked")
	if code, body := get(second); code != http.StatusGone || !strings.Contains(body, "withdrawn") {
		t.Errorf("link after revoke: %d, want 410 withdrawn", code)
	}
	stopGracefully(t, cmd, 30*time.Second)
}
