package emulator

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is an injectable clock the tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// mailEnv is an emulator with a sender user and a helper that sends emails
// through the Web API.
type mailEnv struct {
	*client
	clock   *fakeClock
	user    string // sender systemuserid
	mailbox string // its mailbox
}

func startMail(t *testing.T, o EmailSyncOptions) *mailEnv {
	t.Helper()
	clk := newFakeClock()
	c := startPlain(t, Options{Now: clk.Now, EmailSync: o})
	user, err := c.r.Insert("systemuser", map[string]any{"fullname": "Portal Mailer", "internalemailaddress": "mailer@contoso.example"})
	if err != nil {
		t.Fatal(err)
	}
	mb, ok := c.r.MailboxOf(user)
	if !ok {
		t.Fatal("a new user has no mailbox")
	}
	return &mailEnv{client: c, clock: clk, user: user, mailbox: mb}
}

// send creates an email from sender (a systemuser or queue bind) to the
// addresses and sends it with IssueSend; it returns the email id.
func (e *mailEnv) send(from, subject string, issue bool, to ...string) string {
	e.t.Helper()
	parties := []any{map[string]any{"participationtypemask": 1, "partyid_" + strings.TrimSuffix(strings.SplitN(from, "(", 2)[0], "s") + "@odata.bind": "/" + from}}
	for _, a := range to {
		parties = append(parties, map[string]any{"participationtypemask": 2, "addressused": a})
	}
	id := e.create("emails", map[string]any{"subject": subject, "description": "<p>Hi</p>", "directioncode": true, "email_activity_parties": parties})
	e.must(200, "POST", "emails("+id+")/Microsoft.Dynamics.CRM.SendEmail", map[string]any{"IssueSend": issue})
	return id
}

func (e *mailEnv) sendAsUser(subject string, to ...string) string {
	e.t.Helper()
	return e.send("systemusers("+e.user+")", subject, true, to...)
}

// status reads an email's statecode and statuscode through the API.
func (e *mailEnv) status(id string) (state, status int, row *result) {
	e.t.Helper()
	res := e.must(200, "GET", "emails("+id+")?$select=statecode,statuscode,senton,deliveryattempts,_sendermailboxid_value", nil)
	return num(res.json["statecode"]), num(res.json["statuscode"]), res
}

func (e *mailEnv) wantStatus(id string, state, status int) *result {
	e.t.Helper()
	gotState, gotStatus, res := e.status(id)
	if gotState != state || gotStatus != status {
		e.t.Fatalf("email %s: state %d status %d, want %d %d: %s", id, gotState, gotStatus, state, status, res.body)
	}
	return res
}

// alerts lists the tracelog rows regarding a mailbox, oldest first.
func (e *mailEnv) alerts(mailbox string) []map[string]any {
	e.t.Helper()
	q := "tracelogs?$select=level,text,createdon,modifiedon&$orderby=createdon&$filter=" + url.QueryEscape("_regardingobjectid_value eq "+mailbox)
	return e.must(200, "GET", q, nil).values()
}

func (e *mailEnv) outbox(id string) SentEmail {
	e.t.Helper()
	for _, m := range e.r.Outbox() {
		if m.ID == id {
			return m
		}
	}
	e.t.Fatalf("email %s not in the outbox", id)
	return SentEmail{}
}

func TestEmailSyncPendingSendThenSent(t *testing.T) {
	e := startMail(t, EmailSyncOptions{Manual: true, Delay: 2 * time.Second})
	id := e.sendAsUser("Welcome", "ada@example.com")

	// SendEmail hands the email over: Pending Send, completed state, the
	// sender's mailbox recorded, nothing sent yet.
	res := e.wantStatus(id, 1, EmailPendingSend)
	if res.str("_sendermailboxid_value") != e.mailbox || res.json["senton"] != nil || num(res.json["deliveryattempts"]) > 0 {
		t.Fatalf("pending email: %s", res.body)
	}
	if m := e.outbox(id); m.Status != EmailPendingSend || m.MailboxID != e.mailbox || m.StatusLabel() != "Pending Send" {
		t.Fatalf("outbox: %+v", m)
	}
	// Before the delay has passed a cycle leaves it alone.
	e.clock.Add(time.Second)
	if r := e.r.RunEmailSync(); r != (EmailSyncResult{}) {
		t.Fatalf("early cycle: %+v", r)
	}
	e.wantStatus(id, 1, EmailPendingSend)

	e.clock.Add(time.Second)
	if r := e.r.RunEmailSync(); r.Sending != 1 || r.Sent != 1 {
		t.Fatalf("cycle: %+v", r)
	}
	res = e.wantStatus(id, 1, EmailSent)
	if res.str("senton") != e.clock.Now().Format(time.RFC3339) || num(res.json["deliveryattempts"]) != 1 {
		t.Fatalf("sent email: %s", res.body)
	}
	if m := e.outbox(id); m.Status != EmailSent || !m.SentOn.Equal(e.clock.Now()) || m.Attempts != 1 || m.Alert != "" {
		t.Fatalf("outbox: %+v", m)
	}
	// Nothing left to do.
	if r := e.r.RunEmailSync(); r != (EmailSyncResult{}) {
		t.Fatalf("idle cycle: %+v", r)
	}
}

