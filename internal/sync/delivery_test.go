package sync

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/delivery"
	"github.com/d365portal/connector/internal/invite"
)

// statusCount counts the contacts in each invite status.
func (c *cluster) statusCount(ids []string) map[int]int {
	out := map[int]int{}
	for _, id := range ids {
		out[c.status(id)]++
	}
	return out
}

func (c *cluster) contactError(id string) string {
	row, _ := c.em.Row("contact", id)
	s, _ := row[testCols.Error].(string)
	return s
}

// waitSettled waits until no contact shows Requested or Sent and the queue
// is empty, and returns the status counts.
func (c *cluster) waitSettled(ids []string, d time.Duration) map[int]int {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		counts := c.statusCount(ids)
		s, err := c.live().Stats(context.Background())
		if err == nil && counts[testCols.Requested] == 0 && counts[testCols.Sent] == 0 && s.Depth == 0 && s.Pending == 0 && s.Retrying == 0 {
			return counts
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("not settled after %v: statuses %v, queue %+v (%v)", d, counts, s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOnce checks one invitation and one email activity per contact.
func (c *cluster) checkOnce(ids []string) {
	c.t.Helper()
	invs := c.invitationsPer()
	emails := map[string]int{}
	for _, r := range c.em.Rows("email") {
		if id, ok := r["regardingobjectid"].(string); ok {
			emails[strings.ToLower(id)]++
		}
	}
	invOf := map[string]string{}
	for _, r := range c.em.Rows("adx_invitation") {
		invOf[strings.ToLower(r["adx_invitecontact"].(string))] = strings.ToLower(r["adx_invitationid"].(string))
	}
	for _, id := range ids {
		if invs[id] != 1 || emails[invOf[id]] != 1 {
			c.t.Errorf("contact %s: %d invitations, %d emails", id, invs[id], emails[invOf[id]])
		}
	}
}

// TestIntegrationDeliveryFollowed: three replicas, every webhook delivered
// twice, server-side sync taking a moment per email. Every contact goes
// Sent, then Delivered once Exchange accepted the email; one invitation and
// one email each, nothing dead-lettered.
func TestIntegrationDeliveryFollowed(t *testing.T) {
	n := 60
	if testing.Short() {
		n = 20
	}
	c := newCluster(t, clusterOpts{
		contacts: n, instances: 3, workers: 3, webhooks: true, duplicate: 1, follow: true,
		emailSync: emulator.EmailSyncOptions{Delay: 50 * time.Millisecond, Submit: 20 * time.Millisecond,
			Limits: emulator.MailboxLimits{Messages: -1, Recipients: -1}},
	})
	if err := c.flag(context.Background(), c.contacts, 4); err != nil {
		t.Fatal(err)
	}
	counts := c.waitSettled(c.contacts, 60*time.Second)
	c.em.WaitWebhooks()
	counts = c.waitSettled(c.contacts, 10*time.Second)
	if counts[testCols.Delivered] != n {
		t.Fatalf("statuses %v, want all %d Delivered", counts, n)
	}
	c.checkOnce(c.contacts)
	for _, r := range c.em.Rows("email") {
		if st, _ := r["statuscode"].(int); st != delivery.EmailSent {
			t.Errorf("email %v status %v, want Sent", r["activityid"], r["statuscode"])
		}
	}
	if c.emailHook.Load() < int64(n) {
		t.Errorf("%d email webhooks for %d emails", c.emailHook.Load(), n)
	}
	if dl, _ := c.live().DeadLetters(context.Background(), 10); len(dl) != 0 {
		t.Errorf("dead letters: %+v", dl)
	}
	// The query that finds the invitation's newest email carries what the
	// follower reads: no email is read again by its id.
	for route, k := range c.em.Stats().ByRoute {
		if strings.HasPrefix(route, "GET emails({id}) ") {
			t.Errorf("%d × %s: the follower read an email the query had returned", k, route)
		}
	}
}

// The invitation service's email query must return every column the
// follower reads, or the follower would decide on columns it never got.
func TestEmailColumnsCoverFollower(t *testing.T) {
	for _, col := range delivery.EmailColumns {
		if !slices.Contains(invite.EmailColumns, col) {
			t.Errorf("invite.EmailColumns lacks %q, which the delivery follower reads", col)
		}
	}
}

// TestIntegrationDeliveryWebhookLost: every email webhook is lost; the
// delivery poll finds the contacts still Sent and records Delivered.
func TestIntegrationDeliveryWebhookLost(t *testing.T) {
	n := 20
	c := newCluster(t, clusterOpts{
		contacts: n, instances: 2, workers: 2, webhooks: true, follow: true, dropEmails: true,
		poll: "@every 1s", recheck: 200 * time.Millisecond,
	})
	if err := c.flag(context.Background(), c.contacts, 4); err != nil {
		t.Fatal(err)
	}
	counts := c.waitSettled(c.contacts, 60*time.Second)
	if counts[testCols.Delivered] != n {
		t.Fatalf("statuses %v, want all %d Delivered", counts, n)
	}
	if c.emailHook.Load() == 0 {
		t.Fatal("no email webhook was sent, so none was lost: the test proves nothing")
	}
	if got := counter(&c.sources, "poll").Load(); got == 0 {
		t.Error("the poll queued nothing")
	}
	c.checkOnce(c.contacts)
}

// TestIntegrationDeliveryUnapprovedMailbox: the sender's mailbox is not
// approved, so server-side sync holds every email in Pending Send with an
// alert; after pending_alert_after each contact ends Failed with the
// mailbox's alert, and none stays Sent.
func TestIntegrationDeliveryUnapprovedMailbox(t *testing.T) {
	n := 10
	c := newCluster(t, clusterOpts{
		contacts: n, instances: 2, workers: 2, webhooks: true, follow: true, duplicate: 1,
		poll: "@every 1s", recheck: 200 * time.Millisecond, pendingAlert: 1500 * time.Millisecond,
	})
	mb, ok := c.em.MailboxOf(emulator.DemoMailerUserID)
	if !ok {
		t.Fatal("the demo mailer has no mailbox")
	}
	if err := c.em.SetMailbox(mb, map[string]any{"emailrouteraccessapproval": emulator.ApprovalPending}); err != nil {
		t.Fatal(err)
	}
	if err := c.flag(context.Background(), c.contacts, 4); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every contact Sent first", 30*time.Second, func() bool {
		counts := c.statusCount(c.contacts)
		return counts[testCols.Sent]+counts[testCols.Failed] == n
	})
	counts := c.waitSettled(c.contacts, 60*time.Second)
	if counts[testCols.Failed] != n {
		t.Fatalf("statuses %v, want all %d Failed", counts, n)
	}
	for _, id := range c.contacts {
		if e := c.contactError(id); !strings.Contains(e, "have not been approved") {
			t.Errorf("contact %s error %q, want the mailbox alert", id, e)
		}
	}
	for _, r := range c.em.Rows("email") {
		if st, _ := r["statuscode"].(int); st != delivery.EmailPendingSend {
			t.Errorf("email status %v, want Pending Send (held)", r["statuscode"])
		}
	}
	c.checkOnce(c.contacts)
}

// TestEmailWebhookBadInput: an email event that is not regarding an
// invitation is answered 200 and ignored; a malformed one 400; neither
// queues anything.
func TestEmailWebhookBadInput(t *testing.T) {
	c := newCluster(t, clusterOpts{instances: 1, workers: 1, follow: true})
	in := c.insts[0].intake
	post := func(body string) int {
		req := httptest.NewRequest(http.MethodPost, "/hooks/dataverse?code="+itSecret, strings.NewReader(body))
		rec := httptest.NewRecorder()
		in.WebhookHandler().ServeHTTP(rec, req)
		return rec.Code
	}
	contactRef := `{"__type":"EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts","LogicalName":"contact","Id":"` + emulator.DemoContactNoEmailID + `"}`
	emailEvent := func(attrs string) string {
		return `{"MessageName":"Update","PrimaryEntityName":"email","PrimaryEntityId":"6d81597f-0f9f-e711-8122-000d3aa2331c",` +
			`"InputParameters":[{"key":"Target","value":{"__type":"Entity:http://schemas.microsoft.com/xrm/2011/Contracts","LogicalName":"email",` +
			`"Id":"6d81597f-0f9f-e711-8122-000d3aa2331c","Attributes":[` + attrs + `]}}]}`
	}
	status := func(v int) string {
		return `{"key":"statuscode","value":{"__type":"OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts","Value":` + string(rune('0'+v)) + `}}`
	}
	cases := []struct {
		name, body string
		want       int
	}{
		{"regarding a contact", emailEvent(status(3) + `,{"key":"regardingobjectid","value":` + contactRef + `}`), http.StatusOK},
		{"regarding nothing", emailEvent(status(3) + `,{"key":"regardingobjectid","value":null}`), http.StatusOK},
		{"not an outcome", emailEvent(status(6) + `,{"key":"regardingobjectid","value":{"__type":"EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts","LogicalName":"adx_invitation","Id":"6d81597f-0f9f-e711-8122-000d3aa2331d"}}`), http.StatusOK},
		{"no email id", `{"MessageName":"Update","PrimaryEntityName":"email","InputParameters":[]}`, http.StatusBadRequest},
		{"status not a number", emailEvent(`{"key":"statuscode","value":"sent"},{"key":"regardingobjectid","value":null}`), http.StatusBadRequest},
		{"regarding not a reference", emailEvent(status(3) + `,{"key":"regardingobjectid","value":42}`), http.StatusBadRequest},
		{"not JSON", `{"MessageName":`, http.StatusBadRequest},
	}
	for _, tc := range cases {
		if got := post(tc.body); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if n := streamLen(t, in); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
}

// TestIntegrationDeliveryZeroDelay: with server-side sync at once (the
// email is Sent before SendEmail returns), the email webhook alone brings
// every contact to Delivered.
func TestIntegrationDeliveryZeroDelay(t *testing.T) {
	n := 10
	c := newCluster(t, clusterOpts{contacts: n, instances: 1, workers: 2, webhooks: true, follow: true})
	if err := c.flag(context.Background(), c.contacts, 2); err != nil {
		t.Fatal(err)
	}
	counts := c.waitSettled(c.contacts, 30*time.Second)
	if counts[testCols.Delivered] != n {
		t.Fatalf("statuses %v, want all %d Delivered", counts, n)
	}
}

// TestRegisterEmailStep: FollowEmails adds the email Update step filtered
// on statuscode with its post image; running it again changes nothing, and
// a registration made before delivery following is completed in place.
func TestRegisterEmailStep(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	ctx := context.Background()
	var out strings.Builder
	o := RegisterOptions{URL: "https://connector.contoso.example/hooks/dataverse", AuthType: AuthWebhookKey,
		AuthValue: itSecret, Contact: testCols, Out: &out}
	// As registered before this release: contact steps only.
	if _, err := RegisterWebhook(ctx, c.admin, o); err != nil {
		t.Fatal(err)
	}
	o.FollowEmails = true
	reg, err := RegisterWebhook(ctx, c.admin, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(reg.Steps) != 3 || len(c.em.Rows("sdkmessageprocessingstep")) != 3 {
		t.Fatalf("%d steps registered, %d rows; want 3", len(reg.Steps), len(c.em.Rows("sdkmessageprocessingstep")))
	}
	var email RegisteredStep
	for _, st := range reg.Steps {
		if st.Entity == "email" {
			email = st
		}
	}
	row, ok := c.em.Row("sdkmessageprocessingstep", email.StepID)
	if !ok || row["filteringattributes"] != "statuscode" || fmt.Sprint(row["mode"]) != "1" || fmt.Sprint(row["stage"]) != "40" {
		t.Fatalf("email step %v", row)
	}
	img, ok := c.em.Row("sdkmessageprocessingstepimage", email.ImageID)
	if !ok || img["attributes"] != "statuscode,regardingobjectid" {
		t.Errorf("email step image %v", img)
	}
	out.Reset()
	reg2, err := RegisterWebhook(ctx, c.admin, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range reg.Steps {
		if reg2.Steps[i].StepID != reg.Steps[i].StepID || reg2.Steps[i].ImageID != reg.Steps[i].ImageID {
			t.Errorf("step %d re-created: %+v vs %+v", i, reg2.Steps[i], reg.Steps[i])
		}
	}
	if strings.Count(out.String(), "unchanged") != 6 || strings.Contains(out.String(), "create") {
		t.Errorf("second run:\n%s", out.String())
	}
	if err := UnregisterWebhook(ctx, c.admin, o); err != nil {
		t.Fatal(err)
	}
	if n := len(c.em.Rows("sdkmessageprocessingstep")) + len(c.em.Rows("sdkmessageprocessingstepimage")); n != 0 {
		t.Errorf("%d rows left after unregister", n)
	}
}
