package telemetry

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

func TestPathPattern(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/invitation", "/invitation"},
		{"/invitation?code=AB12CD34EF", "/invitation"},
		{"/api/data/v9.2/contacts(6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10)", "/api/data/v9.2/contacts({id})"},
		{"/api/data/v9.2/contacts(6F1C3E1A-28A4-4F0E-9A55-2D3C1E0F7B10)/adx_invitation_invitecontact?$select=adx_name", "/api/data/v9.2/contacts({id})/adx_invitation_invitecontact"},
		{"/api/data/v9.2/contacts(emailaddress1='ann@example.com')", "/api/data/v9.2/contacts({key})"},
		{"/api/data/v9.2/contacts?$filter=emailaddress1 eq 'ann@example.com'", "/api/data/v9.2/contacts"},
		{"/api/data/v9.2/WhoAmI()", "/api/data/v9.2/WhoAmI()"},
		{"/api/data/v9.2/$batch", "/api/data/v9.2/$batch"},
		{"/api/data/v9.2/emails(6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10)/Microsoft.Dynamics.CRM.SendEmail", "/api/data/v9.2/emails({id})/Microsoft.Dynamics.CRM.SendEmail"},
		{"/portal/6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10/profile", "/portal/{id}/profile"},
		{"/confirm-email/Xk29fQpL0aZr7TbW3yNc", "/confirm-email/{token}"},
		{"/u/ann@example.com", "/u/{key}"},
		{"/u/ann%40example.com", "/u/{key}"},
		{"/signin-oidc/entra#frag", "/signin-oidc/entra"},
		{"/adx_invitation_mspp_webrole_powerpagecomponent", "/adx_invitation_mspp_webrole_powerpagecomponent"},
		{"GET /api/data/v9.2/contacts(6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10)?$select=fullname", "GET /api/data/v9.2/contacts({id})"},
	} {
		if got := PathPattern(c.in); got != c.want {
			t.Errorf("PathPattern(%q) = %q, want %q", c.in, got, c.want)
		}
		// The transport takes the pattern and the exporter takes it again.
		if got := PathPattern(c.want); got != c.want {
			t.Errorf("PathPattern(%q) = %q, want it unchanged", c.want, got)
		}
	}
}

func TestSanitizerRules(t *testing.T) {
	s := NewSanitizer(DefaultRules())
	got := attrMap(s.Attributes([]attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String("POST"),
		semconv.HTTPResponseStatusCode(429),
		semconv.URLFull("https://user:pw@org.crm.dynamics.com/api/data/v9.2/contacts(6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10)?$filter=x#f"),
		semconv.URLPath("/invitation?code=SECRET123"),
		semconv.URLQuery("code=SECRET123"),
		semconv.ErrorTypeKey.String("invalid code for ann@example.com"),
		KeyContactID.String("ann@example.com"),
		KeyInvitationID.String("{6F1C3E1A-28A4-4F0E-9A55-2D3C1E0F7B10}"),
		KeyPortal.String("customer"),
		KeyRetryWaitMS.String("1000"), // a number rule takes numbers only
		KeyRetryAfter.StringSlice([]string{"12", "Wed, 21 Oct 2015 07:28:00 GMT"}),
		attribute.String("invite.code", "AB12CD34"),
		attribute.String("password", "hunter2"),
		attribute.String("http.request.header.authorization", "Bearer eyJ0eXAi"),
		attribute.String("email.body", "<p>Your code is AB12CD34</p>"),
		attribute.String("db.query.text", "SET session:abc {...}"),
	}))
	want := map[attribute.Key]string{
		semconv.HTTPRequestMethodKey:      "POST",
		semconv.HTTPResponseStatusCodeKey: "429",
		semconv.URLFullKey:                "https://org.crm.dynamics.com/api/data/v9.2/contacts({id})",
		semconv.URLPathKey:                "/invitation",
		KeyInvitationID:                   "6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10",
		KeyPortal:                         "customer",
		KeyRetryAfter:                     `["12"]`,
	}
	for k, w := range want {
		v, ok := got[k]
		if !ok {
			t.Errorf("%s dropped, want %q", k, w)
			continue
		}
		if e := v.Emit(); e != w {
			t.Errorf("%s = %q, want %q", k, e, w)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s = %q kept, want dropped", k, v.Emit())
		}
	}
}