func TestEmailSyncSendingLastsSubmit(t *testing.T) {
	e := startMail(t, EmailSyncOptions{Manual: true, Submit: 3 * time.Second})
	id := e.sendAsUser("Welcome", "ada@example.com")
	if r := e.r.RunEmailSync(); r.Sending != 1 || r.Sent != 0 {
		t.Fatalf("first cycle: %+v", r)
	}
	e.wantStatus(id, 1, EmailSending)
	e.clock.Add(2 * time.Second)
	e.r.RunEmailSync()
	e.wantStatus(id, 1, EmailSending)
	e.clock.Add(time.Second)
	if r := e.r.RunEmailSync(); r.Sent != 1 {
		t.Fatalf("answer: %+v", r)
	}
	e.wantStatus(id, 1, EmailSent)
}

func TestEmailSyncZeroDelaySendsBeforeSendEmailReturns(t *testing.T) {
	e := startMail(t, EmailSyncOptions{})
	id := e.sendAsUser("Welcome", "ada@example.com")
	e.wantStatus(id, 1, EmailSent)
}

func TestSendEmailWithoutIssueSendRecordsSent(t *testing.T) {
	e := startMail(t, EmailSyncOptions{Manual: true})
	id := e.send("systemusers("+e.user+")", "Recorded", false, "ada@example.com")
	res := e.wantStatus(id, 1, EmailSent)
	if res.json["senton"] == nil || res.json["_sendermailboxid_value"] != nil {
		t.Fatalf("recorded email: %s", res.body)
	}
	if len(e.r.Outbox()) != 0 {
		t.Fatal("an email recorded as sent was delivered")
	}
	if r := e.r.RunEmailSync(); r != (EmailSyncResult{}) {
		t.Fatalf("cycle: %+v", r)
	}
}

func TestEmailSyncWebhooksFollowStatus(t *testing.T) {
	capture := &hookCapture{}
	hs := httptest.NewServer(http.HandlerFunc(capture.handler))
	t.Cleanup(hs.Close)
	e := startMail(t, EmailSyncOptions{Manual: true, Submit: time.Second})
	se := e.create("serviceendpoints", map[string]any{"name": "hook", "url": hs.URL, "contract": 8, "authtype": 4, "authvalue": "k"})
	msg := e.must(200, "GET", "sdkmessages?$select=sdkmessageid&$filter=name eq 'Update'", nil).values()[0]["sdkmessageid"].(string)
	flt := e.must(200, "GET", "sdkmessagefilters?$select=sdkmessagefilterid&$filter=primaryobjecttypecode eq 'email' and sdkmessageid/name eq 'Update'", nil).values()[0]["sdkmessagefilterid"].(string)
	e.create("sdkmessageprocessingsteps", map[string]any{
		"name": "email status", "stage": 40, "mode": 1, "rank": 1, "filteringattributes": "statuscode",
		"eventhandler_serviceendpoint@odata.bind": "/serviceendpoints(" + se + ")",
		"sdkmessageid@odata.bind":                 "/sdkmessages(" + msg + ")",
		"sdkmessagefilterid@odata.bind":           "/sdkmessagefilters(" + flt + ")",
	})
	good := e.sendAsUser("Good", "ada@example.com")
	bad := e.sendAsUser("Bad", "nobody@nowhere.invalid")
	e.r.RunEmailSync()
	e.clock.Add(time.Second)
	e.r.RunEmailSync()
	e.r.WaitWebhooks()

	seen := map[string][]int{}
	for _, h := range capture.all() {
		target, _ := kv(h.body["InputParameters"], "Target").(map[string]any)
		st, _ := kv(target["Attributes"], "statuscode").(map[string]any)
		if h.body["PrimaryEntityName"] != "email" || st == nil {
			t.Fatalf("delivery: %v", h.body)
		}
		id := h.body["PrimaryEntityId"].(string)
		seen[id] = append(seen[id], num(st["Value"]))
	}
	// SendEmail's own status change, then the sync's (asynchronous
	// deliveries: in any order).
	for id, want := range map[string][]int{good: {EmailSent, EmailPendingSend, EmailSending}, bad: {EmailPendingSend, EmailSending, EmailFailed}} {
		got := slices.Sorted(slices.Values(seen[id]))
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("email %s: statuses %v, want %v", id, got, want)
		}
	}
}

