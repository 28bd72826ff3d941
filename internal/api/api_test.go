package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
)

func TestNewValidatesConfig(t *testing.T) {
	inv := happyInvites(t)
	base := Config{Keys: []string{"k"}, Invites: inv, Contacts: &fakeContacts{}}
	for name, cfg := range map[string]Config{
		"no keys":   {Invites: inv, Contacts: &fakeContacts{}},
		"empty key": {Keys: []string{"k", " "}, Invites: inv, Contacts: &fakeContacts{}},
		"no redis":  base,
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t, happyInvites(t))
	for _, tt := range []struct {
		name, auth, challenge string
	}{
		{"no header", "", `Bearer realm="api"`},
		{"wrong key", "Bearer nope", `Bearer realm="api", error="invalid_token"`},
		{"wrong key same length", "Bearer " + strings.Repeat("x", len(testKey)), `Bearer realm="api", error="invalid_token"`},
		{"key prefix", "Bearer " + testKey[:10], `Bearer realm="api", error="invalid_token"`},
		{"basic scheme", "Basic " + testKey, `Bearer realm="api", error="invalid_token"`},
		{"no scheme", testKey, `Bearer realm="api", error="invalid_token"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/invitations", "/api/v1/invitations/" + invitationID} {
				r := h.do("GET", path, "", "Authorization", tt.auth)
				wantProblem(t, r, http.StatusUnauthorized, "about:blank")
				if got := r.header.Get("WWW-Authenticate"); got != tt.challenge {
					t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
				}
			}
		})
	}
	if n := h.invites.count("List") + h.invites.count("Get"); n != 0 {
		t.Errorf("service called %d times without a valid key", n)
	}
	// Every configured key works, the scheme is case-insensitive, and the
	// document needs no key.
	for _, auth := range []string{"Bearer " + testKey, "bearer " + otherKey} {
		if r := h.do("GET", "/api/v1/invitations/"+invitationID, "", "Authorization", auth); r.status != http.StatusOK {
			t.Errorf("%q: status %d", auth, r.status)
		}
	}
	if r := h.do("GET", "/api/v1/openapi.json", "", "Authorization", ""); r.status != http.StatusOK {
		t.Errorf("openapi.json without a key: %d", r.status)
	}
}

func TestCreateByContactID(t *testing.T) {
	inv := happyInvites(t)
	var got invite.InviteRequest
	inv.InviteFn = func(_ context.Context, req invite.InviteRequest) (*invite.InviteResult, error) {
		got = req
		return sampleResult(true), nil
	}
	h := newHarness(t, inv)
	r := h.do("POST", "/api/v1/invitations", `{"contact_id":"{9F1C2E55-3B1A-4C8E-9D4B-2A6F0E7C1D20}","portal":" Contoso Partner Portal ",
		"roles":["Partners"],"expires_at":"2030-01-31T17:00:00+01:00"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	want := invite.InviteRequest{ContactID: contactID, Portal: "Contoso Partner Portal", Roles: []string{"Partners"},
		ExpiresAt: time.Date(2030, 1, 31, 16, 0, 0, 0, time.UTC), Source: "api"}
	if got.ContactID != want.ContactID || got.Portal != want.Portal || !slices.Equal(got.Roles, want.Roles) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || got.Source != want.Source {
		t.Errorf("Invite(%+v), want %+v", got, want)
	}
	if loc := r.header.Get("Location"); loc != "/api/v1/invitations/"+invitationID {
		t.Errorf("Location = %q", loc)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
	}
	if r.body["created"] != true || r.body["reused"] != false || r.body["email_sent"] != true || r.body["email_id"] != emailID {
		t.Errorf("result = %s", r.raw)
	}
	i := r.body["invitation"].(map[string]any)
	c := i["contact"].(map[string]any)
	for k, v := range map[string]any{
		"id": invitationID, "portal": "Contoso Partner Portal", "website_id": websiteID, "type": "single",
		"status": "sent", "open": true, "expires_at": "2026-04-01T09:30:00Z", "max_redemptions": float64(1),
		"redemptions": float64(0), "redeemed_contact_id": nil, "created_at": "2026-03-02T08:30:00Z",
	} {
		if i[k] != v {
			t.Errorf("invitation.%s = %v, want %v", k, i[k], v)
		}
	}
	if c["id"] != contactID || c["email"] != "ada.lovelace@example.com" || c["first_name"] != "Ada" || c["has_portal_account"] != false {
		t.Errorf("contact = %v", c)
	}
	if strings.Contains(string(r.raw), "SECRETCODE") || strings.Contains(string(r.raw), "code=") {
		t.Errorf("response leaks the invitation code: %s", r.raw)
	}
}

func TestCreateReusedIs200(t *testing.T) {
	inv := happyInvites(t)
	inv.InviteFn = func(context.Context, invite.InviteRequest) (*invite.InviteResult, error) {
		return sampleResult(false), nil
	}
	h := newHarness(t, inv)
	r := h.do("POST", "/api/v1/invitations", `{"contact_id":"`+contactID+`","portal":"p"}`)
	if r.status != http.StatusOK || r.body["reused"] != true || r.body["email_id"] != nil {
		t.Errorf("status %d: %s", r.status, r.raw)
	}
}

func TestCreateByEmail(t *testing.T) {
	inv := happyInvites(t)
	var got string
	inv.InviteFn = func(_ context.Context, req invite.InviteRequest) (*invite.InviteResult, error) {
		got = req.ContactID
		return sampleResult(true), nil
	}
	h := newHarness(t, inv)
	r := h.do("POST", "/api/v1/invitations", `{"email":"Ada.Lovelace@example.com","portal":"p"}`)
	if r.status != http.StatusCreated || got != contactID {
		t.Fatalf("status %d, contact %q: %s", r.status, got, r.raw)
	}

	r = h.do("POST", "/api/v1/invitations", `{"email":"nobody@example.com","portal":"p"}`)
	wantProblem(t, r, http.StatusUnprocessableEntity, typeContactNotFound)
	if p := pointers(r); !slices.Equal(p, []string{"#/email"}) {
		t.Errorf("pointers = %v", p)
	}
	r = h.do("POST", "/api/v1/invitations", `{"email":"shared@example.com","portal":"p"}`)
	wantProblem(t, r, http.StatusUnprocessableEntity, typeAmbiguousEmail)
	if inv.count("Invite") != 1 {
		t.Errorf("Invite called %d times", inv.count("Invite"))
	}
}

func TestCreateRejectsBadRequests(t *testing.T) {
	h := newHarness(t, &fakeInvites{t: t}, func(c *Config) { c.MaxBodyBytes = 512 })
	ok := `{"contact_id":"` + contactID + `","portal":"p"}`
	for _, tt := range []struct {
		name, body, contentType string
		status                  int
		pointers                []string
	}{
		{"malformed", `{"contact_id":`, "", 400, nil},
		{"syntax error", `{"portal" "p"}`, "", 400, nil},
		{"unknown field", `{"contact_id":"` + contactID + `","portal":"p","role":"x"}`, "", 400, []string{"#/role"}},
		{"wrong type", `{"contact_id":"` + contactID + `","portal":"p","roles":"Partners"}`, "", 400, []string{"#/roles"}},
		{"wrong element type", `{"contact_id":"` + contactID + `","portal":"p","roles":[1]}`, "", 400, []string{"#/roles"}},
		{"empty role", `{"contact_id":"` + contactID + `","portal":"p","roles":["a",""]}`, "", 400, []string{"#/roles/1"}},
		{"not an object", `["x"]`, "", 400, nil},
		{"empty body", ``, "application/json", 400, nil},
		{"two values", ok + ok, "", 400, nil},
		{"trailing garbage", ok + `x`, "", 400, nil},
		{"both contact and email", `{"contact_id":"` + contactID + `","email":"a@example.com","portal":"p"}`, "", 400, []string{"#/email"}},
		{"neither", `{"portal":"p"}`, "", 400, []string{"#/contact_id"}},
		{"bad guid", `{"contact_id":"42","portal":"p"}`, "", 400, []string{"#/contact_id"}},
		{"bad email", `{"email":"Ada <ada@example.com>","portal":"p"}`, "", 400, []string{"#/email"}},
		{"missing portal", `{"contact_id":"` + contactID + `"}`, "", 400, []string{"#/portal"}},
		{"several problems", `{"contact_id":"x","portal":"","expires_at":"soon"}`, "", 400, []string{"#/contact_id", "#/portal", "#/expires_at"}},
		{"past expiry", `{"contact_id":"` + contactID + `","portal":"p","expires_at":"2020-01-01T00:00:00Z"}`, "", 400, []string{"#/expires_at"}},
		{"text body", ok, "text/plain", 415, nil},
		{"form body", ok, "application/x-www-form-urlencoded", 415, nil},
		{"too large", `{"contact_id":"` + contactID + `","portal":"` + strings.Repeat("p", 600) + `"}`, "", 413, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.contentType != "" {
				hdr = []string{"Content-Type", tt.contentType}
			}
			r := h.do("POST", "/api/v1/invitations", tt.body, hdr...)
			typ := "about:blank"
			if tt.status == 400 {
				typ = typeInvalidRequest
			}
			wantProblem(t, r, tt.status, typ)
			if !slices.Equal(pointers(r), tt.pointers) {
				t.Errorf("pointers = %v, want %v", pointers(r), tt.pointers)
			}
		})
	}
	if n := h.invites.count("Invite"); n != 0 {
		t.Errorf("Invite called %d times", n)
	}
}

// The error table: every sentinel and infrastructure failure maps to one
// status and type, in one place.
func TestCreateMapsServiceErrors(t *testing.T) {
	connRefused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tt := range []struct {
		name       string
		err        error
		status     int
		typ        string
		retryAfter string
		pointers   []string
	}{
		{"contact not found", fmt.Errorf("invite contact x: %w", invite.ErrNotFound), 422, typeContactNotFound, "", []string{"#/contact_id"}},
		{"unknown portal", fmt.Errorf("portal %q: %w", "x", invite.ErrUnknownPortal), 422, typeUnknownPortal, "", []string{"#/portal"}},
		{"unknown role", fmt.Errorf("web role x: %w", invite.ErrUnknownRole), 422, typeUnknownRole, "", []string{"#/roles"}},
		{"no email", fmt.Errorf("invite: %w", invite.ErrNoEmail), 422, typeNoEmail, "", nil},
		{"inactive", fmt.Errorf("invite: %w", invite.ErrInactiveContact), 422, typeInactiveContact, "", nil},
		{"already portal user", fmt.Errorf("invite: %w", invite.ErrAlreadyPortalUser), 422, typeAlreadyPortalUser, "", nil},
		{"throttled", fmt.Errorf("read contact: %w", &dataverse.Error{StatusCode: 429, Code: "0x80072322", RetryAfter: 6500 * time.Millisecond}), 503, typeUnavailable, "7", nil},
		{"dataverse 503", fmt.Errorf("read contact: %w", &dataverse.Error{StatusCode: 503}), 503, typeUnavailable, "5", nil},
		{"dataverse unreachable", fmt.Errorf("read contact: %w", connRefused), 503, typeUnavailable, "5", nil},
		{"dataverse 400", fmt.Errorf("create: %w", &dataverse.Error{StatusCode: 400, Message: "column pinv_x does not exist"}), 500, "about:blank", "", nil},
		{"bug", errors.New("template: email: executing \"body\" at <.Secret>: nil pointer"), 500, "about:blank", "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inv := happyInvites(t)
			inv.InviteFn = func(context.Context, invite.InviteRequest) (*invite.InviteResult, error) { return nil, tt.err }
			h := newHarness(t, inv)
			r := h.do("POST", "/api/v1/invitations", `{"contact_id":"`+contactID+`","portal":"p"}`)
			wantProblem(t, r, tt.status, tt.typ)
			if got := r.header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			if !slices.Equal(pointers(r), tt.pointers) {
				t.Errorf("pointers = %v, want %v", pointers(r), tt.pointers)
			}
			if tt.status == 500 {
				// No internal detail leaks; the log has it, under the same request id.
				for _, leak := range []string{"template", "pinv_x", "nil pointer", "column"} {
					if strings.Contains(string(r.raw), leak) {
						t.Errorf("500 body leaks %q: %s", leak, r.raw)
					}
				}
				logs := h.logs.String()
				if !strings.Contains(logs, r.header.Get("X-Request-Id")) || !strings.Contains(logs, `"level":"ERROR"`) {
					t.Errorf("500 not logged with its request id: %s", logs)
				}
			}
		})
	}
}

func TestGetInvitation(t *testing.T) {
	inv := happyInvites(t)
	var asked string
	inv.GetFn = func(_ context.Context, id string) (*invite.Invitation, error) {
		asked = id
		if id != invitationID {
			return nil, fmt.Errorf("get invitation %s: %w", id, invite.ErrNotFound)
		}
		i := sampleInvitation()
		i.ContactID, i.ExpiresAt, i.RedeemedContactID = "", time.Time{}, contactID
		return i, nil
	}
	h := newHarness(t, inv)
	r := h.do("GET", "/api/v1/invitations/"+invitationID, "")
	if r.status != http.StatusOK || asked != invitationID {
		t.Fatalf("status %d asked %q: %s", r.status, asked, r.raw)
	}
	if r.body["id"] != invitationID || r.body["contact"] != nil || r.body["expires_at"] != nil || r.body["redeemed_contact_id"] != contactID {
		t.Errorf("body = %s", r.raw)
	}
	r = h.do("GET", "/api/v1/invitations/00000000-0000-0000-0000-000000000000", "")
	wantProblem(t, r, http.StatusNotFound, typeNotFound)
	if r.body["instance"] != "/api/v1/invitations/00000000-0000-0000-0000-000000000000" {
		t.Errorf("instance = %v", r.body["instance"])
	}
}

func TestListInvitations(t *testing.T) {
	inv := happyInvites(t)
	var got []invite.ListFilter
	inv.ListFn = func(_ context.Context, f invite.ListFilter) ([]invite.Invitation, error) {
		got = append(got, f)
		if f.Status == invite.StatusRedeemed {
			return nil, nil
		}
		return []invite.Invitation{*sampleInvitation(), *sampleInvitation()}, nil
	}
	h := newHarness(t, inv)

	r := h.do("GET", "/api/v1/invitations", "")
	if r.status != http.StatusOK || r.body["count"] != float64(2) || len(r.body["items"].([]any)) != 2 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	r = h.do("GET", "/api/v1/invitations?status=redeemed&contact=9F1C2E55-3B1A-4C8E-9D4B-2A6F0E7C1D20", "")
	if r.status != http.StatusOK || r.body["count"] != float64(0) || r.body["items"] == nil {
		t.Errorf("empty list: %d %s", r.status, r.raw)
	}
	r = h.do("GET", "/api/v1/invitations?contact=ada.lovelace%40example.com&status=open", "")
	if r.status != http.StatusOK {
		t.Errorf("by email: %d %s", r.status, r.raw)
	}
	want := []invite.ListFilter{{}, {ContactID: contactID, Status: "redeemed"}, {ContactID: contactID, Status: "open"}}
	if !slices.Equal(got, want) {
		t.Errorf("filters = %+v, want %+v", got, want)
	}

	// An email that matches no contact matches no invitation.
	r = h.do("GET", "/api/v1/invitations?contact=nobody%40example.com", "")
	if r.status != http.StatusOK || r.body["count"] != float64(0) || len(got) != 3 {
		t.Errorf("unknown email: %d %s (List calls %d)", r.status, r.raw, len(got))
	}
	for _, q := range []string{"status=expired", "contact=42", "page=2", "contact=shared%40example.com"} {
		r := h.do("GET", "/api/v1/invitations?"+q, "")
		if q == "contact=shared%40example.com" {
			wantProblem(t, r, http.StatusUnprocessableEntity, typeAmbiguousEmail)
			continue
		}
		wantProblem(t, r, http.StatusBadRequest, typeInvalidRequest)
	}

	inv.ListFn = func(context.Context, invite.ListFilter) ([]invite.Invitation, error) {
		return nil, &dataverse.Error{StatusCode: 429, RetryAfter: 30 * time.Second}
	}
	r = h.do("GET", "/api/v1/invitations", "")
	wantProblem(t, r, http.StatusServiceUnavailable, typeUnavailable)
	if r.header.Get("Retry-After") != "30" {
		t.Errorf("Retry-After = %q", r.header.Get("Retry-After"))
	}
}

func TestResendInvitation(t *testing.T) {
	inv := happyInvites(t)
	inv.ResendFn = func(_ context.Context, id string) (*invite.InviteResult, error) {
		switch id {
		case invitationID:
			return sampleResult(true), nil
		case "revoked":
			return nil, fmt.Errorf("resend: %w", invite.ErrCodeRevoked)
		case "used":
			return nil, fmt.Errorf("resend: %w", invite.ErrCodeUsedUp)
		case "noemail":
			return nil, fmt.Errorf("resend: %w", invite.ErrNoEmail)
		}
		return nil, fmt.Errorf("resend %s: %w", id, invite.ErrNotFound)
	}
	h := newHarness(t, inv)
	r := h.do("POST", "/api/v1/invitations/"+invitationID+"/resend", "")
	if r.status != http.StatusOK || r.body["email_sent"] != true {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if strings.Contains(string(r.raw), "SECRETCODE") {
		t.Errorf("resend leaks the code: %s", r.raw)
	}
	wantProblem(t, h.do("POST", "/api/v1/invitations/revoked/resend", ""), http.StatusConflict, typeInvitationClosed)
	wantProblem(t, h.do("POST", "/api/v1/invitations/used/resend", ""), http.StatusConflict, typeInvitationClosed)
	wantProblem(t, h.do("POST", "/api/v1/invitations/noemail/resend", ""), http.StatusUnprocessableEntity, typeNoEmail)
	wantProblem(t, h.do("POST", "/api/v1/invitations/missing/resend", ""), http.StatusNotFound, typeNotFound)
}

func TestRevokeInvitation(t *testing.T) {
	inv := happyInvites(t)
	var revoked []string
	inv.RevokeFn = func(_ context.Context, id string) error {
		if id != invitationID {
			return fmt.Errorf("revoke: %w", invite.ErrNotFound)
		}
		revoked = append(revoked, id)
		return nil
	}
	h := newHarness(t, inv)
	r := h.do("POST", "/api/v1/invitations/"+invitationID+"/revoke", "")
	if r.status != http.StatusNoContent || len(r.raw) != 0 || !slices.Equal(revoked, []string{invitationID}) {
		t.Fatalf("status %d revoked %v: %s", r.status, revoked, r.raw)
	}
	wantProblem(t, h.do("POST", "/api/v1/invitations/nope/revoke", ""), http.StatusNotFound, typeNotFound)
	inv.RevokeFn = func(context.Context, string) error { return errors.New("boom") }
	wantProblem(t, h.do("POST", "/api/v1/invitations/"+invitationID+"/revoke", ""), http.StatusInternalServerError, "about:blank")
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	h := newHarness(t, happyInvites(t))
	r := h.do("GET", "/api/v1/nothing", "")
	wantProblem(t, r, http.StatusNotFound, "about:blank")
	r = h.do("GET", "/api/v1/invitations/"+invitationID+"/extra", "")
	wantProblem(t, r, http.StatusNotFound, "about:blank")

	r = h.do("DELETE", "/api/v1/invitations/"+invitationID, "")
	wantProblem(t, r, http.StatusMethodNotAllowed, "about:blank")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") {
		t.Errorf("Allow = %q", allow)
	}
	r = h.do("GET", "/api/v1/invitations/"+invitationID+"/resend", "")
	wantProblem(t, r, http.StatusMethodNotAllowed, "about:blank")
	if allow := r.header.Get("Allow"); allow != "POST" {
		t.Errorf("Allow = %q", allow)
	}
}

func TestRequestIDs(t *testing.T) {
	h := newHarness(t, happyInvites(t))
	r := h.do("GET", "/api/v1/invitations/"+invitationID, "", "X-Request-Id", "lb-4f2a.77_x")
	if got := r.header.Get("X-Request-Id"); got != "lb-4f2a.77_x" {
		t.Errorf("incoming id not kept: %q", got)
	}
	r = h.do("GET", "/api/v1/invitations/"+invitationID, "", "X-Request-Id", "bad id\" injected")
	if got := r.header.Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Errorf("malformed incoming id used: %q", got)
	}
	a := h.do("GET", "/api/v1/invitations/"+invitationID, "").header.Get("X-Request-Id")
	b := h.do("GET", "/api/v1/invitations/"+invitationID, "").header.Get("X-Request-Id")
	if a == "" || a == b {
		t.Errorf("generated ids %q, %q", a, b)
	}
}

