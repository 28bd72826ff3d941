package sync

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/telemetry/telemetrytest"
)

// With tracing on, each invitation is one trace: the webhook's server span
// (with Dataverse's correlation id) → the enqueue's producer span → the
// worker's consumer span (attempt 1) → the Dataverse requests made for it,
// and the email's follow-up (a trace of its own, from the email webhook)
// links back to it. Neither the webhook key nor an email address reaches a
// span. A 429 on the first write shows as a retry on the worker's trace.
func TestTraceOneInvitation(t *testing.T) {
	mem := telemetrytest.NewMemory(t)
	c := newCluster(t, clusterOpts{
		contacts: 2, instances: 1, workers: 2, webhooks: true, follow: true, tracing: mem.Provider,
		emailSync: emulator.EmailSyncOptions{Delay: 50 * time.Millisecond, Submit: 20 * time.Millisecond,
			Limits: emulator.MailboxLimits{Messages: -1, Recipients: -1}},
		faults: emulator.FaultOptions{Seed: 3, Rules: []emulator.FaultRule{
			{Method: http.MethodPatch, Set: "contacts"}, // the CRM user's clicks
			{Method: http.MethodPost, Throttle: 0.3},
		}},
	})
	if err := c.flag(context.Background(), c.contacts, 2); err != nil {
		t.Fatal(err)
	}
	counts := c.waitSettled(c.contacts, 30*time.Second)
	c.em.WaitWebhooks()
	if counts[testCols.Delivered] != len(c.contacts) {
		t.Fatalf("statuses %v, want all Delivered", counts)
	}
	spans := mem.Spans(t)
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
	}
	// root walks up to the first span of a trace this process saw.
	root := func(s tracetest.SpanStub) tracetest.SpanStub {
		for {
			p, ok := byID[s.Parent.SpanID()]
			if !ok {
				return s
			}
			s = p
		}
	}
	retries := 0
	for _, contact := range c.contacts {
		var consumer *tracetest.SpanStub
		for k := range spans {
			s := spans[k]
			a := telemetrytest.Attrs(s.Attributes)
			if s.SpanKind == trace.SpanKindConsumer && a["connector.contact.id"].AsString() == contact &&
				a["connector.kind"].AsString() == "invite" && a["connector.outcome"].AsString() == OutcomeSent {
				consumer = &spans[k]
			}
		}
		if consumer == nil {
			t.Fatalf("contact %s: no consumer span that sent its invitation", contact)
		}
		if a := telemetrytest.Attrs(consumer.Attributes); a["connector.attempt"].AsInt64() != 1 || a["messaging.system"].AsString() != "redis" {
			t.Errorf("consumer attributes %v", a)
		}
		producer, ok := byID[consumer.Parent.SpanID()]
		if !ok || producer.SpanKind != trace.SpanKindProducer {
			t.Fatalf("contact %s: the consumer's parent is %q (%v), want the enqueue's producer span", contact, producer.Name, producer.SpanKind)
		}
		hook := root(*consumer)
		ha := telemetrytest.Attrs(hook.Attributes)
		if hook.SpanKind != trace.SpanKindServer || hook.Name != "POST /hooks/dataverse" ||
			ha["http.response.status_code"].AsInt64() != 202 || ha["connector.outcome"].AsString() != WebhookAccepted ||
			ha["dataverse.entity"].AsString() != "contact" {
			t.Errorf("contact %s: trace root %q kind %v attrs %v, want the accepted webhook", contact, hook.Name, hook.SpanKind, ha)
		}
		if hook.SpanContext.TraceID() != consumer.SpanContext.TraceID() {
			t.Errorf("contact %s: webhook and worker in different traces", contact)
		}
		// The Dataverse requests of the invitation: clients under the consumer.
		var writes []string
		for _, s := range spans {
			if s.SpanKind != trace.SpanKindClient || s.SpanContext.TraceID() != consumer.SpanContext.TraceID() {
				continue
			}
			for p := s; ; {
				if p.Parent.SpanID() == consumer.SpanContext.SpanID() {
					writes = append(writes, s.Name+" "+telemetrytest.Attrs(s.Attributes)["http.response.status_code"].Emit())
					break
				}
				var ok bool
				if p, ok = byID[p.Parent.SpanID()]; !ok {
					break
				}
			}
		}
		if len(writes) < 2 || !strings.Contains(strings.Join(writes, ","), "/api/data/v9.2/contacts({id})") {
			t.Errorf("contact %s: Dataverse spans under the worker %v, want the contact read and the invitation writes", contact, writes)
		}
		t.Logf("contact %s: Dataverse spans under the worker: %v", contact, writes)
		for _, e := range consumer.Events {
			if e.Name == "retry" {
				retries++
			}
		}
		// The follow-up of the email: its own trace, linked to this one.
		linked := false
		for _, s := range spans {
			if s.Name != "follow invitation email" || telemetrytest.Attrs(s.Attributes)["connector.contact.id"].AsString() != contact {
				continue
			}
			for _, l := range s.Links {
				if l.SpanContext.TraceID() == consumer.SpanContext.TraceID() &&
					telemetrytest.Attrs(s.Attributes)["connector.outcome"].AsString() == OutcomeDelivered {
					linked = true
				}
			}
		}
		if !linked {
			t.Errorf("contact %s: no delivered follow-up span linked to the invitation's trace", contact)
		}
	}
	if retries == 0 {
		t.Error("no retry event on the workers' spans, though a third of the writes were throttled")
	}
	secrets := map[string]string{"webhook key": itSecret}
	for email := range c.emails {
		secrets["email address "+email] = email
	}
	telemetrytest.AssertNoSecret(t, spans, secrets)
}
