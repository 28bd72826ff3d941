package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
)

const createBody = `{"contact_id":"` + contactID + `","portal":"Contoso Partner Portal","roles":["Partners","Customers"]}`

func TestIdempotentCreateReplays(t *testing.T) {
	inv := happyInvites(t)
	h := newHarness(t, inv)
	first := h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", "order-1")
	if first.status != http.StatusCreated || first.header.Get(replayedHeader) != "" {
		t.Fatalf("first: %d %v %s", first.status, first.header, first.raw)
	}
	// Same request, different bytes: key order, whitespace, a quoted key.
	same := `{ "roles": ["Partners", "Customers"], "portal": "Contoso Partner Portal",
	           "contact_id": "` + strings.ToUpper(contactID) + `" }`
	for _, key := range []string{"order-1", `"order-1"`} {
		again := h.do("POST", "/api/v1/invitations", same, "Idempotency-Key", key)
		if again.status != first.status || !bytes.Equal(again.raw, first.raw) {
			t.Errorf("replay %d %s\nfirst  %d %s", again.status, again.raw, first.status, first.raw)
		}
		if again.header.Get(replayedHeader) != "true" || again.header.Get("Location") != first.header.Get("Location") ||
			again.header.Get("Content-Type") != "application/json" {
			t.Errorf("replay headers = %v", again.header)
		}
		if again.header.Get("X-Request-Id") == first.header.Get("X-Request-Id") {
			t.Error("replay reuses the first request id")
		}
	}
	if n := inv.count("Invite"); n != 1 {
		t.Errorf("Invite called %d times, want 1", n)
	}

	// Without a key every request runs.
	h.do("POST", "/api/v1/invitations", createBody)
	h.do("POST", "/api/v1/invitations", createBody)
	if n := inv.count("Invite"); n != 3 {
		t.Errorf("Invite called %d times, want 3", n)
	}

	// The record lives 24h under the configured prefix.
	keys, err := h.rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "test:api:idem:") || strings.Contains(keys[0], "order-1") {
		t.Fatalf("redis keys = %v", keys)
	}
	ttl, err := h.rdb.TTL(context.Background(), keys[0]).Result()
	if err != nil || ttl <= 23*time.Hour || ttl > 24*time.Hour {
		t.Errorf("TTL = %v, %v", ttl, err)
	}
	v, _ := h.rdb.Get(context.Background(), keys[0]).Result()
	if strings.Contains(v, "SECRETCODE") || strings.Contains(v, testKey) {
		t.Errorf("stored record holds a secret: %s", v)
	}
}

func TestIdempotencyKeyWithDifferentRequestIs422(t *testing.T) {
	inv := happyInvites(t)
	h := newHarness(t, inv)
	if r := h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", "k1"); r.status != http.StatusCreated {
		t.Fatalf("first: %d %s", r.status, r.raw)
	}
	for _, body := range []string{
		`{"contact_id":"` + contactID + `","portal":"Contoso Partner Portal","roles":["Partners"]}`,
		`{"contact_id":"` + contactID + `","portal":"Other Portal","roles":["Partners","Customers"]}`,
		`{"email":"ada.lovelace@example.com","portal":"Contoso Partner Portal","roles":["Partners","Customers"]}`,
	} {
		r := h.do("POST", "/api/v1/invitations", body, "Idempotency-Key", "k1")
		wantProblem(t, r, http.StatusUnprocessableEntity, typeIdempotencyReused)
	}
	// The same key on another route is another request too.
	r := h.do("POST", "/api/v1/invitations/"+invitationID+"/resend", "", "Idempotency-Key", "k1")
	wantProblem(t, r, http.StatusUnprocessableEntity, typeIdempotencyReused)
	if n := inv.count("Invite") + inv.count("Resend"); n != 1 {
		t.Errorf("service called %d times, want 1", n)
	}
}

// Keys are scoped per API key: two clients picking the same key do not see
// each other's responses.
func TestIdempotencyKeysAreScopedPerAPIKey(t *testing.T) {
	inv := happyInvites(t)
	h := newHarness(t, inv)
	a := h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", "shared")
	b := h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", "shared", "Authorization", "Bearer "+otherKey)
	if a.status != http.StatusCreated || b.status != http.StatusCreated || b.header.Get(replayedHeader) != "" {
		t.Errorf("a %d, b %d replayed=%q", a.status, b.status, b.header.Get(replayedHeader))
	}
	if n := inv.count("Invite"); n != 2 {
		t.Errorf("Invite called %d times, want 2", n)
	}
}

