package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dvtest"
	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/redistest"
)

// dvContacts is the contact finder the lead wires, over the Web API.
type dvContacts struct{ dv *dataverse.Client }

func (c dvContacts) FindContactByEmail(ctx context.Context, email string) (string, error) {
	page, err := c.dv.QueryPage(ctx, "contacts", &dataverse.Query{Select: []string{"contactid"},
		Filter: "emailaddress1 eq '" + strings.ReplaceAll(email, "'", "''") + "' and statecode eq 0", Top: 2}, "")
	if err != nil {
		return "", fmt.Errorf("find contact by email: %w", err)
	}
	switch len(page.Records) {
	case 0:
		return "", fmt.Errorf("find contact by email: %w", invite.ErrNotFound)
	case 1:
		return page.Records[0].Str("contactid"), nil
	}
	return "", fmt.Errorf("find contact by email: %w", ErrAmbiguousEmail)
}

// TestAgainstEmulator runs the API over the real invitation service and the
// Dataverse emulator: the whole life of an invitation, the domain refusals,
// and every body checked against the OpenAPI document.
func TestAgainstEmulator(t *testing.T) {
	org := dvtest.Start(t, dataverse.Config{})
	em, demo, dv := org.Emu, org.Demo, org.DV
	const portal = "Contoso Partner Portal"
	svc, err := invite.New(dv, invite.Config{Portals: []invite.Portal{{Name: portal, WebsiteID: emulator.DemoSiteID,
		BaseURL: "https://partners.contoso.example", DefaultRoles: []string{"Partners"},
		Email: invite.EmailSettings{Sender: "systemuser:" + emulator.DemoMailerUserID}}}})
	if err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t)
	handler, err := New(Config{Keys: []string{testKey}, Invites: svc, Contacts: dvContacts{dv}, Redis: rs.Client(t),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(handler)
	t.Cleanup(ts.Close)
	h := &harness{t: t, url: ts.URL, client: ts.Client()}
	d := loadDoc(t)
	ops := d.operations(t)
	check := func(op string, r response, status int) {
		t.Helper()
		if r.status != status {
			t.Fatalf("%s: status %d, want %d: %s", op, r.status, status, r.raw)
		}
		resp, ok := ops[op].Responses[fmt.Sprint(status)]
		if !ok {
			t.Fatalf("%s: %d not documented", op, status)
		}
		checkResponse(t, d, op, r, resp)
	}

	contact := demo.ContactIDs[0]
	row, _ := em.Row("contact", contact)
	email, _ := row["emailaddress1"].(string)
	if email == "" {
		t.Fatal("demo contact 0 has no email")
	}

	r := h.do("POST", "/api/v1/invitations", `{"email":"`+strings.ToUpper(email)+`","portal":"`+portal+`","roles":["Partners","Customers"]}`,
		"Idempotency-Key", "e2e-1")
	check("POST /api/v1/invitations", r, 201)
	inv := r.body["invitation"].(map[string]any)
	id := inv["id"].(string)
	if inv["contact"].(map[string]any)["id"] != contact || inv["status"] != "sent" || inv["open"] != true || r.body["email_sent"] != true {
		t.Errorf("created: %s", r.raw)
	}
	if len(em.Outbox()) != 1 {
		t.Fatalf("outbox has %d emails", len(em.Outbox()))
	}
	again := h.do("POST", "/api/v1/invitations", `{"email":"`+email+`","portal":"`+portal+`","roles":["Partners","Customers"]}`,
		"Idempotency-Key", "e2e-1")
	if again.status != 201 || again.header.Get(replayedHeader) != "true" {
		t.Errorf("replay: %d %v", again.status, again.header)
	}
	// Without the key the service itself reuses the open invitation.
	check("POST /api/v1/invitations", h.do("POST", "/api/v1/invitations", `{"contact_id":"`+contact+`","portal":"`+portal+`"}`), 200)
	if len(em.Outbox()) != 1 {
		t.Errorf("outbox has %d emails after the repeats", len(em.Outbox()))
	}

	check("GET /api/v1/invitations/{id}", h.do("GET", "/api/v1/invitations/"+id, ""), 200)
	r = h.do("GET", "/api/v1/invitations?contact="+contact+"&status=open", "")
	check("GET /api/v1/invitations", r, 200)
	if r.body["count"] != float64(1) {
		t.Errorf("list: %s", r.raw)
	}
	check("POST /api/v1/invitations/{id}/resend", h.do("POST", "/api/v1/invitations/"+id+"/resend", ""), 200)
	if len(em.Outbox()) != 2 {
		t.Errorf("outbox has %d emails after resend", len(em.Outbox()))
	}
	check("POST /api/v1/invitations/{id}/revoke", h.do("POST", "/api/v1/invitations/"+id+"/revoke", ""), 204)
	r = h.do("GET", "/api/v1/invitations/"+id, "")
	check("GET /api/v1/invitations/{id}", r, 200)
	if r.body["status"] != "inactive" || r.body["open"] != false {
		t.Errorf("after revoke: %s", r.raw)
	}
	check("POST /api/v1/invitations/{id}/resend", h.do("POST", "/api/v1/invitations/"+id+"/resend", ""), 409)

	for _, tt := range []struct {
		body, typ string
		status    int
	}{
		{`{"contact_id":"` + demo.ContactNoEmailID + `","portal":"` + portal + `"}`, typeNoEmail, 422},
		{`{"contact_id":"` + demo.ContactInactiveID + `","portal":"` + portal + `"}`, typeInactiveContact, 422},
		{`{"contact_id":"` + demo.ContactIDs[1] + `","portal":"` + portal + `","roles":["Astronauts"]}`, typeUnknownRole, 422},
		{`{"contact_id":"` + demo.ContactIDs[1] + `","portal":"Elsewhere"}`, typeUnknownPortal, 422},
		{`{"contact_id":"00000000-0000-4000-8000-00000000dead","portal":"` + portal + `"}`, typeContactNotFound, 422},
		{`{"email":"nobody@nowhere.example","portal":"` + portal + `"}`, typeContactNotFound, 422},
	} {
		r := h.do("POST", "/api/v1/invitations", tt.body)
		wantProblem(t, r, tt.status, tt.typ)
		check("POST /api/v1/invitations", r, tt.status)
	}
	r = h.do("GET", "/api/v1/invitations/00000000-0000-4000-8000-00000000dead", "")
	wantProblem(t, r, http.StatusNotFound, typeNotFound)
	check("GET /api/v1/invitations/{id}", r, 404)
}
