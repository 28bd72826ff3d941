package sync

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/d365portal/connector/internal/dataverse"
)

const (
	sampleContact = "8c41e2a7-3b1d-ef11-840a-000d3a3b6e21"
	imageContact  = "5e6f7a8b-3b1d-ef11-840a-000d3a3b6e21"
	createContact = "9d8c7b6a-3b1d-ef11-840a-000d3a3b6e21"
)

func sample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/webhook/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func post(h http.Handler, target, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// queued returns the jobs in the stream.
func queued(t *testing.T, i *Intake) []job {
	t.Helper()
	msgs, err := i.rdb.XRange(context.Background(), i.keys.stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []job
	for _, m := range msgs {
		var j job
		if err := json.Unmarshal([]byte(m.Values["job"].(string)), &j); err != nil {
			t.Fatal(err)
		}
		out = append(out, j)
	}
	return out
}

func TestWebhookAuth(t *testing.T) {
	r := newRig(t)
	body := sample(t, "update_requested.json")
	for _, tc := range []struct {
		name, typ, authName string
		target              string
		hdr                 map[string]string
		want                int
	}{
		{name: "key ok", typ: AuthWebhookKey, target: "/hooks/dataverse?code=s3cret", want: 202},
		{name: "key wrong", typ: AuthWebhookKey, target: "/hooks/dataverse?code=s3cre", want: 401},
		{name: "key longer", typ: AuthWebhookKey, target: "/hooks/dataverse?code=s3cret2", want: 401},
		{name: "key missing", typ: AuthWebhookKey, target: "/hooks/dataverse", want: 401},
		{name: "key in header only", typ: AuthWebhookKey, target: "/hooks/dataverse", hdr: map[string]string{"code": "s3cret"}, want: 401},
		{name: "header ok", typ: AuthHTTPHeader, authName: "X-Api-Key", target: "/hooks/dataverse", hdr: map[string]string{"X-Api-Key": "s3cret"}, want: 202},
		{name: "header wrong", typ: AuthHTTPHeader, authName: "X-Api-Key", target: "/hooks/dataverse", hdr: map[string]string{"X-Api-Key": "nope"}, want: 401},
		{name: "header as query", typ: AuthHTTPHeader, authName: "X-Api-Key", target: "/hooks/dataverse?X-Api-Key=s3cret", want: 401},
		{name: "query ok", typ: AuthQueryString, authName: "token", target: "/hooks/dataverse?token=s3cret", want: 202},
		{name: "query wrong name", typ: AuthQueryString, authName: "token", target: "/hooks/dataverse?code=s3cret", want: 401},
		{name: "query empty", typ: AuthQueryString, authName: "token", target: "/hooks/dataverse?token=", want: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := r.intake(t, func(c *Config) {
				c.KeyPrefix = "auth:" + tc.name + ":"
				c.Webhook.AuthType, c.Webhook.AuthName = tc.typ, tc.authName
			})
			w := post(i.WebhookHandler(), tc.target, body, tc.hdr)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.want, w.Body)
			}
			if n := len(queued(t, i)); (tc.want == 202) != (n == 1) {
				t.Errorf("%d queued after %d", n, w.Code)
			}
		})
	}
}

