package config

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestDeliveryDefaults(t *testing.T) {
	c, err := LoadBytes([]byte(minimal), Options{Getenv: dummyEnv})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Intake.Contact.Status.Delivered; got != 100000004 {
		t.Errorf("intake.contact.status.delivered = %d, want 100000004", got)
	}
	p := c.Portals[0]
	if p.Email.Channel != "dataverse" {
		t.Errorf("email.channel = %q, want dataverse", p.Email.Channel)
	}
	if p.Email.PendingAlertAfter.D() != 30*time.Minute || p.PendingAlertAfterOf() != 30*time.Minute {
		t.Errorf("email.pending_alert_after = %v, want 30m", p.Email.PendingAlertAfter)
	}
	if c.UsesSMTP() {
		t.Error("UsesSMTP with no smtp portal")
	}
	if c.SMTP.Security != "" {
		t.Errorf("smtp.security defaulted to %q without an smtp portal", c.SMTP.Security)
	}
}

// smtpConfig is minimal with the portal on the smtp channel and smtp set
// to the given block.
func smtpConfig(block string) string {
	src := strings.Replace(minimal, "      sender: initiating_user\n",
		"      sender: initiating_user\n      channel: smtp\n      pending_alert_after: 5m\n", 1)
	return src + block
}

func TestSMTPChannelParsed(t *testing.T) {
	c, err := LoadBytes([]byte(smtpConfig(`
smtp:
  host: smtp.azurecomm.net
  username: contoso-acs
  password: ${SMTP_PASSWORD}
  from: Contoso Portal <portal@contoso.com>
`)), Options{Getenv: func(k string) string {
		if k == "SMTP_PASSWORD" {
			return "smtp-secret-value"
		}
		return dummyEnv(k)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !c.UsesSMTP() || c.Portals[0].Email.Channel != ChannelSMTP {
		t.Fatalf("channel %q, UsesSMTP %v", c.Portals[0].Email.Channel, c.UsesSMTP())
	}
	if c.SMTP.Security != "starttls" || c.SMTP.Port != 0 || c.SMTP.Password != "smtp-secret-value" {
		t.Errorf("smtp = %+v", c.SMTP)
	}
	if c.Portals[0].PendingAlertAfterOf() != 5*time.Minute {
		t.Errorf("pending_alert_after = %v", c.Portals[0].Email.PendingAlertAfter)
	}
	var out bytes.Buffer
	if err := c.Dump(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "smtp-secret-value") || !strings.Contains(out.String(), "password: '[redacted]'") {
		t.Errorf("dump does not hide smtp.password:\n%s", out.String())
	}
}

func TestDeliveryProblems(t *testing.T) {
	cases := []struct {
		name, src string
		keys      []string
	}{
		{"smtp block missing", smtpConfig(""), []string{"smtp.host", "smtp.from"}},
		{"clear text to a remote host", smtpConfig("smtp:\n  host: relay.contoso.com\n  security: none\n  from: portal@contoso.com\n"), []string{"smtp.security"}},
		{"unknown security", smtpConfig("smtp:\n  host: relay.contoso.com\n  security: ssl\n  from: portal@contoso.com\n"), []string{"smtp.security"}},
		{"password without user", smtpConfig("smtp:\n  host: relay.contoso.com\n  password: x\n  port: 70000\n  from: portal@contoso.com\n"), []string{"smtp.port", "smtp.username"}},
		{"bad from", smtpConfig("smtp:\n  host: relay.contoso.com\n  from: portal\n"), []string{"smtp.from"}},
		{"unknown channel", strings.Replace(minimal, "      sender: initiating_user\n", "      sender: initiating_user\n      channel: graph\n", 1), []string{"portals[0].email.channel"}},
		{"alert delay not positive", strings.Replace(minimal, "      sender: initiating_user\n", "      sender: initiating_user\n      pending_alert_after: 0s\n", 1), []string{"portals[0].email.pending_alert_after"}},
		{"delivered equals sent", strings.Replace(minimal, "intake:\n", "intake:\n  contact:\n    status:\n      delivered: 100000001\n", 1), []string{"intake.contact.status.delivered"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadBytes([]byte(tc.src), Options{Getenv: dummyEnv})
			got := problemsOf(t, err)
			for _, k := range tc.keys {
				if _, ok := got[k]; !ok {
					t.Errorf("no problem for %s; got %v", k, got)
				}
			}
			if len(got) != len(tc.keys) {
				t.Errorf("got %d problems %v, want exactly %v", len(got), got, tc.keys)
			}
		})
	}
	// A loopback relay may be plain.
	if _, err := LoadBytes([]byte(smtpConfig("smtp:\n  host: 127.0.0.1\n  port: 2525\n  security: none\n  from: portal@contoso.com\n")), Options{Getenv: dummyEnv}); err != nil {
		t.Errorf("loopback relay without TLS refused: %v", err)
	}
}
