package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/d365portal/connector/internal/config"
)

func TestLoggerRedactsSensitiveAttributes(t *testing.T) {
	var b bytes.Buffer
	log := newLogger(config.Log{Level: "debug", Format: "json"}, &b)
	log.Info("redeem", "code", "ABCD-EFGH", "client_secret", "s3cret", "contact_id", "42", "password", "hunter2")
	out := b.String()
	for _, leaked := range []string{"ABCD-EFGH", "s3cret", "hunter2"} {
		if strings.Contains(out, leaked) {
			t.Errorf("log line leaks %q: %s", leaked, out)
		}
	}
	if !strings.Contains(out, `"contact_id":"42"`) {
		t.Errorf("ordinary attribute lost: %s", out)
	}
	b.Reset()
	newLogger(config.Log{Level: "warn", Format: "text"}, &b).Info("quiet")
	if b.Len() != 0 {
		t.Errorf("info logged at warn level: %s", b.String())
	}
}