func TestEmailSyncUnapprovedMailboxHoldsWithAlert(t *testing.T) {
	e := startMail(t, EmailSyncOptions{Manual: true, Retry: time.Minute})
	if err := e.r.SetMailbox(e.mailbox, map[string]any{"emailrouteraccessapproval": ApprovalPending}); err != nil {
		t.Fatal(err)
	}
	id := e.sendAsUser("Welcome", "ada@example.com")
	if r := e.r.RunEmailSync(); r.Held != 1 || r.Sending != 0 {
		t.Fatalf("cycle: %+v", r)
	}
	e.wantStatus(id, 1, EmailPendingSend)
	alerts := e.alerts(e.mailbox)
	if len(alerts) != 1 || num(alerts[0]["level"]) != AlertError || alerts[0]["text"] != alertNotApproved {
		t.Fatalf("alerts: %v", alerts)
	}
	mb := e.must(200, "GET", "mailboxes("+e.mailbox+")?$select=outgoingemailstatus,mailboxstatus,lastsyncerror,lastsyncerrorcount", nil)
	if num(mb.json["outgoingemailstatus"]) != 2 || num(mb.json["mailboxstatus"]) != 2 || mb.json["lastsyncerror"] != alertNotApproved {
		t.Fatalf("mailbox after a failed cycle: %s", mb.body)
	}
	if m := e.outbox(id); m.Alert != alertNotApproved || m.Status != EmailPendingSend {
		t.Fatalf("outbox: %+v", m)
	}
	// The retry waits for Retry, and the same alert updates its row.
	e.clock.Add(30 * time.Second)
	if r := e.r.RunEmailSync(); r != (EmailSyncResult{}) {
		t.Fatalf("cycle before retry: %+v", r)
	}
	e.clock.Add(30 * time.Second)
	if r := e.r.RunEmailSync(); r.Held != 1 {
		t.Fatalf("retry: %+v", r)
	}
	if a := e.alerts(e.mailbox); len(a) != 1 || a[0]["modifiedon"] == a[0]["createdon"] {
		t.Fatalf("repeated alert: %v", a)
	}
	// An admin approves the mailbox through the API: held emails go at once.
	e.must(204, "PATCH", "mailboxes("+e.mailbox+")", map[string]any{"emailrouteraccessapproval": ApprovalApproved})
	if r := e.r.RunEmailSync(); r.Sent != 1 {
		t.Fatalf("after approval: %+v", r)
	}
	e.wantStatus(id, 1, EmailSent)
	mb = e.must(200, "GET", "mailboxes("+e.mailbox+")?$select=outgoingemailstatus", nil)
	if num(mb.json["outgoingemailstatus"]) != 1 {
		t.Fatalf("mailbox after a good cycle: %s", mb.body)
	}
	if m := e.outbox(id); m.Alert != "" || m.Status != EmailSent {
		t.Fatalf("outbox: %+v", m)
	}
}

