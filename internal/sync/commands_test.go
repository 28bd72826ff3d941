package sync

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/invite"
)

// setStatus sets contacts' invite status as the CRM user's button does.
func (c *cluster) setStatus(t *testing.T, status int, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := c.admin.Update(context.Background(), "contacts", id, map[string]any{testCols.Status: status}, nil); err != nil {
			t.Fatalf("set status %d on %s: %v", status, id, err)
		}
	}
}

// invitationOf is the contact's only invitation row.
func (c *cluster) invitationOf(t *testing.T, id string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, r := range c.em.Rows("adx_invitation") {
		if v, _ := r["adx_invitecontact"].(string); strings.EqualFold(v, id) {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("contact %s has %d invitations, want 1", id, len(found))
	}
	return found[0]
}

func num(v any) int {
	n, _ := intValue(v)
	if i, ok := v.(int); ok {
		n = i
	}
	return n
}

func (c *cluster) errorText(id string) string {
	row, _ := c.em.Row("contact", id)
	s, _ := row[testCols.Error].(string)
	return s
}

func (c *cluster) waitStatus(t *testing.T, want int, ids ...string) {
	t.Helper()
	waitFor(t, "contacts to reach the status", 30*time.Second, func() bool {
		for _, id := range ids {
			if c.status(id) != want {
				return false
			}
		}
		s, err := c.live().Stats(context.Background())
		return err == nil && s.Depth == 0 && s.Pending == 0 && s.Retrying == 0
	})
}

// TestIntegrationResendRevokeWebhook: Resend and Revoke clicks arrive by
// webhook, every delivery twice, over three replicas. Each Resend sends one
// new email with a new code for the same invitation and writes Sent; each
// Revoke deactivates the invitation (1/2) and writes Revoked; a Resend and
// a Revoke racing on one contact end revoked; commands for a contact with
// no open invitation only fill the error column.
func TestIntegrationResendRevokeWebhook(t *testing.T) {
	c := newCluster(t, clusterOpts{contacts: 8, instances: 3, workers: 2, webhooks: true, duplicate: 1, lease: time.Second})
	ctx := context.Background()
	invited := c.contacts[:6]
	if err := c.flag(ctx, invited, 4); err != nil {
		t.Fatal(err)
	}
	c.waitDrained(invited, 30*time.Second)
	codes := map[string]string{}
	for _, id := range invited {
		codes[id], _ = c.invitationOf(t, id)["adx_invitationcode"].(string)
	}

	resend, revoke, race := invited[0:2], invited[2:4], invited[4:6]
	c.setStatus(t, testCols.Resend, resend...)
	c.setStatus(t, testCols.Revoke, revoke...)
	for _, id := range race {
		c.setStatus(t, testCols.Resend, id)
		c.setStatus(t, testCols.Revoke, id)
	}
	idle := c.contacts[6:]
	c.setStatus(t, testCols.Resend, idle[0])
	c.setStatus(t, testCols.Revoke, idle[1])
	c.em.WaitWebhooks()
	c.waitStatus(t, testCols.Sent, resend...)
	c.waitStatus(t, testCols.Revoked, append(append([]string{}, revoke...), race...)...)
	c.em.WaitWebhooks()
	c.waitStatus(t, testCols.Revoked, race...)

	emails, _ := c.emailsPer()
	for _, id := range resend {
		inv := c.invitationOf(t, id)
		if code, _ := inv["adx_invitationcode"].(string); code == codes[id] || num(inv["statecode"]) != 0 {
			t.Errorf("resent %s: code changed %v, statecode %v", id, code != codes[id], inv["statecode"])
		}
		if emails[id] != 2 {
			t.Errorf("resent %s: %d emails, want 2 (exactly once despite duplicated webhooks)", id, emails[id])
		}
	}
	for _, id := range append(append([]string{}, revoke...), race...) {
		inv := c.invitationOf(t, id)
		if num(inv["statecode"]) != 1 || num(inv["statuscode"]) != 2 {
			t.Errorf("revoked %s: invitation %v/%v, want 1/2", id, inv["statecode"], inv["statuscode"])
		}
		if e := c.errorText(id); e != "" {
			t.Errorf("revoked %s: error column %q", id, e)
		}
	}
	for _, id := range revoke {
		if emails[id] != 1 {
			t.Errorf("revoked %s: %d emails, want 1", id, emails[id])
		}
	}
	for _, id := range race {
		if emails[id] < 1 || emails[id] > 2 {
			t.Errorf("raced %s: %d emails", id, emails[id])
		}
	}
	// No open invitation: a readable error, the status and rows untouched.
	waitFor(t, "error text on contacts without an invitation", 30*time.Second, func() bool {
		return strings.Contains(c.errorText(idle[0]), "No open invitation to resend") &&
			strings.Contains(c.errorText(idle[1]), "No open invitation to revoke")
	})
	if c.status(idle[0]) != testCols.Resend || c.status(idle[1]) != testCols.Revoke {
		t.Errorf("idle statuses %d/%d changed", c.status(idle[0]), c.status(idle[1]))
	}
	if invs := c.invitationsPer(); invs[idle[0]] != 0 || invs[idle[1]] != 0 || emails[idle[0]] != 0 || emails[idle[1]] != 0 {
		t.Errorf("contacts without an invitation got rows: %v", invs)
	}
	if s, err := c.live().Stats(ctx); err != nil || s.DeadLetters != 0 {
		t.Errorf("dead letters: %+v %v", s, err)
	}
}

// TestIntegrationResendRevokePoll: with webhooks off, the poller finds
// Resend and Revoke clicks through change tracking and the filtered query.
func TestIntegrationResendRevokePoll(t *testing.T) {
	c := newCluster(t, clusterOpts{contacts: 3, instances: 2, workers: 2, lease: time.Second})
	ctx := context.Background()
	a := c.insts[0].intake
	if _, err := a.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.flag(ctx, c.contacts, 2); err != nil {
		t.Fatal(err)
	}
	if got, err := a.PollOnce(ctx); err != nil || got != 3 {
		t.Fatalf("poll after Invite: %d, %v", got, err)
	}
	c.waitDrained(c.contacts, 30*time.Second)
	if _, err := a.PollOnce(ctx); err != nil { // the write-backs
		t.Fatal(err)
	}
	c.setStatus(t, testCols.Resend, c.contacts[0])
	c.setStatus(t, testCols.Revoke, c.contacts[1])
	if got, err := c.insts[1].intake.PollOnce(ctx); err != nil || got != 2 {
		t.Fatalf("delta poll: %d, %v; want 2", got, err)
	}
	c.waitStatus(t, testCols.Sent, c.contacts[0])
	c.waitStatus(t, testCols.Revoked, c.contacts[1])
	// The filtered query (no delta link) finds a command too.
	c.setStatus(t, testCols.Revoke, c.contacts[2])
	if err := a.rdb.Del(ctx, a.keys.delta).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := a.PollOnce(ctx); err != nil || got != 1 {
		t.Fatalf("full poll: %d, %v; want 1", got, err)
	}
	c.waitStatus(t, testCols.Revoked, c.contacts[2])
	emails, _ := c.emailsPer()
	if emails[c.contacts[0]] != 2 || emails[c.contacts[1]] != 1 || emails[c.contacts[2]] != 1 {
		t.Errorf("emails %v", emails)
	}
	if inv := c.invitationOf(t, c.contacts[1]); num(inv["statecode"]) != 1 || num(inv["statuscode"]) != 2 {
		t.Errorf("revoked invitation %v/%v", inv["statecode"], inv["statuscode"])
	}
}

var codeRe = regexp.MustCompile(`code=([A-Za-z0-9-]+)`)

// codesSentTo are the invitation codes in the emails to addr, oldest first.
func (c *cluster) codesSentTo(addr string) []string {
	var out []string
	for _, m := range c.em.Outbox() {
		if len(m.To) == 1 && strings.EqualFold(m.To[0], addr) {
			if s := codeRe.FindStringSubmatch(m.HTML); s != nil {
				out = append(out, s[1])
			}
		}
	}
	return out
}

// TestIntegrationResendSupersedesCode: after a Resend with hashed codes the
// old link is known as superseded on every replica (the record is in
// Redis), the new one works, and after a Revoke the new one is withdrawn.
func TestIntegrationResendSupersedesCode(t *testing.T) {
	c := newCluster(t, clusterOpts{contacts: 1, instances: 2, workers: 1, webhooks: true, lease: time.Second})
	ctx := context.Background()
	id := c.contacts[0]
	if err := c.flag(ctx, []string{id}, 1); err != nil {
		t.Fatal(err)
	}
	c.waitDrained([]string{id}, 30*time.Second)
	c.setStatus(t, testCols.Resend, id)
	c.em.WaitWebhooks()
	c.waitStatus(t, testCols.Sent, id)
	waitFor(t, "the second email", 10*time.Second, func() bool { return len(c.codesSentTo("invitee0000@example.com")) == 2 })
	codes := c.codesSentTo("invitee0000@example.com")

	// Another replica's service, sharing only Redis and Dataverse.
	svc, err := invite.New(c.client(2*time.Millisecond), invite.Config{
		Portals: []invite.Portal{{Name: itPortal, WebsiteID: emulator.DemoSiteID, BaseURL: "https://partners.contoso.example/",
			Email: invite.EmailSettings{Sender: "systemuser:" + emulator.DemoMailerUserID}}},
		Contact: testCols, PasswordHash: invite.HashAspNetV2, Superseded: NewSuperseded(c.redis.Client(t), itPrefix),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Lookup(ctx, codes[0]); !errors.Is(err, invite.ErrCodeSuperseded) {
		t.Fatalf("old code: %v, want superseded", err)
	}
	if inv, err := svc.Lookup(ctx, codes[1]); err != nil || !strings.EqualFold(inv.ContactID, id) {
		t.Fatalf("new code: %+v, %v", inv, err)
	}
	if _, err := svc.Lookup(ctx, "ABCD-EFGH-JKLM"); !errors.Is(err, invite.ErrCodeUnknown) && !errors.Is(err, invite.ErrCodeSuperseded) {
		t.Fatalf("random code: %v", err)
	} else if errors.Is(err, invite.ErrCodeSuperseded) {
		t.Fatal("a code never issued reads as superseded")
	}
	c.setStatus(t, testCols.Revoke, id)
	c.em.WaitWebhooks()
	c.waitStatus(t, testCols.Revoked, id)
	if _, err := svc.Lookup(ctx, codes[1]); !errors.Is(err, invite.ErrCodeRevoked) {
		t.Fatalf("code after revoke: %v, want withdrawn", err)
	}
}