func TestWebhookMalformed(t *testing.T) {
	r := newRig(t)
	i := r.intake(t, nil)
	h := i.WebhookHandler()
	for name, body := range malformedBodies {
		t.Run(name, func(t *testing.T) {
			w := post(h, "/hooks/dataverse?code=s3cret", body, map[string]string{headerCorrelation: "corr-" + name})
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", w.Code)
			}
			if got := w.Header().Get("X-Request-Id"); got != "corr-"+name {
				t.Errorf("X-Request-Id = %q", got)
			}
		})
	}
	// A Create whose only id is the Target's empty GUID.
	w0 := post(h, "/hooks/dataverse?code=s3cret", `{"MessageName":"Create","PrimaryEntityName":"contact",
	  "InputParameters":[{"key":"Target","value":{"__type":"Entity:x","LogicalName":"contact","Id":"00000000-0000-0000-0000-000000000000",
	  "Attributes":[{"key":"pinv_portalinvitestatus","value":{"__type":"OptionSetValue:x","Value":100000000}}]}}]}`, nil)
	if w0.Code != http.StatusBadRequest {
		t.Errorf("empty GUID: status %d, want 400", w0.Code)
	}
	// Valid JSON but no contact id for a contact event.
	w := post(h, "/hooks/dataverse?code=s3cret", `{"MessageName":"Update","PrimaryEntityName":"contact"}`, nil)
	if w.Code != http.StatusBadRequest || w.Header().Get("X-Request-Id") == "" {
		t.Errorf("no id: status %d, request id %q", w.Code, w.Header().Get("X-Request-Id"))
	}
	if n := streamLen(t, i); n != 0 {
		t.Errorf("%d messages queued from malformed bodies", n)
	}
	if r.dv.count("retrieve") != 0 {
		t.Error("a malformed body caused a Dataverse read")
	}
}

func TestWebhookLimitsAndMethod(t *testing.T) {
	r := newRig(t)
	i := r.intake(t, func(c *Config) { c.Webhook.MaxBodyBytes = 512 })
	w := post(i.WebhookHandler(), "/hooks/dataverse?code=s3cret", sample(t, "update_requested.json"), nil)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d, want 413", w.Code)
	}
	req := httptest.NewRequest(http.MethodGet, "/hooks/dataverse?code=s3cret", nil)
	rec := httptest.NewRecorder()
	i.WebhookHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", rec.Code)
	}
	off := r.intake(t, func(c *Config) { c.Webhook.Enabled = false })
	if w := post(off.WebhookHandler(), "/hooks/dataverse?code=s3cret", "{}", nil); w.Code != http.StatusNotFound {
		t.Errorf("disabled: %d, want 404", w.Code)
	}
	if n := streamLen(t, i); n != 0 {
		t.Errorf("%d queued", n)
	}
}

func TestWebhookDecisions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string
		hdr     map[string]string
		contact string // row in the fake Dataverse, "" = none
		status  int
		want    int
		reads   int // Dataverse reads the handler needs
		portal  string
		roles   []string
	}{
		{name: "status in target", file: "update_requested.json", want: 202,
			portal: "Contoso Partner Portal", roles: []string{"Partners", "Customers"}},
		{name: "status only in post image", file: "update_image_only.json", want: 202, portal: "Contoso Customer Portal"},
		{name: "create", file: "create_requested.json", want: 202},
		{name: "no status anywhere: read back, requested", file: "update_docs_sample.json",
			contact: sampleContact, status: testCols.Requested, want: 202, reads: 1, portal: "Read Portal", roles: []string{"Partners"}},
		{name: "no status anywhere: read back, sent", file: "update_docs_sample.json",
			contact: sampleContact, status: testCols.Sent, want: 200, reads: 1},
		{name: "no status anywhere: contact gone", file: "update_docs_sample.json", want: 200, reads: 1},
		{name: "trimmed body", file: "trimmed.json", hdr: map[string]string{headerSizeExceeded: "true"},
			contact: sampleContact, status: testCols.Requested, want: 202, reads: 1, portal: "Read Portal", roles: []string{"Partners"}},
		{name: "trimmed flag overrides a target", file: "update_requested.json", hdr: map[string]string{headerSizeExceeded: "true"},
			contact: sampleContact, status: testCols.Sent, want: 200, reads: 1},
		{name: "status sent", file: "update_sent.json", want: 200},
		{name: "other table", file: "account_update.json", want: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			if tc.contact != "" {
				r.dv.set(tc.contact, tc.status, "Read Portal", "Partners")
			}
			i := r.intake(t, nil)
			w := post(i.WebhookHandler(), "/hooks/dataverse?code=s3cret", sample(t, tc.file), tc.hdr)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.want, w.Body)
			}
			if got := r.dv.count("retrieve"); got != tc.reads {
				t.Errorf("%d Dataverse reads, want %d", got, tc.reads)
			}
			jobs := queued(t, i)
			if tc.want != 202 {
				if len(jobs) != 0 {
					t.Errorf("queued %+v", jobs)
				}
				return
			}
			if len(jobs) != 1 {
				t.Fatalf("queued %d jobs", len(jobs))
			}
			j := jobs[0]
			if j.Source != "webhook" || j.InitiatingUserID != "6c3a0d53-77d4-ee11-9079-000d3a3b6e21" && j.InitiatingUserID != "5b2f0c52-77d4-ee11-9079-000d3a3b6e21" {
				t.Errorf("job %+v", j)
			}
			if j.Portal != tc.portal || strings.Join(j.Roles, "|") != strings.Join(tc.roles, "|") {
				t.Errorf("portal %q roles %q, want %q %q", j.Portal, j.Roles, tc.portal, tc.roles)
			}
			if !strings.HasPrefix(j.DedupeKey, "webhook:"+j.ContactID+":") {
				t.Errorf("dedupe key %q", j.DedupeKey)
			}
			// The same delivery again (Dataverse retry or duplicate) is
			// answered 200 and not queued twice.
			w = post(i.WebhookHandler(), "/hooks/dataverse?code=s3cret", sample(t, tc.file), tc.hdr)
			if w.Code != http.StatusOK || len(queued(t, i)) != 1 {
				t.Errorf("duplicate: status %d, %d queued", w.Code, len(queued(t, i)))
			}
		})
	}
}

