package delivery_test

import (
	"sync"
	"testing"

	smtpd "github.com/emersion/go-smtp"

	"github.com/d365portal/connector/internal/delivery"
	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/telemetry/telemetrytest"
)

// With tracing on each SMTP submission is a client span: a 451 is
// "temporary" with its code, the retry "accepted"; neither carries the
// recipient, the subject or the message.
func TestSMTPSubmissionSpans(t *testing.T) {
	mem := telemetrytest.NewMemory(t)
	var mu sync.Mutex
	busy := true
	srv := startServer(t, testPKI{}, serverConfig{security: "none", onMail: func(_ *smtpd.Conn, _ string) error {
		mu.Lock()
		defer mu.Unlock()
		if busy {
			return &smtpd.SMTPError{Code: 451, EnhancedCode: smtpd.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
		return nil
	}})
	sender := newSender(t, srv.host, srv.port, delivery.SMTPOptions{Security: delivery.SecurityNone})
	e := newFollowEnv(t, followOpts{channel: invite.ChannelSMTP, smtp: sender, tracing: mem.Provider})
	c := e.invite("traced@example.com")
	if _, err := e.follow.Follow(e.ctx, c); !delivery.IsTemporary(err) {
		t.Fatalf("Follow error %v, want a temporary one", err)
	}
	mu.Lock()
	busy = false
	mu.Unlock()
	e.followOnce(c, delivery.OutcomeDelivered)

	spans := mem.Spans(t)
	var got []string
	for _, s := range spans {
		if s.Name != "SMTP send" {
			continue
		}
		a := telemetrytest.Attrs(s.Attributes)
		got = append(got, a["connector.outcome"].AsString()+" "+a["error.type"].AsString())
		if a["connector.delivery.channel"].AsString() != "smtp" || a["connector.email.id"].AsString() == "" {
			t.Errorf("SMTP span attributes %v", a)
		}
	}
	if len(got) != 2 || got[0] != "temporary 451" || got[1] != "accepted " {
		t.Errorf("SMTP spans %q, want a temporary 451 then accepted", got)
	}
	msgs := srv.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages at the server", len(msgs))
	}
	telemetrytest.AssertNoSecret(t, spans, map[string]string{"recipient": "traced@example.com", "message": string(msgs[0].Data)})
}
