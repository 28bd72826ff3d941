package config

import (
	"strings"
	"testing"
)

func TestCommandStatusDefaults(t *testing.T) {
	c, err := LoadBytes([]byte(minimal), Options{Getenv: dummyEnv})
	if err != nil {
		t.Fatal(err)
	}
	st := c.Intake.Contact.Status
	if st.Resend != 100000005 || st.Revoke != 100000006 || st.Revoked != 100000007 || st.Expired != 100000008 {
		t.Errorf("resend/revoke/revoked/expired = %d/%d/%d/%d, want 100000005..100000008", st.Resend, st.Revoke, st.Revoked, st.Expired)
	}
}

func TestCommandStatusClash(t *testing.T) {
	src := strings.Replace(minimal, "intake:\n", "intake:\n  contact:\n    status:\n      revoke: 100000001\n", 1)
	_, err := LoadBytes([]byte(src), Options{Getenv: dummyEnv})
	if err == nil || !strings.Contains(err.Error(), "intake.contact.status.revoke") || !strings.Contains(err.Error(), "intake.contact.status.sent") {
		t.Fatalf("err = %v, want intake.contact.status.revoke clashing with sent", err)
	}
}
