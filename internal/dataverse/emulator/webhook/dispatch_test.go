package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// received is one request as the receiver saw it.
type received struct {
	Path   string
	Query  map[string][]string
	Header http.Header
	Body   []byte
}

// receiver is a webhook endpoint that records requests and answers with a
// scripted sequence of statuses (the last one repeats).
type receiver struct {
	mu       sync.Mutex
	got      []received
	statuses []int
	block    chan struct{} // when set, handlers wait on it or the request context
}

func newReceiver(t *testing.T, statuses ...int) (*receiver, *httptest.Server) {
	t.Helper()
	rc := &receiver{statuses: statuses}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.got)
		rc.got = append(rc.got, received{Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body})
		status := http.StatusNoContent
		if len(rc.statuses) > 0 {
			status = rc.statuses[min(n, len(rc.statuses)-1)]
		}
		block := rc.block
		rc.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"ignored":true}`))
	}))
	t.Cleanup(srv.Close)
	return rc, srv
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func newTestDispatcher(t *testing.T, o DispatcherOptions) (*Dispatcher, *[]Result) {
	t.Helper()
	var mu sync.Mutex
	results := &[]Result{}
	o.OnResult = func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		*results = append(*results, r)
	}
	d := NewDispatcher(o)
	t.Cleanup(d.Close)
	return d, results
}

func TestDeliverAuthAndHeaders(t *testing.T) {
	c := docsUpdateContext()
	want, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		path       string
		authType   int
		authValue  string
		wantQuery  map[string]string
		wantHeader map[string]string
	}{
		{"WebhookKey", "/hooks/dataverse", AuthWebhookKey, "k3y/with+chars", map[string]string{"code": "k3y/with+chars"}, nil},
		{"HttpHeader", "/hooks/dataverse", AuthHTTPHeader,
			`<settings><setting name="X-Api-Key" value="abc"/><setting name="X-Tenant" value="contoso &amp; co"/></settings>`,
			nil, map[string]string{"X-Api-Key": "abc", "X-Tenant": "contoso & co"}},
		{"HttpQueryString", "/hooks/dataverse?existing=1", AuthHTTPQueryString,
			`<settings><setting name="sig" value="a b"/><setting name="v" value="2"/></settings>`,
			map[string]string{"sig": "a b", "v": "2", "existing": "1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, srv := newReceiver(t)
			d, results := newTestDispatcher(t, DispatcherOptions{OrgName: "contoso.crm.dynamics.com"})
			d.Deliver(Endpoint{URL: srv.URL + tt.path, AuthType: tt.authType, AuthValue: tt.authValue}, c)
			d.Wait()

			reqs := rc.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Path != "/hooks/dataverse" {
				t.Errorf("path = %q", r.Path)
			}
			for k, v := range tt.wantQuery {
				if got := r.Query[k]; len(got) != 1 || got[0] != v {
					t.Errorf("query %s = %q, want %q", k, got, v)
				}
			}
			for k, v := range tt.wantHeader {
				if got := r.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if tt.authType != AuthWebhookKey {
				if _, ok := r.Query["code"]; ok {
					t.Error("code query parameter sent for non-key auth")
				}
			}
			for k, v := range map[string]string{
				"Content-Type":        "application/json",
				HeaderOrganization:    "contoso.crm.dynamics.com",
				HeaderEntityName:      "contact",
				HeaderRequestName:     "Update",
				HeaderCorrelationID:   "b374239d-4233-41a9-8b17-a86cb4f737b5",
				HeaderMsgSizeExceeded: "",
			} {
				if got := r.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if !bytes.Equal(r.Body, want) {
				t.Error("body differs from Encode(c)")
			}
			if s := d.Stats(); s != (DeliveryStats{Attempted: 1, Succeeded: 1}) {
				t.Errorf("stats = %+v", s)
			}
			if len(*results) != 1 || (*results)[0].Err != nil || (*results)[0].StatusCode != 204 || strings.Contains((*results)[0].URL, "?") {
				t.Errorf("results = %+v", *results)
			}
		})
	}
}

func TestDeliverConfigurationErrors(t *testing.T) {
	rc, srv := newReceiver(t)
	d, results := newTestDispatcher(t, DispatcherOptions{Duplicate: 1})
	for _, ep := range []Endpoint{
		{URL: srv.URL, AuthType: AuthHTTPHeader, AuthValue: "<settings><setting name="},
		{URL: srv.URL, AuthType: AuthHTTPQueryString, AuthValue: `<settings><setting value="x"/></settings>`},
		{URL: srv.URL, AuthType: 0},
		{URL: "ftp://example.test/hook", AuthType: AuthWebhookKey, AuthValue: "k"},
	} {
		d.Deliver(ep, docsUpdateContext())
	}
	d.Deliver(Endpoint{URL: srv.URL, AuthType: AuthWebhookKey}, Context{Target: &Entity{Attributes: map[string]any{"x": []int{1}}}})
	d.Wait()
	if n := len(rc.requests()); n != 0 {
		t.Errorf("%d requests sent for unsendable deliveries", n)
	}
	if s := d.Stats(); s.Failed != 5 || s.Attempted != 0 {
		t.Errorf("stats = %+v, want 5 failed, none attempted", s)
	}
	for _, r := range *results {
		if r.Err == nil || r.Attempts != 0 {
			t.Errorf("result %+v, want an error and no attempts", r)
		}
	}
}

func TestDeliverRetriesOnceOnGatewayErrors(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int
		attempts  int
		retried   int
		succeeded bool
	}{
		{"503 then 200", []int{503, 200}, 2, 1, true},
		{"502 then 204", []int{502, 204}, 2, 1, true},
		{"504 twice", []int{504, 504}, 2, 1, false},
		{"503 then 500", []int{503, 500}, 2, 1, false},
		{"500", []int{500, 200}, 1, 0, false},
		{"429", []int{429, 200}, 1, 0, false},
		{"400", []int{400, 200}, 1, 0, false},
		{"301", []int{301, 200}, 1, 0, false},
		{"202", []int{202}, 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, srv := newReceiver(t, tt.statuses...)
			d, results := newTestDispatcher(t, DispatcherOptions{})
			d.Deliver(Endpoint{URL: srv.URL, AuthType: AuthWebhookKey, AuthValue: "k"}, docsUpdateContext())
			d.Wait()
			reqs := rc.requests()
			if len(reqs) != tt.attempts {
				t.Fatalf("%d requests, want %d", len(reqs), tt.attempts)
			}
			if len(reqs) == 2 && !bytes.Equal(reqs[0].Body, reqs[1].Body) {
				t.Error("retry body differs from the first attempt")
			}
			s := d.Stats()
			if s.Attempted != tt.attempts || s.Retried != tt.retried || (s.Succeeded == 1) != tt.succeeded || s.Succeeded+s.Failed != 1 {
				t.Errorf("stats = %+v", s)
			}
			r := (*results)[0]
			if r.Attempts != tt.attempts || (r.Err == nil) != tt.succeeded || r.StatusCode != tt.statuses[tt.attempts-1] {
				t.Errorf("result = %+v", r)
			}
		})
	}
}

func TestDeliverTrimsOversizedBody(t *testing.T) {
	rc, srv := newReceiver(t)
	d, results := newTestDispatcher(t, DispatcherOptions{})

	small := docsUpdateContext()
	big := docsUpdateContext()
	big.Target.Attributes = map[string]any{"description": strings.Repeat("x", maxPayload)}
	big.OutputParameters = map[string]any{"kept": "yes"}
	d.Deliver(Endpoint{URL: srv.URL + "/small", AuthType: AuthWebhookKey, AuthValue: "k"}, small)
	d.Deliver(Endpoint{URL: srv.URL + "/big", AuthType: AuthWebhookKey, AuthValue: "k"}, big)
	d.Wait()

	for _, r := range rc.requests() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatal(err)
		}
		_, hasInput := m["InputParameters"]
		switch r.Path {
		case "/small":
			if r.Header.Get(HeaderMsgSizeExceeded) != "" || !hasInput {
				t.Errorf("small body trimmed or flagged")
			}
		case "/big":
			if r.Header.Get(HeaderMsgSizeExceeded) == "" {
				t.Error("oversized body sent without x-ms-dynamics-msg-size-exceeded")
			}
			if len(r.Body) > maxPayload {
				t.Errorf("trimmed body is %d bytes", len(r.Body))
			}
			for _, k := range []string{"ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"} {
				if _, ok := m[k]; ok {
					t.Errorf("trimmed body still has %s", k)
				}
			}
			if string(m["PrimaryEntityId"]) != `"6d81597f-0f9f-e711-8122-000d3aa2331c"` || !bytes.Contains(m["OutputParameters"], []byte("kept")) {
				t.Errorf("trimmed body lost the identifiers the receiver needs: %s", r.Body)
			}
		}
	}
	trimmed := 0
	for _, r := range *results {
		if r.Trimmed {
			trimmed++
		}
	}
	if trimmed != 1 {
		t.Errorf("%d results marked trimmed, want 1", trimmed)
	}
}

func TestDeliverDuplicates(t *testing.T) {
	t.Run("always", func(t *testing.T) {
		rc, srv := newReceiver(t)
		d, results := newTestDispatcher(t, DispatcherOptions{Duplicate: 1})
		d.Deliver(Endpoint{URL: srv.URL, AuthType: AuthWebhookKey, AuthValue: "k"}, docsUpdateContext())
		d.Wait()
		reqs := rc.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests, want 2", len(reqs))
		}
		if !bytes.Equal(reqs[0].Body, reqs[1].Body) || reqs[0].Header.Get(HeaderCorrelationID) != reqs[1].Header.Get(HeaderCorrelationID) ||
			reqs[0].Query["code"][0] != reqs[1].Query["code"][0] {
			t.Error("duplicate is not identical to the original")
		}
		if s := d.Stats(); s != (DeliveryStats{Attempted: 2, Succeeded: 2, Duplicated: 1}) {
			t.Errorf("stats = %+v", s)
		}
		if len(*results) != 2 || (*results)[0].Duplicate || !(*results)[1].Duplicate {
			t.Errorf("results = %+v", *results)
		}
	})
	t.Run("duplicate of a retried delivery retries too", func(t *testing.T) {
		rc, srv := newReceiver(t, 503, 200, 503, 200)
		d, _ := newTestDispatcher(t, DispatcherOptions{Duplicate: 1})
		d.Deliver(Endpoint{URL: srv.URL, AuthType: AuthWebhookKey, AuthValue: "k"}, docsUpdateContext())
		d.Wait()
		if n := len(rc.requests()); n != 4 {
			t.Errorf("%d requests, want 4", n)
		}
		if s := d.Stats(); s != (DeliveryStats{Attempted: 4, Succeeded: 2, Retried: 2, Duplicated: 1}) {
			t.Errorf("stats = %+v", s)
		}
	})
	t.Run("never", func(t *testing.T) {
		rc, srv := newReceiver(t)
		d, _ := newTestDispatcher(t, DispatcherOptions{})
		for range 20 {
			d.Deliver(Endpoint{URL: srv.URL, AuthType: AuthWebhookKey, AuthValue: "k"}, docsUpdateContext())
		}
		d.Wait()
		if n := len(rc.requests()); n != 20 {
			t.Errorf("%d requests, want 20", n)
		}
	})
	t.Run("probability is seeded", func(t *testing.T) {
		count := func() int {
			_, srv := newReceiver(t)
			d, _ := newTestDispatcher(t, DispatcherOptions{Duplicate: 0.3, Seed: 42})
			for range 200 {
				d.Deliver(Endpoint{URL: srv.URL, AuthType: AuthWebhookKey, AuthValue: "k"}, docsUpdateContext())
			}
			d.Wait()
			return d.Stats().Duplicated
		}
		a, b := count(), count()
		if a != b {
			t.Errorf("same seed gave %d and %d duplicates", a, b)
		}
		if a < 30 || a > 90 {
			t.Errorf("%d duplicates of 200 at p=0.3", a)
		}
	})
}

func TestDeliverTimeout(t *testing.T) {
	rc, srv := newReceiver(t, 503) // a 503 after the timeout must not count: the attempt already failed
	rc.block = make(chan struct{})
	t.Cleanup(func() { close(rc.block) })
	d, results := newTestDispatcher(t, DispatcherOptions{Timeout: 50 * time.Millisecond})
	d.Deliver(Endpoint{URL: srv.URL, AuthType: AuthWebhookKey, AuthValue: "k"}, docsUpdateContext())
	d.Wait()
	if n := len(rc.requests()); n != 1 {
		t.Errorf("%d requests, want 1: a timeout is not retried", n)
	}
	if s := d.Stats(); s != (DeliveryStats{Attempted: 1, Failed: 1}) {
		t.Errorf("stats = %+v", s)
	}
	if r := (*results)[0]; !errors.Is(r.Err, context.DeadlineExceeded) || r.StatusCode != 0 {
		t.Errorf("result = %+v, want a deadline error", r)
	}
}

func TestCloseAbortsDelayedDeliveries(t *testing.T) {
	rc, srv := newReceiver(t)
	d := NewDispatcher(DispatcherOptions{Delay: time.Hour, Duplicate: 1})
	d.Deliver(Endpoint{URL: srv.URL, AuthType: AuthWebhookKey, AuthValue: "k"}, docsUpdateContext())
	d.Close() // must return without waiting out the hour
	if n := len(rc.requests()); n != 0 {
		t.Errorf("%d requests sent after Close", n)
	}
	if s := d.Stats(); s != (DeliveryStats{Failed: 1}) {
		t.Errorf("stats = %+v", s)
	}
	d.Deliver(Endpoint{URL: srv.URL, AuthType: AuthWebhookKey, AuthValue: "k"}, docsUpdateContext())
	d.Wait()
	if s := d.Stats(); s != (DeliveryStats{Failed: 1}) {
		t.Errorf("delivery after Close counted: %+v", s)
	}
}

func TestDeliverDelayed(t *testing.T) {
	rc, srv := newReceiver(t)
	d, _ := newTestDispatcher(t, DispatcherOptions{Delay: 20 * time.Millisecond})
	d.Deliver(Endpoint{URL: srv.URL, AuthType: AuthWebhookKey, AuthValue: "k"}, docsUpdateContext())
	d.Wait()
	if n := len(rc.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestDeliverConcurrently(t *testing.T) {
	rc, srv := newReceiver(t, 503, 200)
	d, _ := newTestDispatcher(t, DispatcherOptions{Duplicate: 0.5, Seed: 7})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				d.Deliver(Endpoint{URL: srv.URL, AuthType: AuthWebhookKey, AuthValue: "k"}, docsUpdateContext())
				_ = d.Stats()
			}
		}()
	}
	wg.Wait()
	d.Wait()
	s := d.Stats()
	if s.Succeeded+s.Failed != 200+s.Duplicated || s.Attempted != len(rc.requests()) {
		t.Errorf("stats inconsistent: %+v with %d requests", s, len(rc.requests()))
	}
}
