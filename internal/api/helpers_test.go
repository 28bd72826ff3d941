package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/redistest"
)

const (
	testKey      = "k3y-0123456789abcdef0123456789abcdef"
	otherKey     = "second-key"
	invitationID = "3b0e4a1c-8f7d-4c2b-9a55-1e2f3d4c5b6a"
	contactID    = "9f1c2e55-3b1a-4c8e-9d4b-2a6f0e7c1d20"
	websiteID    = "6d2f7a10-5c4e-4b8a-8e1f-0a9b8c7d6e5f"
	roleID       = "1c9e8d7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f"
	emailID      = "7e6d5c4b-3a29-4817-9f0e-d1c2b3a49586"
)

var testNow = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)

// fakeInvites is the invitation service with a function per method; nil
// functions fail the test if called. It counts calls.
type fakeInvites struct {
	t        *testing.T
	InviteFn func(context.Context, invite.InviteRequest) (*invite.InviteResult, error)
	GetFn    func(context.Context, string) (*invite.Invitation, error)
	ListFn   func(context.Context, invite.ListFilter) ([]invite.Invitation, error)
	ResendFn func(context.Context, string) (*invite.InviteResult, error)
	RevokeFn func(context.Context, string) error

	mu    sync.Mutex
	calls map[string]int
}

func (f *fakeInvites) called(m string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[m]++
}

func (f *fakeInvites) count(m string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[m]
}

func (f *fakeInvites) Invite(ctx context.Context, req invite.InviteRequest) (*invite.InviteResult, error) {
	f.called("Invite")
	if f.InviteFn == nil {
		f.t.Error("unexpected Invite")
		return nil, invite.ErrNotFound
	}
	return f.InviteFn(ctx, req)
}

func (f *fakeInvites) Get(ctx context.Context, id string) (*invite.Invitation, error) {
	f.called("Get")
	if f.GetFn == nil {
		f.t.Error("unexpected Get")
		return nil, invite.ErrNotFound
	}
	return f.GetFn(ctx, id)
}

func (f *fakeInvites) List(ctx context.Context, lf invite.ListFilter) ([]invite.Invitation, error) {
	f.called("List")
	if f.ListFn == nil {
		f.t.Error("unexpected List")
		return nil, nil
	}
	return f.ListFn(ctx, lf)
}

func (f *fakeInvites) Resend(ctx context.Context, id string) (*invite.InviteResult, error) {
	f.called("Resend")
	if f.ResendFn == nil {
		f.t.Error("unexpected Resend")
		return nil, invite.ErrNotFound
	}
	return f.ResendFn(ctx, id)
}

func (f *fakeInvites) Revoke(ctx context.Context, id string) error {
	f.called("Revoke")
	if f.RevokeFn == nil {
		f.t.Error("unexpected Revoke")
		return invite.ErrNotFound
	}
	return f.RevokeFn(ctx, id)
}

// fakeContacts resolves emails from a map; ErrAmbiguousEmail for "shared@…".
type fakeContacts struct {
	mu    sync.Mutex
	ids   map[string]string
	calls int
}

func (c *fakeContacts) FindContactByEmail(_ context.Context, email string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if strings.HasPrefix(email, "shared@") {
		return "", ErrAmbiguousEmail
	}
	if id, ok := c.ids[strings.ToLower(email)]; ok {
		return id, nil
	}
	return "", invite.ErrNotFound
}

func sampleInvitation() *invite.Invitation {
	return &invite.Invitation{
		ID: invitationID, Name: "Ada Lovelace - Contoso Partner Portal", Portal: "Contoso Partner Portal",
		WebsiteID: websiteID, Type: invite.TypeSingle, Status: invite.StatusSent, StateCode: 0, StatusCode: 756150000,
		ExpiresAt: testNow.Add(30 * 24 * time.Hour), MaxRedemptions: 1, ContactID: contactID,
		ContactFirstName: "Ada", ContactLastName: "Lovelace", ContactName: "Ada Lovelace",
		ContactEmail: "ada.lovelace@example.com", RoleIDs: []string{roleID}, Roles: []string{"Partners"},
		CreatedOn: testNow.Add(-time.Hour), Code: "SECRETCODE123", ETag: `W/"1234"`,
	}
}