// Through the whole chain, what reaches the exporter has no secret: not in
// attributes, event attributes, link attributes, names or status text.
func TestSanitizedSpansReachExporter(t *testing.T) {
	tp, mem, flush := memTracing(t, Config{Enabled: true})
	tracer := tp.Tracer("test")
	secrets := []string{"AB12CD34", "hunter2", "ann@example.com", "eyJ0eXAi", "Your code"}

	_, other := tracer.Start(context.Background(), "other")
	ctx, span := tracer.Start(context.Background(), "GET /invitation?code=AB12CD34",
		trace.WithLinks(trace.Link{SpanContext: other.SpanContext(), Attributes: []attribute.KeyValue{
			attribute.String("invite.code", "AB12CD34"), KeyPortal.String("customer"),
		}}))
	other.End()
	span.SetAttributes(
		semconv.HTTPRequestMethodKey.String("GET"),
		semconv.URLPath("/invitation?code=AB12CD34"),
		attribute.String("invite.code", "AB12CD34"),
		attribute.String("user.password", "hunter2"),
		attribute.String("user.email", "ann@example.com"),
		attribute.String("http.request.header.authorization", "Bearer eyJ0eXAi"),
		attribute.String("email.body", "Your code is AB12CD34"),
	)
	span.RecordError(errors.New("redeem: code AB12CD34 for ann@example.com: expired"))
	span.AddEvent("mail to ann@example.com", trace.WithAttributes(KeyOutcome.String("sent")))
	span.SetStatus(codes.Error, "redeem: code AB12CD34 rejected")
	RecordRetry(ctx, 1, 0, 429)
	span.End()
	flush()

	var found bool
	for _, s := range mem.GetSpans() {
		if s.Name == "other" {
			continue
		}
		found = true
		dump := s.Name + " " + s.Status.Description
		for _, kv := range s.Attributes {
			dump += " " + string(kv.Key) + "=" + kv.Value.Emit()
		}
		for _, e := range s.Events {
			dump += " event:" + e.Name
			for _, kv := range e.Attributes {
				dump += " " + string(kv.Key) + "=" + kv.Value.Emit()
			}
		}
		for _, l := range s.Links {
			for _, kv := range l.Attributes {
				dump += " link:" + string(kv.Key) + "=" + kv.Value.Emit()
			}
		}
		for _, sec := range secrets {
			if strings.Contains(dump, sec) {
				t.Errorf("exported span holds %q: %s", sec, dump)
			}
		}
		if s.Name != "GET /invitation" {
			t.Errorf("name %q, want GET /invitation", s.Name)
		}
		if s.Status.Code != codes.Error || s.Status.Description != "" {
			t.Errorf("status %+v, want Error with no description", s.Status)
		}
		a := attrMap(s.Attributes)
		if a[semconv.URLPathKey].AsString() != "/invitation" || a[semconv.HTTPRequestMethodKey].AsString() != "GET" {
			t.Errorf("allowed attributes lost: %v", s.Attributes)
		}
		var exception, retry, mail bool
		for _, e := range s.Events {
			ea := attrMap(e.Attributes)
			switch e.Name {
			case "exception":
				exception = ea[semconv.ExceptionTypeKey].AsString() != ""
			case "retry":
				retry = ea[semconv.HTTPResponseStatusCodeKey].AsInt64() == 429
			case "mail to {key}":
				mail = ea[KeyOutcome].AsString() == "sent"
			}
		}
		if !exception || !retry || !mail {
			t.Errorf("events %+v: want exception with its type, retry with 429, mail with its outcome", s.Events)
		}
		if len(s.Links) != 1 || attrMap(s.Links[0].Attributes)[KeyPortal].AsString() != "customer" {
			t.Errorf("links %+v: want one, keeping its portal attribute", s.Links)
		}
	}
	if !found {
		t.Fatal("the span never reached the exporter")
	}
}

func TestSpanName(t *testing.T) {
	s := NewSanitizer(DefaultRules())
	for _, c := range []struct{ in, want string }{
		{"invite.process", "invite.process"},
		{"GET /api/data/v9.2/contacts?$filter=emailaddress1 eq 'ann@example.com'", "GET /api/data/v9.2/contacts"},
		{"POST /api/data/v9.2/emails(6f1c3e1a-28a4-4f0e-9a55-2d3c1e0f7b10)/Microsoft.Dynamics.CRM.SendEmail", "POST /api/data/v9.2/emails({id})/Microsoft.Dynamics.CRM.SendEmail"},
		{"mail to ann@example.com", "mail to {key}"},
		{"redeem Xk29fQpL0aZr7TbW3yNc", "redeem {token}"},
	} {
		if got := s.SpanName(c.in); got != c.want {
			t.Errorf("SpanName(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