func TestEmailSyncMailboxStates(t *testing.T) {
	cases := []struct {
		name  string
		set   map[string]any
		alert string // "" = no alert
	}{
		{"disabled for outgoing", map[string]any{"enabledforoutgoingemail": false}, "Email cannot be sent because the mailbox Portal Mailer is disabled for sending email."},
		{"inactive", map[string]any{"statecode": 1}, "Email cannot be sent because the mailbox Portal Mailer is disabled for sending email."},
		{"rejected", map[string]any{"emailrouteraccessapproval": ApprovalRejected}, alertNotApproved},
		{"not approved by an Office 365 administrator", map[string]any{"isemailaddressapprovedbyo365admin": false},
			"Email cannot be sent because the email address of the mailbox Portal Mailer requires an approval by an Office 365 administrator."},
		{"outgoing through Outlook", map[string]any{"outgoingemaildeliverymethod": OutgoingOutlook}, ""},
		{"no outgoing method", map[string]any{"outgoingemaildeliverymethod": OutgoingNone}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startMail(t, EmailSyncOptions{Manual: true})
			if err := e.r.SetMailbox(e.mailbox, tc.set); err != nil {
				t.Fatal(err)
			}
			id := e.sendAsUser("Welcome", "ada@example.com")
			if r := e.r.RunEmailSync(); r.Held != 1 {
				t.Fatalf("cycle: %+v", r)
			}
			e.wantStatus(id, 1, EmailPendingSend)
			alerts := e.alerts(e.mailbox)
			switch {
			case tc.alert == "" && len(alerts) != 0:
				t.Fatalf("want no alert, got %v", alerts)
			case tc.alert != "" && (len(alerts) != 1 || !strings.HasPrefix(alerts[0]["text"].(string), tc.alert)):
				t.Fatalf("alerts %v, want %q", alerts, tc.alert)
			}
		})
	}
}

func TestEmailSyncOrganizationApprovalSetting(t *testing.T) {
	e := startMail(t, EmailSyncOptions{Manual: true})
	q := e.create("queues", map[string]any{"name": "Portal Invitations", "emailaddress": "invitations@contoso.example", "emailrouteraccessapproval": ApprovalPending})
	mb, ok := e.r.MailboxOf(q)
	if !ok {
		t.Fatal("a new queue has no mailbox")
	}
	row := e.must(200, "GET", "mailboxes("+mb+")?$select=name,emailaddress,emailrouteraccessapproval,_regardingobjectid_value", nil)
	if row.str("name") != "Portal Invitations" || row.str("emailaddress") != "invitations@contoso.example" ||
		num(row.json["emailrouteraccessapproval"]) != ApprovalPending || row.str("_regardingobjectid_value") != q {
		t.Fatalf("queue mailbox: %s", row.body)
	}
	id := e.send("queues("+q+")", "From the queue", true, "ada@example.com")
	e.r.RunEmailSync()
	e.wantStatus(id, 1, EmailPendingSend)
	// "Process emails only for approved queues" off: the queue's mailbox sends.
	e.must(204, "PATCH", "organizations("+OrganizationID+")", map[string]any{"requireapprovalforqueueemail": false})
	if r := e.r.RunEmailSync(); r.Sent != 1 {
		t.Fatalf("after the setting: %+v", r)
	}
	e.wantStatus(id, 1, EmailSent)

	// Approving the queue (the older way) approves its mailbox, and back.
	e.must(204, "PATCH", "queues("+q+")", map[string]any{"emailrouteraccessapproval": ApprovalApproved})
	if r, _ := e.r.Row("mailbox", mb); r["emailrouteraccessapproval"] != ApprovalApproved {
		t.Fatalf("mailbox approval after the queue's: %v", r["emailrouteraccessapproval"])
	}
	if err := e.r.SetMailbox(mb, map[string]any{"emailrouteraccessapproval": ApprovalRejected}); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.r.Row("queue", q); r["emailrouteraccessapproval"] != ApprovalRejected {
		t.Fatalf("queue approval after the mailbox's: %v", r["emailrouteraccessapproval"])
	}
}

