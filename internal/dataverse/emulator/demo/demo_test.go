package demo

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

type apiCaller struct {
	t   *testing.T
	emu *emulator.Running
}

func (a apiCaller) do(method, path string, body any) map[string]any {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.emu.APIURL+strings.ReplaceAll(path, " ", "%20"), rd)
	req.Header.Set("Authorization", "Bearer "+a.emu.STS().IssueToken(a.emu.ClientID))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "return=representation")
	resp, err := a.emu.HTTPClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		a.t.Fatalf("%s %s: %s %s", method, path, resp.Status, data)
	}
	_ = json.Unmarshal(data, &out)
	return out
}

func TestInviteButtonSetsColumnsAsTheUserAndFiresWebhook(t *testing.T) {
	emu, err := emulator.StartTLS(emulator.Options{}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	d, err := emulator.SeedDemo(emu.Server)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var deliveries []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		deliveries = append(deliveries, body)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	api := apiCaller{t, emu}
	ep := api.do("POST", "serviceendpoints", map[string]any{"name": "test", "url": hook.URL, "contract": 8, "authtype": 4, "authvalue": "k"})
	filters := api.do("GET", "sdkmessagefilters?$select=sdkmessagefilterid&$filter=primaryobjecttypecode eq 'contact' and _sdkmessageid_value eq "+emulator.SdkMessageUpdateID, nil)
	filterID := filters["value"].([]any)[0].(map[string]any)["sdkmessagefilterid"].(string)
	api.do("POST", "sdkmessageprocessingsteps", map[string]any{
		"name": "invite", "stage": 40, "mode": 1, "rank": 1, "supporteddeployment": 0,
		"filteringattributes":                     emulator.ColInviteStatus,
		"eventhandler_serviceendpoint@odata.bind": "/serviceendpoints(" + ep["serviceendpointid"].(string) + ")",
		"sdkmessageid@odata.bind":                 "/sdkmessages(" + emulator.SdkMessageUpdateID + ")",
		"sdkmessagefilterid@odata.bind":           "/sdkmessagefilters(" + filterID + ")",
	})

	h, err := New(Config{
		Emulator: emu.Server, APIURL: emu.APIURL, HTTPClient: emu.HTTPClient, ClientID: emu.ClientID,
		ActAs: d.AdminUserID, ActAsName: "Avery Admin", Prefix: "/_demo",
		Portals: []Portal{{Name: "Contoso Partner Portal", Roles: []string{"Partners", "Customers"}, DefaultRoles: []string{"Partners"}}},
		Columns: Columns{Status: emulator.ColInviteStatus, Portal: emulator.ColInvitePortal, Roles: emulator.ColInviteRoles,
			InvitedOn: emulator.ColInvitedOn, Error: emulator.ColInviteError, Requested: emulator.InviteRequested,
			Sent: emulator.InviteSent, Failed: emulator.InviteFailed, Redeemed: emulator.InviteRedeemed},
	})
	if err != nil {
		t.Fatal(err)
	}
	site := httptest.NewServer(h)
	t.Cleanup(site.Close)

	resp, err := http.Get(site.URL + "/_demo/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Count(string(page), "Invite to portal</button>") != 10 {
		t.Fatalf("contacts page: %d, %d buttons (want 10: 12 contacts less one without email and one inactive)", resp.StatusCode, strings.Count(string(page), "Invite to portal</button>"))
	}

	contact := d.ContactIDs[0]
	form := url.Values{"contact": {contact}, "portal": {"Contoso Partner Portal"}, "role": {"Partners", "Not A Role"}}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noRedirect.PostForm(site.URL+"/_demo/invite", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "flash=Invitation+requested") {
		t.Fatalf("invite: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	row, _ := emu.Row("contact", contact)
	if got := row[emulator.ColInviteStatus]; got != emulator.InviteRequested && got != float64(emulator.InviteRequested) && got != int64(emulator.InviteRequested) {
		t.Errorf("status = %v (%T), want Requested", got, got)
	}
	if row[emulator.ColInviteRoles] != "Partners" {
		t.Errorf("roles = %v, want only the offered role Partners", row[emulator.ColInviteRoles])
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		emu.WaitWebhooks()
		mu.Lock()
		n := len(deliveries)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deliveries) != 1 {
		t.Fatalf("%d webhook deliveries, want 1", len(deliveries))
	}
	if got := deliveries[0]["InitiatingUserId"]; got != d.AdminUserID {
		t.Errorf("InitiatingUserId = %v, want the CRM user %s", got, d.AdminUserID)
	}

	// A cross-site form post is refused.
	req, _ := http.NewRequest("POST", site.URL+"/_demo/invite", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site post: %d, want 403", resp.StatusCode)
	}
}

func TestOutboxShowsSentEmailsWithLinks(t *testing.T) {
	emu, err := emulator.StartTLS(emulator.Options{}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	d, err := emulator.SeedDemo(emu.Server)
	if err != nil {
		t.Fatal(err)
	}
	api := apiCaller{t, emu}
	email := api.do("POST", "emails", map[string]any{
		"subject": "You're invited <b>now</b>", "description": `<p>Hello</p><a href="https://portal.example/invitation?code=abc&amp;x=1">Accept</a>`,
		"directioncode": true,
		"email_activity_parties": []any{
			map[string]any{"participationtypemask": 1, "partyid_systemuser@odata.bind": "/systemusers(" + d.MailerUserID + ")"},
			map[string]any{"participationtypemask": 2, "partyid_contact@odata.bind": "/contacts(" + d.ContactIDs[1] + ")"},
		},
	})
	api.do("POST", "emails("+email["activityid"].(string)+")/Microsoft.Dynamics.CRM.SendEmail", map[string]any{"IssueSend": true, "TrackingToken": ""})

	h, err := New(Config{Emulator: emu.Server, APIURL: emu.APIURL, HTTPClient: emu.HTTPClient, Prefix: "/_demo"})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/_demo/outbox", nil))
	body := rec.Body.String()
	if rec.Code != 200 {
		t.Fatalf("outbox: %d", rec.Code)
	}
	if !strings.Contains(body, `href="https://portal.example/invitation?code=abc&amp;x=1"`) {
		t.Errorf("outbox lacks the email's link:\n%s", body)
	}
	if strings.Contains(body, "<b>now</b>") {
		t.Error("subject not escaped")
	}
}

func TestOutboxShowsDeliveryStateAndAlert(t *testing.T) {
	emu, err := emulator.StartTLS(emulator.Options{EmailSync: emulator.EmailSyncOptions{Manual: true}}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	d, err := emulator.SeedDemo(emu.Server)
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.SetMailbox(d.Mailboxes["mailer"], map[string]any{"emailrouteraccessapproval": emulator.ApprovalPending}); err != nil {
		t.Fatal(err)
	}
	api := apiCaller{t, emu}
	send := func(subject, from string) {
		email := api.do("POST", "emails", map[string]any{
			"subject": subject, "description": "<p>Hello</p>", "directioncode": true,
			"email_activity_parties": []any{
				map[string]any{"participationtypemask": 1, "partyid_" + strings.TrimSuffix(strings.SplitN(from, "(", 2)[0], "s") + "@odata.bind": "/" + from},
				map[string]any{"participationtypemask": 2, "partyid_contact@odata.bind": "/contacts(" + d.ContactIDs[1] + ")"},
			},
		})
		api.do("POST", "emails("+email["activityid"].(string)+")/Microsoft.Dynamics.CRM.SendEmail", map[string]any{"IssueSend": true})
	}
	h, err := New(Config{Emulator: emu.Server, APIURL: emu.APIURL, HTTPClient: emu.HTTPClient, Prefix: "/_demo"})
	if err != nil {
		t.Fatal(err)
	}
	page := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/_demo/outbox", nil))
		if rec.Code != 200 {
			t.Fatalf("outbox: %d", rec.Code)
		}
		return rec.Body.String()
	}
	const refresh = `<meta http-equiv="refresh"`

	send("Held invitation", "systemusers("+d.MailerUserID+")")
	emu.RunEmailSync()
	body := page()
	for _, want := range []string{
		`<span class="status status-PendingSend">Pending Send</span>`,
		"(mailbox Portal Mailer)",
		"<strong>Mailbox alert:</strong> One or more mailboxes have been disabled for sending/receiving email because their email addresses have not been approved.",
		`<tr class="not-ready"><td>Portal Mailer</td><td>portal-mailer@contoso.example</td><td>Pending Approval</td><td>Server-Side Synchronization</td><td>Yes</td><td>Failure</td></tr>`,
		`<tr><td>Portal Invitations</td><td>invitations@contoso.example</td><td>Approved</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("outbox lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, refresh) {
		t.Error("a page whose only email is held by an alert reloads itself")
	}

	// An email on its way makes the page reload until it is sent.
	send("Queued invitation", "queues("+d.QueueID+")")
	if body := page(); !strings.Contains(body, refresh) || strings.Count(body, "status-PendingSend") != 2 {
		t.Errorf("outbox with an email on its way:\n%s", body)
	}
	emu.RunEmailSync()
	body = page()
	if !strings.Contains(body, `<span class="status status-Sent">Sent</span> · sent on `) || !strings.Contains(body, "1 delivery attempt") || strings.Contains(body, refresh) {
		t.Errorf("outbox after the cycle:\n%s", body)
	}
}

func TestStatusLabelDelivered(t *testing.T) {
	h := &handler{cfg: Config{Columns: Columns{Requested: emulator.InviteRequested, Sent: emulator.InviteSent, Failed: emulator.InviteFailed,
		Redeemed: emulator.InviteRedeemed, Delivered: emulator.InviteDelivered}}}
	if got := h.statusLabel(emulator.InviteDelivered); got != "Delivered" {
		t.Errorf("label %q, want Delivered", got)
	}
	h.cfg.Columns.Delivered = 0
	if got := h.statusLabel(emulator.InviteDelivered); got != "100000004" {
		t.Errorf("without a Delivered option: %q", got)
	}
}
