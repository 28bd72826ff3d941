package portalweb

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/invite"
)

// timedTransport adds up the time spent waiting for the identity provider.
type timedTransport struct {
	next  http.RoundTripper
	spent atomic.Int64 // nanoseconds
	calls atomic.Int64
}

func (t *timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	t.spent.Add(int64(time.Since(start)))
	t.calls.Add(1)
	return resp, err
}

// BenchmarkExternalSignIn measures a returning user's sign-in round trip
// through "Continue with Microsoft" as the connector sees it: the start
// request (sign-in bound to a new session in Redis, redirect to the
// provider) and the callback (sign-in taken out of Redis, code redeemed,
// ID token verified, the contact found through its adx_externalidentity row
// in the emulator, session rotated). ns/op counts both requests; the
// browser's visit to the provider's sign-in page is outside the timer, and
// connector-ns/op also leaves out the provider's token endpoint, whose
// answer the connector waits for (provider-ns/op). Discovery and the key
// set are fetched once, before the loop, and cached as in production.
func BenchmarkExternalSignIn(b *testing.B) {
	tt := &timedTransport{}
	x := newExt(b, extOpts{
		wrap: func(next http.RoundTripper) http.RoundTripper { tt.next = next; return tt },
		site: func(c *Config) {
			c.RateLimits = RateLimits{CodeLookups: -1, Redemptions: -1, SignIns: -1, Registrations: -1, PasswordResets: -1}
		},
	})
	contactID, email, _ := x.person(0)
	x.invite(b, contactID)
	first := x.browser()
	page := first.get(local(x.emailLink(b, email, invite.InvitationPath)))
	x.via(first, first.submit(page, "form.providers", nil), "Maria Campbell").wantRedirect("/profile")

	var connector, provider time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		br := x.browser() // a new visitor: the sign-in page gives it a session and a CSRF token
		lp := br.get("/login")
		b.StartTimer()
		t0 := time.Now()
		start := br.submit(lp, "form.providers", nil)
		startTook := time.Since(t0)
		b.StopTimer()
		cb := x.callbackFor(start, "Maria Campbell")
		before := time.Duration(tt.spent.Load())
		b.StartTimer()
		t1 := time.Now()
		br.get(cb).wantRedirect("/profile")
		cbTook := time.Since(t1)
		spent := time.Duration(tt.spent.Load()) - before
		connector += startTook + cbTook - spent
		provider += spent
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(connector.Nanoseconds())/n, "connector-ns/op")
	b.ReportMetric(float64(provider.Nanoseconds())/n, "provider-ns/op")
}