func TestEmailSyncBounceFails(t *testing.T) {
	e := startMail(t, EmailSyncOptions{Manual: true})
	bad := e.sendAsUser("Invitation", "ada@example.com", "ghost@nowhere.invalid")
	good := e.sendAsUser("Other", "ada@example.com")
	if r := e.r.RunEmailSync(); r.Failed != 1 || r.Sent != 1 {
		t.Fatalf("cycle: %+v", r)
	}
	e.wantStatus(bad, 0, EmailFailed)
	e.wantStatus(good, 1, EmailSent)
	alerts := e.alerts(e.mailbox)
	want := "The email message \"Invitation\" could not be sent through the mailbox Portal Mailer because the email server refused its recipient."
	if len(alerts) != 1 || num(alerts[0]["level"]) != AlertError || !strings.HasPrefix(alerts[0]["text"].(string), want) ||
		!strings.Contains(alerts[0]["text"].(string), "ghost@nowhere.invalid") {
		t.Fatalf("alerts: %v", alerts)
	}
	if m := e.outbox(bad); m.Status != EmailFailed || m.Alert != alerts[0]["text"] {
		t.Fatalf("outbox: %+v", m)
	}

	// A custom rule.
	e2 := startMail(t, EmailSyncOptions{Manual: true, Bounce: func(a string) bool { return strings.HasPrefix(a, "bounce") }})
	id := e2.sendAsUser("x", "bounce@example.com")
	ok := e2.sendAsUser("y", "ada@nowhere.invalid")
	e2.r.RunEmailSync()
	e2.wantStatus(id, 0, EmailFailed)
	e2.wantStatus(ok, 1, EmailSent)
}

func TestEmailSyncMessageLimit(t *testing.T) {
	e := startMail(t, EmailSyncOptions{Manual: true, Limits: MailboxLimits{Messages: 2}})
	ids := []string{e.sendAsUser("m1", "a@example.com"), e.sendAsUser("m2", "b@example.com"), e.sendAsUser("m3", "c@example.com")}
	if r := e.r.RunEmailSync(); r.Sent != 2 || r.Held != 1 {
		t.Fatalf("cycle: %+v", r)
	}
	e.wantStatus(ids[2], 1, EmailPendingSend)
	if n := e.r.QueuedEmails(); n != 1 {
		t.Fatalf("queued %d, want the held one", n)
	}
	alerts := e.alerts(e.mailbox)
	if len(alerts) != 1 || num(alerts[0]["level"]) != AlertWarning ||
		!strings.Contains(alerts[0]["text"].(string), "ErrorSubmissionQuotaExceeded") || !strings.Contains(alerts[0]["text"].(string), "sending the email message m3 through the mailbox Portal Mailer") {
		t.Fatalf("alerts: %v", alerts)
	}
	retry := e.clock.Now().Add(time.Minute)
	mb := e.must(200, "GET", "mailboxes("+e.mailbox+")?$select=postponesendinguntil", nil)
	if mb.str("postponesendinguntil") != retry.Format(time.RFC3339) {
		t.Fatalf("postponed: %s, want %s", mb.body, retry)
	}
	// A newer email waits behind the held one, in order.
	ids = append(ids, e.sendAsUser("m4", "d@example.com"))
	e.clock.Add(59 * time.Second)
	if r := e.r.RunEmailSync(); r.Sent != 0 || r.Held != 1 {
		t.Fatalf("cycle inside the window: %+v", r)
	}
	e.clock.Add(time.Second)
	if r := e.r.RunEmailSync(); r.Sent != 2 {
		t.Fatalf("cycle after the window: %+v", r)
	}
	for _, id := range ids {
		e.wantStatus(id, 1, EmailSent)
	}
	if m3, m4 := e.outbox(ids[2]), e.outbox(ids[3]); !m3.SentOn.Equal(retry) || !m4.SentOn.Equal(retry) {
		t.Fatalf("sent on %v and %v, want %v", m3.SentOn, m4.SentOn, retry)
	}
}

func TestEmailSyncRecipientLimit(t *testing.T) {
	e := startMail(t, EmailSyncOptions{Manual: true, Limits: MailboxLimits{Recipients: 3, RecipientWindow: time.Hour, Messages: -1}})
	first := e.sendAsUser("two", "a@example.com", "b@example.com")
	second := e.sendAsUser("two more", "c@example.com", "d@example.com")
	if r := e.r.RunEmailSync(); r.Sent != 1 || r.Held != 1 {
		t.Fatalf("cycle: %+v", r)
	}
	e.wantStatus(first, 1, EmailSent)
	e.wantStatus(second, 1, EmailPendingSend)
	e.clock.Add(time.Hour - time.Second)
	e.r.RunEmailSync()
	e.wantStatus(second, 1, EmailPendingSend)
	e.clock.Add(time.Second)
	e.r.RunEmailSync()
	e.wantStatus(second, 1, EmailSent)
}

