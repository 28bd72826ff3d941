package main

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	intake "github.com/d365portal/connector/internal/sync"
	"github.com/d365portal/connector/internal/telemetry/telemetrytest"
)

var emailCodeRe = regexp.MustCompile(`invitation\?code=([^"&<\s]+)`)

// The wired connector with tracing on (in-memory exporter behind the
// sanitizer) invites a contact clicked in Dynamics and the invitee redeems
// the code with a password: the webhook, the enqueue, the worker and its
// Dataverse requests are one trace; the portal pages are spans named by
// route; no span carries the code, the password, the token secret, the
// webhook key or the email body.
func TestTracingInvitationAndRedemption(t *testing.T) {
	org := newTestOrg(t)
	c, err := config.Load(org.cfgPath, config.Options{Getenv: org.getenv(org.emu.ClientSecret)})
	if err != nil {
		t.Fatal(err)
	}
	rdb, err := newRedis(c)
	if err != nil {
		t.Fatal(err)
	}
	mem := telemetrytest.NewMemory(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := newApp(c, log, appOptions{Redis: rdb, Tracing: mem.Provider})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	hookURL, _ := intake.WebhookURL(base, c.Intake.Webhook.Path)
	if _, err := intake.RegisterWebhook(ctx, a.dv, intake.RegisterOptions{
		URL: hookURL, AuthType: c.Intake.Webhook.Auth.Type, AuthValue: c.Intake.Webhook.Auth.Value,
		Contact: contactColumns(c), FollowEmails: true,
	}); err != nil {
		t.Fatal(err)
	}

	// The CRM user's click, through a client of its own (untraced).
	crm, err := newDataverse(c, log, noHooks)
	if err != nil {
		t.Fatal(err)
	}
	contact := org.seed.ContactIDs[0]
	if _, err := crm.Update(ctx, "contacts", contact, map[string]any{
		c.Intake.Contact.StatusAttribute: c.Intake.Contact.Status.Requested,
		c.Intake.Contact.PortalAttribute: "Contoso Partner Portal", c.Intake.Contact.RolesAttribute: "Partners",
	}, nil); err != nil {
		t.Fatal(err)
	}
	var mail emulator.SentEmail
	for deadline := time.Now().Add(30 * time.Second); mail.ID == ""; time.Sleep(50 * time.Millisecond) {
		if out := org.emu.Outbox(); len(out) > 0 {
			mail = out[0]
		}
		if time.Now().After(deadline) {
			t.Fatal("no invitation email after 30s")
		}
	}
	m := emailCodeRe.FindStringSubmatch(mail.HTML)
	if m == nil {
		t.Fatalf("no code in the email:\n%s", mail.HTML)
	}
	code, _ := url.QueryUnescape(html.UnescapeString(m[1]))

	// The invitee redeems it.
	const password = "Blue-Harbor-Lantern-42"
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(base + "/invitation?code=" + url.QueryEscape(code))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := url.Values{"username": {"traced@example.test"}, "password": {password}, "confirm_password": {password}}
	for _, h := range hiddenRe.FindAllStringSubmatch(string(page), -1) {
		form.Set(h[1], h[2])
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/invitation", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	if resp, err = browser.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/profile" {
		t.Fatalf("redeem: %d -> %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// A JSON API call continues its caller's trace (the caller holds a key).
	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ = http.NewRequest(http.MethodGet, base+"/api/v1/schedule", nil)
	req.Header.Set("Authorization", "Bearer "+c.API.Keys[0])
	req.Header.Set("traceparent", "00-"+caller+"-00f067aa0ba902b7-01")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	spans := mem.Spans(t)
	byID := map[trace.SpanID]tracetest.SpanStub{}
	apiSpan := false
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
		if s.Name == "GET /api/v1/schedule" && s.SpanKind == trace.SpanKindServer && s.SpanContext.TraceID().String() == caller &&
			telemetrytest.Attrs(s.Attributes)["http.response.status_code"].AsInt64() == int64(resp.StatusCode) {
			apiSpan = true
		}
	}
	if !apiSpan {
		t.Errorf("no API span GET /api/v1/schedule in the caller's trace (status %d)", resp.StatusCode)
	}
	var consumer *tracetest.SpanStub
	for k, s := range spans {
		a := telemetrytest.Attrs(s.Attributes)
		if s.SpanKind == trace.SpanKindConsumer && a["connector.contact.id"].AsString() == contact && a["connector.outcome"].AsString() == "sent" {
			consumer = &spans[k]
		}
	}
	if consumer == nil {
		t.Fatal("no worker span that sent the invitation")
	}
	chain := []string{}
	for s, ok := *consumer, true; ok; s, ok = byID[s.Parent.SpanID()] {
		chain = append([]string{s.SpanKind.String() + " " + s.Name}, chain...)
	}
	want := []string{"server POST /hooks/dataverse", "producer send pinv:intake:stream", "consumer process pinv:intake:stream"}
	if strings.Join(chain, " → ") != strings.Join(want, " → ") {
		t.Errorf("invitation trace %v, want %v", chain, want)
	}
	dataverseSpans := 0
	for _, s := range spans {
		if s.SpanKind == trace.SpanKindClient && s.Parent.SpanID() == consumer.SpanContext.SpanID() &&
			s.SpanContext.TraceID() == consumer.SpanContext.TraceID() && strings.Contains(s.Name, "/api/data/v9.2/") {
			dataverseSpans++
		}
	}
	if dataverseSpans < 2 {
		t.Errorf("%d Dataverse spans under the worker, want the contact read and the invitation's writes", dataverseSpans)
	}
	names := map[string]bool{}
	for _, s := range spans {
		names[s.Name] = true
		if s.SpanKind == trace.SpanKindClient && !s.Parent.IsValid() {
			t.Errorf("Dataverse span %q is a trace of its own: requests outside a traced operation are not traced", s.Name)
		}
	}
	for _, n := range []string{"GET /invitation", "POST /invitation"} {
		if !names[n] {
			t.Errorf("no portal span %q", n)
		}
	}
	telemetrytest.AssertNoSecret(t, spans, map[string]string{
		"invitation code": code, "password": password, "token secret": c.Identity.TokenSecret,
		"webhook key": c.Intake.Webhook.Auth.Value, "email body": mail.HTML, "email text": mail.Text,
		"email subject": mail.Subject, "invitee address": mail.To[0],
	})
}

// `connector dev --traces-endpoint` sends its traces over OTLP/HTTP to a
// receiver in the test process: the invitation's trace arrives whole
// (webhook → enqueue → worker → Dataverse) once the process is stopped
// with SIGTERM, which flushes what is queued, and no span carries the code.
func TestDevExportsTraces(t *testing.T) {
	r, err := telemetrytest.StartReceiver()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	cmd, info := startDev(t, "--traces-endpoint", r.URL())
	client := &http.Client{Timeout: 30 * time.Second}
	get := func(u string) string {
		t.Helper()
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	m := contactFormRe.FindStringSubmatch(get(info.DynamicsURL))
	if m == nil {
		t.Fatal("no Invite to portal button on the Dynamics page")
	}
	contact := m[1]
	resp, err := client.PostForm(info.DynamicsURL+"invite", url.Values{
		"contact": {contact}, "portal": {"Contoso Partner Portal"}, "role": {"Partners"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var link string
	for deadline := time.Now().Add(30 * time.Second); link == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m := invitationRe.FindStringSubmatch(get(info.OutboxURL)); m != nil {
			link = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if link == "" {
		t.Fatal("no invitation email in the outbox after 30s")
	}
	u, _ := url.Parse(link)
	code := u.Query().Get("code")
	if get(link) == "" {
		t.Fatal("the invitation page is empty")
	}
	stopGracefully(t, cmd, 30*time.Second)

	spans := r.Spans()
	byID := map[string]telemetrytest.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	var chain []string
	for _, s := range spans {
		if s.Kind != 5 || s.Attrs["connector.contact.id"] != contact || s.Attrs["connector.outcome"] != "sent" {
			continue
		}
		for p, ok := s, true; ok; p, ok = byID[p.ParentID] {
			chain = append([]string{p.Name}, chain...)
		}
		clients := 0
		for _, c := range spans {
			if c.Kind == 3 && c.ParentID == s.SpanID && c.TraceID == s.TraceID {
				clients++
			}
		}
		if clients < 2 {
			t.Errorf("%d Dataverse spans under the worker", clients)
		}
		if s.Resource["service.name"] != "connector" {
			t.Errorf("resource %v, want service.name connector", s.Resource)
		}
	}
	if len(chain) != 3 || chain[0] != "POST /hooks/dataverse" {
		t.Fatalf("received %d spans in %d requests; invitation chain %v, want webhook → enqueue → worker", len(spans), r.Requests(), chain)
	}
	sawPortal := false
	for _, s := range spans {
		if s.Name == "GET /invitation" {
			sawPortal = true
		}
		for k, v := range s.Attrs {
			if strings.Contains(v, code) || strings.Contains(k, code) {
				t.Errorf("span %q attribute %s carries the code", s.Name, k)
			}
		}
		if strings.Contains(s.Name, code) {
			t.Errorf("span name %q carries the code", s.Name)
		}
	}
	if !sawPortal {
		t.Error("no GET /invitation span received")
	}
}

// serve refuses an OTLP setting it cannot honour, naming the variable,
// before it connects to anything.
func TestServeRefusesBadTraceSettings(t *testing.T) {
	org := newTestOrg(t)
	src, _ := os.ReadFile(org.cfgPath)
	on := string(src) + "telemetry:\n  traces:\n    enabled: true\n"
	if err := os.WriteFile(org.cfgPath, []byte(on), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "OTEL_EXPORTER_OTLP_PROTOCOL" {
			return "grpc"
		}
		return org.getenv(org.emu.ClientSecret)(k)
	}
	code, _, stderr := runCLI(t, getenv, "serve", "--config", org.cfgPath)
	if code != exitUsage || !strings.Contains(stderr, "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

// `connector invite --contact` with tracing on is one trace: the command's
// root span over the Dataverse requests of the invitation, sent before
// the command returns.
func TestInviteCommandTrace(t *testing.T) {
	org := newTestOrg(t)
	r, err := telemetrytest.StartReceiver()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	src, _ := os.ReadFile(org.cfgPath)
	on := string(src) + "telemetry:\n  traces:\n    enabled: true\n    endpoint: \"" + r.URL() + "\"\n"
	if err := os.WriteFile(org.cfgPath, []byte(on), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, org.getenv(org.emu.ClientSecret), "invite", "--config", org.cfgPath,
		"--contact", org.seed.ContactIDs[0], "--role", "Partners")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	spans := r.Spans()
	var root telemetrytest.Span
	for _, s := range spans {
		if s.Name == "connector invite" {
			root = s
		}
	}
	if root.SpanID == "" || root.ParentID != "" {
		t.Fatalf("no root span named connector invite among %d spans", len(spans))
	}
	clients := 0
	for _, s := range spans {
		if s.Kind == 3 && s.TraceID == root.TraceID && strings.Contains(s.Name, "/api/data/v9.2/") {
			clients++
		}
	}
	if clients < 2 {
		t.Errorf("%d Dataverse spans in the command's trace, want the reads and the invitation's writes", clients)
	}
}
