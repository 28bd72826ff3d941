package invite

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	s := tokenSigner{key: []byte("0123456789abcdef0123456789abcdef")}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	id := "6f1c2c8e-3b7a-4c59-9d1e-0a2b3c4d5e6f"
	tok, err := s.issue(purposeResetPassword, id, now.Add(time.Hour), "stamp-1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(tok, "+/=") {
		t.Fatalf("token %q is not URL-safe", tok)
	}
	c, err := s.open(tok, purposeResetPassword, now)
	if err != nil || c.contactID != id || !c.expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("open = %+v, %v", c, err)
	}
	if !s.valid(c, "stamp-1") {
		t.Fatal("valid token rejected")
	}
	if s.valid(c, "stamp-2") {
		t.Fatal("token survived a new security stamp")
	}
	cases := []struct {
		name    string
		tok     string
		purpose byte
		now     time.Time
	}{
		{"expired", tok, purposeResetPassword, now.Add(time.Hour)},
		{"wrong purpose", tok, purposeConfirmEmail, now},
		{"garbage", "abc", purposeResetPassword, now},
		{"tampered", tok[:len(tok)-2] + "AA", purposeResetPassword, now},
	}
	for _, tc := range cases {
		c, err := s.open(tc.tok, tc.purpose, tc.now)
		if err == nil && s.valid(c, "stamp-1") {
			t.Errorf("%s: accepted", tc.name)
		}
		if err != nil && !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("%s: err %v", tc.name, err)
		}
	}
	other := tokenSigner{key: []byte("another key another key another!")}
	if c, err := other.open(tok, purposeResetPassword, now); err != nil || other.valid(c, "stamp-1") {
		t.Fatal("token accepted under another key")
	}
	if _, err := (tokenSigner{}).issue(purposeConfirmEmail, id, now, ""); !errors.Is(err, ErrNotConfigured) {
		t.Fatalf("no key: %v", err)
	}
}
