package dataverse

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetryAfterIsHonouredExactly(t *testing.T) {
	for _, tt := range []struct {
		header string
		want   time.Duration
	}{{"2", 2 * time.Second}, {"0.5", 500 * time.Millisecond}, {"120", 120 * time.Second}} {
		t.Run(tt.header, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 0 {
					w.Header().Set("Retry-After", tt.header)
					writeJSON(w, 429, `{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit of 6000 over time window of 300 seconds."}}`)
					return
				}
				writeJSON(w, 200, `{"UserId":"u","BusinessUnitId":"b","OrganizationId":"o"}`)
			})
			var throttled []time.Duration
			var mu sync.Mutex
			c, w := testClient(t, f, Config{}, &Options{
				RetryDelay: 10 * time.Second, MaxRetryDelay: 10 * time.Second, // would differ from Retry-After
				Hooks: Hooks{OnThrottle: func(ri RequestInfo, d time.Duration) {
					mu.Lock()
					throttled = append(throttled, d)
					mu.Unlock()
				}},
			})
			who, err := c.WhoAmI(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if who.UserID != "u" {
				t.Errorf("who = %+v", who)
			}
			if got := w.all(); len(got) != 1 || got[0] != tt.want {
				t.Errorf("waits = %v, want [%v]", got, tt.want)
			}
			if len(throttled) != 1 || throttled[0] != tt.want {
				t.Errorf("OnThrottle = %v", throttled)
			}
			if f.count() != 2 {
				t.Errorf("%d requests", f.count())
			}
		})
	}
}

func TestRetriesThenGivesUp(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 503, `{"error":{"code":"","message":"unavailable"}}`)
	})
	var retries atomic.Int32
	c, w := testClient(t, f, Config{MaxRetries: 3}, &Options{
		RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 250 * time.Millisecond,
		Hooks: Hooks{OnRetry: func(RequestInfo, time.Duration) { retries.Add(1) }},
	})
	_, err := c.Retrieve(context.Background(), "contacts", "00000000-0000-0000-0000-000000000001", nil)
	if !IsTransient(err) || !strings.HasPrefix(err.Error(), "retrieve contacts: ") {
		t.Fatalf("err = %v", err)
	}
	if f.count() != 4 || retries.Load() != 3 {
		t.Errorf("requests %d retries %d", f.count(), retries.Load())
	}
	caps := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond}
	for i, d := range w.all() {
		if d < 0 || d > caps[i] {
			t.Errorf("wait %d = %v, cap %v", i, d, caps[i])
		}
	}
}

func TestNoRetryOnClientErrors(t *testing.T) {
	for _, status := range []int{400, 401, 403, 404, 409, 412, 500} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, status, `{"error":{"code":"0x80040217","message":"nope"}}`)
			})
			c, w := testClient(t, f, Config{}, nil)
			_, err := c.Update(context.Background(), "contacts", "00000000-0000-0000-0000-000000000001", map[string]any{"firstname": "x"}, nil)
			var e *Error
			if !errors.As(err, &e) || e.StatusCode != status {
				t.Fatalf("err = %v", err)
			}
			if f.count() != 1 || len(w.all()) != 0 {
				t.Errorf("requests %d waits %v", f.count(), w.all())
			}
			if status == 412 && !IsPreconditionFailed(err) || status == 404 && !IsNotFound(err) {
				t.Errorf("classifier failed for %v", err)
			}
			if status == 401 && !errors.Is(err, ErrUnauthorized) {
				t.Errorf("errors.Is(ErrUnauthorized) false")
			}
			if status != 500 && !e.Permanent() {
				t.Errorf("%d not permanent", status)
			}
		})
	}
}

func TestGatewayErrorsRetryOnlyReplayable(t *testing.T) {
	var bodyless atomic.Bool
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if bodyless.Load() {
			writeJSON(w, 200, `{}`)
			return
		}
		w.WriteHeader(502)
		w.Write([]byte("<html>bad gateway</html>"))
	})
	c, _ := testClient(t, f, Config{MaxRetries: 2}, &Options{RetryDelay: time.Millisecond})

	// An action may have run behind a 502: not resent.
	err := c.CallAction(context.Background(), "SendEmail", &EntityRef{Set: "emails", ID: "00000000-0000-0000-0000-0000000000e1"},
		map[string]any{"IssueSend": true}, nil)
	if !IsTransient(err) || f.count() != 1 {
		t.Fatalf("action: err %v, %d requests", err, f.count())
	}
	// A read is resent.
	_, err = c.Retrieve(context.Background(), "contacts", "00000000-0000-0000-0000-000000000001", nil)
	if err == nil || f.count() != 4 {
		t.Fatalf("retrieve: err %v, %d requests", err, f.count())
	}
	bodyless.Store(true)
}