func TestWebhookUnavailable(t *testing.T) {
	t.Run("redis down", func(t *testing.T) {
		r := newRig(t)
		var outcomes []string
		i := r.intake(t, func(c *Config) { c.Hooks.Webhook = func(o string) { outcomes = append(outcomes, o) } })
		r.srv.Stop()
		w := post(i.WebhookHandler(), "/hooks/dataverse?code=s3cret", sample(t, "update_requested.json"), nil)
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", w.Code)
		}
		if len(outcomes) != 1 || outcomes[0] != WebhookUnavailable {
			t.Errorf("outcomes %v", outcomes)
		}
		if err := i.Ready(context.Background()); err == nil {
			t.Error("Ready with Redis down")
		}
	})
	t.Run("read back fails", func(t *testing.T) {
		r := newRig(t)
		r.dv.failRetrieve = &dataverse.Error{StatusCode: 503, Message: "busy"}
		i := r.intake(t, nil)
		w := post(i.WebhookHandler(), "/hooks/dataverse?code=s3cret", sample(t, "update_docs_sample.json"), nil)
		if w.Code != http.StatusServiceUnavailable || streamLen(t, i) != 0 {
			t.Errorf("status %d, %d queued", w.Code, streamLen(t, i))
		}
	})
	t.Run("shutting down", func(t *testing.T) {
		r := newRig(t)
		i := r.intake(t, nil)
		if err := i.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		w := post(i.WebhookHandler(), "/hooks/dataverse?code=s3cret", sample(t, "update_requested.json"), nil)
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("status %d, want 503", w.Code)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	r := newRig(t)
	for name, mod := range map[string]func(*Config){
		"no redis":       func(c *Config) { c.Redis = nil },
		"no status":      func(c *Config) { c.Contact.Status = "" },
		"no secret":      func(c *Config) { c.Webhook.AuthValue = "" },
		"bad auth type":  func(c *Config) { c.Webhook.AuthType = "basic" },
		"header no name": func(c *Config) { c.Webhook.AuthType = AuthHTTPHeader },
		"bad schedule":   func(c *Config) { c.Poll = PollConfig{Enabled: true, Schedule: "every now and then"} },
	} {
		cfg := Config{Redis: r.rdb, Invites: r.inv, Dataverse: r.dv, Contact: testCols,
			Webhook: WebhookConfig{Enabled: true, AuthValue: "x"}}
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}