func TestPanicBecomesProblem(t *testing.T) {
	inv := happyInvites(t)
	inv.GetFn = func(context.Context, string) (*invite.Invitation, error) { panic("nil map") }
	h := newHarness(t, inv)
	r := h.do("GET", "/api/v1/invitations/"+invitationID, "")
	wantProblem(t, r, http.StatusInternalServerError, "about:blank")
	if strings.Contains(string(r.raw), "nil map") {
		t.Errorf("panic value leaked: %s", r.raw)
	}
	if !strings.Contains(h.logs.String(), "nil map") {
		t.Error("panic not logged")
	}
}

// Routing happens on the request the handler receives, so a middleware
// wrapping the top-level mux (metrics) sees the API's route pattern.
func TestOuterMiddlewareSeesRoutePattern(t *testing.T) {
	h := newHarness(t, happyInvites(t))
	top := http.NewServeMux()
	top.Handle("/api/v1/", h.handler)
	var seen []string
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		top.ServeHTTP(w, r)
		seen = append(seen, r.Pattern)
	})
	for _, target := range []string{"/api/v1/invitations/" + invitationID, "/api/v1/invitations?status=open", "/api/v1/nope"} {
		req := httptest.NewRequest("GET", target, nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		outer.ServeHTTP(httptest.NewRecorder(), req)
	}
	want := []string{"GET /api/v1/invitations/{id}", "GET /api/v1/invitations", "/api/v1/"}
	if !slices.Equal(seen, want) {
		t.Errorf("patterns = %q, want %q", seen, want)
	}
}