func TestActionRetriedWhenServiceRejectedIt(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, 429, `{"error":{"code":"0x80072326","message":"Number of concurrent requests exceeded the limit of 52."}}`)
			return
		}
		writeJSON(w, 200, `{"Subject":"sent"}`)
	})
	c, w := testClient(t, f, Config{}, nil)
	var out struct{ Subject string }
	if err := c.CallAction(context.Background(), "SendEmail", &EntityRef{Set: "emails", ID: "e1"}, map[string]any{"IssueSend": true}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Subject != "sent" || f.count() != 2 || w.all()[0] != time.Second {
		t.Errorf("out %+v requests %d waits %v", out, f.count(), w.all())
	}
	reqs := f.requests()
	if reqs[1].Path != "/api/data/v9.2/emails(e1)/Microsoft.Dynamics.CRM.SendEmail" || reqs[0].Body != reqs[1].Body {
		t.Errorf("requests %+v", reqs)
	}
}

func TestActionNotResentAfterLostResponse(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) { dropConnection(t, w) })
	c, _ := testClient(t, f, Config{}, nil)
	err := c.CallAction(context.Background(), "SendEmail", &EntityRef{Set: "emails", ID: "e1"}, map[string]any{"IssueSend": true}, nil)
	if err == nil || !IsTransient(err) {
		t.Fatalf("err = %v", err)
	}
	if f.count() != 1 {
		t.Errorf("action sent %d times", f.count())
	}
}

func TestCancellationInterruptsWait(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Retry-After", "3600")
		writeJSON(w, 429, `{"error":{"code":"0x80072322","message":"throttled"}}`)
	})
	c, _ := testClient(t, f, Config{}, nil)
	c.sleep = sleepCtx // a real wait, which only cancellation can end
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan struct{})
	c.hooks.OnRetry = func(RequestInfo, time.Duration) { close(waiting) }
	done := make(chan error, 1)
	go func() {
		_, err := c.Retrieve(ctx, "contacts", "00000000-0000-0000-0000-000000000001", nil)
		done <- err
	}()
	<-waiting
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || IsTransient(err) {
		t.Fatalf("err = %v", err)
	}
	if f.count() != 1 {
		t.Errorf("%d requests", f.count())
	}
}

func TestCancellationWhileWaitingForSlot(t *testing.T) {
	l := newLimiter(1, true)
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire = %v", err)
	}
	l.release()
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestAttemptTimeoutIsRetriedForReads(t *testing.T) {
	release := make(chan struct{})
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		writeJSON(w, 200, `{"contactid":"c1"}`)
	})
	defer close(release)
	c, w := testClient(t, f, Config{Timeout: 50 * time.Millisecond}, nil)
	rec, err := c.Retrieve(context.Background(), "contacts", "c1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID("contactid") != "c1" || len(w.all()) != 1 {
		t.Errorf("rec %v waits %v", rec, w.all())
	}
}

func TestBackoffIsCappedWithJitter(t *testing.T) {
	for attempt := 1; attempt < 40; attempt++ {
		d := backoff(attempt, time.Second, 60*time.Second)
		limit := min(time.Second<<min(attempt-1, 20), 60*time.Second)
		if d < 0 || d > limit {
			t.Fatalf("attempt %d: %v > %v", attempt, d, limit)
		}
	}
	if d, ok := parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", time.Date(2015, 10, 21, 7, 27, 58, 0, time.UTC)); !ok || d != 2*time.Second {
		t.Errorf("http-date: %v %v", d, ok)
	}
	if _, ok := parseRetryAfter("soon", time.Now()); ok {
		t.Error("garbage accepted")
	}
}

func TestDialFailureIsNotUncertain(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {})
	addr := f.srv.URL
	f.srv.Close() // nothing listens any more
	c, err := New(Config{URL: addr, MaxRetries: 2}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &waits{}
	c.sleep = w.sleep
	cl := c.newCall("create contacts", "create", "contacts", http.MethodPatch, c.apiURL+"contacts(x)")
	_, err = c.do(context.Background(), cl)
	if !IsTransient(err) || cl.uncertain || len(w.all()) != 2 {
		t.Errorf("err %v uncertain %v waits %v", err, cl.uncertain, w.all())
	}
}