func TestEmailSyncLimitsPerMailbox(t *testing.T) {
	e := startMail(t, EmailSyncOptions{Manual: true, Limits: MailboxLimits{Messages: 1}})
	other, err := e.r.Insert("systemuser", map[string]any{"fullname": "Other Sender", "internalemailaddress": "other@contoso.example"})
	if err != nil {
		t.Fatal(err)
	}
	a := e.sendAsUser("a", "x@example.com")
	b := e.send("systemusers("+other+")", "b", true, "x@example.com")
	if r := e.r.RunEmailSync(); r.Sent != 2 {
		t.Fatalf("one message each: %+v", r)
	}
	e.wantStatus(a, 1, EmailSent)
	e.wantStatus(b, 1, EmailSent)
}

func TestMailboxLimitsOverLimit(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	m := newMailSync(nil, EmailSyncOptions{Limits: MailboxLimits{Messages: 2, Recipients: 10, RecipientWindow: time.Hour}})
	if _, over := m.overLimit("mb", 10, t0); over {
		t.Fatal("an empty window is over")
	}
	m.record("mb", 4, t0)
	m.record("mb", 4, t0.Add(10*time.Second))
	// Two messages in the minute: the next one waits for the first to leave.
	if until, over := m.overLimit("mb", 1, t0.Add(20*time.Second)); !over || !until.Equal(t0.Add(time.Minute)) {
		t.Fatalf("message limit: %v %v", until, over)
	}
	// After the minute, 8 of 10 recipients are used: 2 fit, 3 wait for the
	// first submission to leave the hour, 7 for both.
	at := t0.Add(2 * time.Minute)
	if _, over := m.overLimit("mb", 2, at); over {
		t.Fatal("2 recipients should fit")
	}
	if until, over := m.overLimit("mb", 3, at); !over || !until.Equal(t0.Add(time.Hour)) {
		t.Fatalf("3 recipients: %v %v", until, over)
	}
	if until, over := m.overLimit("mb", 7, at); !over || !until.Equal(t0.Add(time.Hour+10*time.Second)) {
		t.Fatalf("7 recipients: %v %v", until, over)
	}
	// Larger than the whole budget: waits for an empty window, then goes.
	if until, over := m.overLimit("mb", 50, at); !over || !until.Equal(t0.Add(time.Hour+10*time.Second)) {
		t.Fatalf("50 recipients: %v %v", until, over)
	}
	if _, over := m.overLimit("mb", 50, t0.Add(2*time.Hour)); over {
		t.Fatal("50 recipients in an empty window")
	}
	// Off.
	off := newMailSync(nil, EmailSyncOptions{Limits: MailboxLimits{Messages: -1, Recipients: -1}})
	for i := range 100 {
		off.record("mb", 1000, t0.Add(time.Duration(i)))
	}
	if _, over := off.overLimit("mb", 1000, t0.Add(time.Second)); over {
		t.Fatal("limits off")
	}
}

func TestMailboxLimitsScaled(t *testing.T) {
	got := MailboxLimits{}.Scaled(0.01)
	want := MailboxLimits{MessageWindow: 600 * time.Millisecond, Messages: 1, RecipientWindow: 864 * time.Second, Recipients: 100}
	if got != want {
		t.Fatalf("Scaled(0.01) = %+v, want %+v", got, want)
	}
	if got := (MailboxLimits{Messages: -1}).Scaled(10); got.Messages != -1 || got.Recipients != 100000 || got.MessageWindow != 10*time.Minute {
		t.Fatalf("Scaled(10) = %+v", got)
	}
	if d := DefaultMailboxLimits(); d.Messages != 30 || d.Recipients != 10000 || d.MessageWindow != time.Minute || d.RecipientWindow != 24*time.Hour {
		t.Fatalf("defaults: %+v", d)
	}
}