func sampleResult(created bool) *invite.InviteResult {
	return &invite.InviteResult{Invitation: sampleInvitation(), Code: "SECRETCODE123", Link: "https://join.example.com/invitation?code=SECRETCODE123",
		Created: created, Reused: !created, EmailSent: created, EmailID: map[bool]string{true: emailID}[created]}
}

// happyInvites answers every method successfully.
func happyInvites(t *testing.T) *fakeInvites {
	return &fakeInvites{t: t,
		InviteFn: func(context.Context, invite.InviteRequest) (*invite.InviteResult, error) {
			return sampleResult(true), nil
		},
		GetFn: func(context.Context, string) (*invite.Invitation, error) { return sampleInvitation(), nil },
		ListFn: func(context.Context, invite.ListFilter) ([]invite.Invitation, error) {
			return []invite.Invitation{*sampleInvitation()}, nil
		},
		ResendFn: func(context.Context, string) (*invite.InviteResult, error) { return sampleResult(true), nil },
		RevokeFn: func(context.Context, string) error { return nil },
	}
}

type harness struct {
	t        *testing.T
	url      string
	client   *http.Client
	invites  *fakeInvites
	contacts *fakeContacts
	rdb      redis.UniversalClient
	redis    *redistest.Server
	logs     *syncBuffer
	handler  http.Handler
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newHarness serves the API over loopback HTTP with a real redis-server.
func newHarness(t *testing.T, inv *fakeInvites, mod ...func(*Config)) *harness {
	t.Helper()
	srv := redistest.Start(t)
	h := &harness{t: t, invites: inv, redis: srv, rdb: srv.Client(t), logs: &syncBuffer{},
		contacts: &fakeContacts{ids: map[string]string{"ada.lovelace@example.com": contactID}}}
	cfg := Config{
		Keys: []string{testKey, otherKey}, Invites: inv, Contacts: h.contacts, Redis: h.rdb,
		KeyPrefix: "test:", Logger: slog.New(slog.NewJSONHandler(h.logs, nil)), Now: func() time.Time { return testNow },
	}
	for _, m := range mod {
		m(&cfg)
	}
	handler, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.handler = handler
	ts := httptest.NewServer(handler)
	t.Cleanup(ts.Close)
	h.url, h.client = ts.URL, ts.Client()
	return h
}

type response struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// do sends a request with the test key; headers are name, value pairs that
// replace the defaults (an empty value removes the header).
func (h *harness) do(method, path, body string, headers ...string) response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			h.t.Fatalf("%s %s: body is not a JSON object: %v\n%s", method, path, err, raw)
		}
	}
	return out
}

// wantProblem checks a problem response's status, type and media type and
// that it carries the request id of its X-Request-Id header.
func wantProblem(t *testing.T, r response, status int, typ string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d: %s", r.status, status, r.raw)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := r.body["type"]; got != typ {
		t.Errorf("type = %v, want %s", got, typ)
	}
	if got := r.body["status"]; got != float64(status) {
		t.Errorf("body status = %v", got)
	}
	if r.body["title"] == "" || r.body["title"] == nil {
		t.Error("no title")
	}
	if id := r.header.Get("X-Request-Id"); id == "" || r.body["request_id"] != id {
		t.Errorf("request_id %v, X-Request-Id %q", r.body["request_id"], id)
	}
	if r.body["instance"] == nil {
		t.Error("no instance")
	}
}

// pointers lists the pointers of a problem's errors.
func pointers(r response) []string {
	var out []string
	errs, _ := r.body["errors"].([]any)
	for _, e := range errs {
		m, _ := e.(map[string]any)
		p, _ := m["pointer"].(string)
		out = append(out, p)
	}
	return out
}