func TestIdempotencyStoresClientErrorsButNotServerErrors(t *testing.T) {
	inv := happyInvites(t)
	var mu sync.Mutex
	results := []error{
		&dataverse.Error{StatusCode: 503}, // 503: released, retry runs again
		errors.New("boom"),                // 500: released
		nil,                               // 201: stored
	}
	inv.InviteFn = func(context.Context, invite.InviteRequest) (*invite.InviteResult, error) {
		mu.Lock()
		defer mu.Unlock()
		err := results[0]
		results = results[1:]
		if err != nil {
			return nil, err
		}
		return sampleResult(true), nil
	}
	h := newHarness(t, inv)
	for i, want := range []int{503, 500, 201, 201} {
		r := h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", "retry-me")
		if r.status != want {
			t.Fatalf("attempt %d: status %d, want %d: %s", i+1, r.status, want, r.raw)
		}
	}
	if n := inv.count("Invite"); n != 3 {
		t.Errorf("Invite called %d times, want 3", n)
	}

	// A domain failure is final: stored and replayed.
	inv.InviteFn = func(context.Context, invite.InviteRequest) (*invite.InviteResult, error) {
		return nil, fmt.Errorf("portal: %w", invite.ErrUnknownPortal)
	}
	r1 := h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", "bad-portal")
	r2 := h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", "bad-portal")
	wantProblem(t, r1, http.StatusUnprocessableEntity, typeUnknownPortal)
	if r2.status != 422 || r2.header.Get(replayedHeader) != "true" || r2.header.Get("Content-Type") != "application/problem+json" ||
		!bytes.Equal(r1.raw, r2.raw) {
		t.Errorf("422 not replayed: %d %v %s", r2.status, r2.header, r2.raw)
	}
	if n := inv.count("Invite"); n != 4 {
		t.Errorf("Invite called %d times, want 4", n)
	}
}

// A repeat while the first request is still running gets 409, not a second
// invitation; after the first finishes, repeats replay it.
func TestIdempotencyConcurrentRepeatIs409(t *testing.T) {
	inv := happyInvites(t)
	started, release := make(chan struct{}), make(chan struct{})
	inv.InviteFn = func(context.Context, invite.InviteRequest) (*invite.InviteResult, error) {
		close(started)
		<-release
		return sampleResult(true), nil
	}
	h := newHarness(t, inv)
	done := make(chan response)
	go func() { done <- h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", "slow") }()
	<-started
	r := h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", "slow")
	wantProblem(t, r, http.StatusConflict, typeIdempotencyRunning)
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After = %q", r.header.Get("Retry-After"))
	}
	// Even in progress, a different request under the key is 422.
	wantProblem(t, h.do("POST", "/api/v1/invitations", `{"contact_id":"`+contactID+`","portal":"x"}`, "Idempotency-Key", "slow"),
		http.StatusUnprocessableEntity, typeIdempotencyReused)
	close(release)
	first := <-done
	if first.status != http.StatusCreated {
		t.Fatalf("first: %d %s", first.status, first.raw)
	}
	r = h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", "slow")
	if r.status != http.StatusCreated || r.header.Get(replayedHeader) != "true" {
		t.Errorf("after completion: %d %v", r.status, r.header)
	}
	if n := inv.count("Invite"); n != 1 {
		t.Errorf("Invite called %d times, want 1", n)
	}
}

func TestIdempotentResend(t *testing.T) {
	inv := happyInvites(t)
	h := newHarness(t, inv)
	a := h.do("POST", "/api/v1/invitations/"+invitationID+"/resend", "", "Idempotency-Key", "resend-1")
	b := h.do("POST", "/api/v1/invitations/"+strings.ToUpper(invitationID)+"/resend", "", "Idempotency-Key", "resend-1")
	if a.status != 200 || b.status != 200 || b.header.Get(replayedHeader) != "true" || !bytes.Equal(a.raw, b.raw) {
		t.Errorf("a %d, b %d %v", a.status, b.status, b.header)
	}
	wantProblem(t, h.do("POST", "/api/v1/invitations/00000000-0000-0000-0000-000000000001/resend", "", "Idempotency-Key", "resend-1"),
		http.StatusUnprocessableEntity, typeIdempotencyReused)
	if n := inv.count("Resend"); n != 1 {
		t.Errorf("Resend called %d times, want 1", n)
	}
}

func TestInvalidIdempotencyKeys(t *testing.T) {
	inv := happyInvites(t)
	h := newHarness(t, inv)
	for _, key := range []string{strings.Repeat("k", 256), "tab\there", `""`, "ключ"} {
		r := h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", key)
		wantProblem(t, r, http.StatusBadRequest, typeInvalidRequest)
	}
	req, _ := http.NewRequest("POST", h.url+"/api/v1/invitations", strings.NewReader(createBody))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Add("Idempotency-Key", "a")
	req.Header.Add("Idempotency-Key", "b")
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("two keys: %d", resp.StatusCode)
	}
	if n := inv.count("Invite"); n != 0 {
		t.Errorf("Invite called %d times", n)
	}
	if r := h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", strings.Repeat("k", 255)); r.status != 201 {
		t.Errorf("255-character key: %d", r.status)
	}
}

// Without Redis the API cannot promise at-most-once, so keyed requests are
// refused with 503; requests without a key still work.
func TestIdempotencyWithRedisDown(t *testing.T) {
	inv := happyInvites(t)
	h := newHarness(t, inv)
	h.redis.Stop()
	r := h.do("POST", "/api/v1/invitations", createBody, "Idempotency-Key", "k")
	wantProblem(t, r, http.StatusServiceUnavailable, typeUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if n := inv.count("Invite"); n != 0 {
		t.Errorf("Invite ran without an idempotency record (%d calls)", n)
	}
	if r := h.do("POST", "/api/v1/invitations", createBody); r.status != http.StatusCreated {
		t.Errorf("without a key: %d %s", r.status, r.raw)
	}
	if !strings.Contains(h.logs.String(), "idempotency: reserve") {
		t.Errorf("Redis failure not logged: %s", h.logs.String())
	}
}