func TestEmailSyncBatchRollbackQueuesNothing(t *testing.T) {
	e := startMail(t, EmailSyncOptions{Manual: true})
	id := e.create("emails", map[string]any{"subject": "rolled back", "email_activity_parties": []any{
		map[string]any{"participationtypemask": 1, "partyid_systemuser@odata.bind": "/systemusers(" + e.user + ")"},
		map[string]any{"participationtypemask": 2, "addressused": "a@example.com"},
	}})
	bb := newBatch().changeSet("changeset_mail",
		csOp{"1", "POST", e.r.APIURL + "emails(" + id + ")/Microsoft.Dynamics.CRM.SendEmail", `{"IssueSend":true}`},
		csOp{"2", "POST", e.r.APIURL + "contacts", `{"nosuchcolumn":"x"}`},
	)
	status, parts, _ := sendBatch(t, e.client, bb)
	if status != 400 || len(parts) != 1 || parts[0].status != 400 {
		t.Fatalf("change set: %d %+v, want one 400 part", status, parts)
	}
	e.wantStatus(id, 0, EmailDraft)
	if len(e.r.Outbox()) != 0 {
		t.Fatal("a rolled back SendEmail reached the outbox")
	}
	if r := e.r.RunEmailSync(); r != (EmailSyncResult{}) {
		t.Fatalf("cycle: %+v", r)
	}
}

func TestEmailSyncDeletedEmailIsDropped(t *testing.T) {
	e := startMail(t, EmailSyncOptions{Manual: true, Delay: time.Minute})
	id := e.sendAsUser("gone", "a@example.com")
	e.must(204, "DELETE", "emails("+id+")", nil)
	e.clock.Add(time.Minute)
	if r := e.r.RunEmailSync(); r != (EmailSyncResult{}) {
		t.Fatalf("cycle: %+v", r)
	}
	if n := e.r.QueuedEmails(); n != 0 {
		t.Fatalf("%d emails still queued after the only one was deleted", n)
	}
}

// TestEmailSyncBackground runs the background cycle on the real clock: the
// email moves on its own, and an email held by a limit goes when the window
// allows.
func TestEmailSyncBackground(t *testing.T) {
	c := startPlain(t, Options{EmailSync: EmailSyncOptions{Delay: 20 * time.Millisecond, Limits: MailboxLimits{Messages: 1, MessageWindow: 100 * time.Millisecond}}})
	user, err := c.r.Insert("systemuser", map[string]any{"fullname": "Bg", "internalemailaddress": "bg@contoso.example"})
	if err != nil {
		t.Fatal(err)
	}
	e := &mailEnv{client: c, user: user}
	a := e.sendAsUser("a", "x@example.com")
	b := e.sendAsUser("b", "y@example.com")
	for _, id := range []string{a, b} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, st, _ := e.status(id)
			if st == EmailSent {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("email %s still in status %d", id, st)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := c.r.QueuedEmails(); n != 0 {
		t.Fatalf("%d emails queued after both were sent", n)
	}
	c.r.Server.Close() // stops the cycle; a second Close is harmless
	c.r.Server.Close()
}

func TestSeedDemoMailboxes(t *testing.T) {
	clk := newFakeClock()
	c := startPlain(t, Options{Now: clk.Now, EmailSync: EmailSyncOptions{Manual: true}})
	d, err := SeedDemo(c.r.Server)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Mailboxes) != 3 || d.QueueID != DemoQueueID {
		t.Fatalf("demo mailboxes: %+v", d.Mailboxes)
	}
	for name, mb := range d.Mailboxes {
		row := c.must(200, "GET", "mailboxes("+mb+")?$select=name,emailaddress,emailrouteraccessapproval,outgoingemaildeliverymethod,enabledforoutgoingemail,isemailaddressapprovedbyo365admin,outgoingemailstatus", nil)
		if row.str("emailaddress") == "" || num(row.json["emailrouteraccessapproval"]) != ApprovalApproved || num(row.json["outgoingemaildeliverymethod"]) != OutgoingServerSideSync ||
			row.json["enabledforoutgoingemail"] != true || row.json["isemailaddressapprovedbyo365admin"] != true || num(row.json["outgoingemailstatus"]) != 1 {
			t.Errorf("%s mailbox: %s", name, row.body)
		}
	}
	q := c.must(200, "GET", "queues("+DemoQueueID+")?$select=emailaddress,emailrouteraccessapproval,_defaultmailbox_value", nil)
	if q.str("_defaultmailbox_value") != d.Mailboxes["queue"] || num(q.json["emailrouteraccessapproval"]) != ApprovalApproved {
		t.Fatalf("queue: %s", q.body)
	}
	// The contact status choice offers Delivered.
	c.must(204, "PATCH", "contacts("+d.ContactIDs[0]+")", map[string]any{ColInviteStatus: InviteDelivered})
}
