package invite

import (
	"strings"
	"testing"
	"time"
)

func TestRenderInvitationEmail(t *testing.T) {
	tpl, err := parseEmail(kindInvitation, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	c := Code("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
	exp := time.Date(2025, 4, 2, 0, 0, 0, 0, time.UTC)
	d := EmailData{FirstName: `<script>alert(1)</script>`, PortalName: "Contoso & Co", BaseURL: "https://portal.example.com",
		Link: actionLink("https://portal.example.com/", InvitationPath, "code", string(c)), Code: string(c),
		GroupedCode: c.Grouped(), ExpiresAt: exp, Expires: formatExpiry(exp)}
	r, err := tpl.render(d)
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != "You're invited to Contoso & Co" {
		t.Errorf("subject %q", r.Subject)
	}
	if strings.Contains(r.HTML, "<script>") || !strings.Contains(r.HTML, "&lt;script&gt;") {
		t.Error("HTML body does not escape the contact's name")
	}
	for _, want := range []string{"https://portal.example.com/invitation?code=0123456789ABCDEFGHJKMNPQRSTVWXYZ", "0123-4567-89AB", "2 April 2025", "Contoso &amp; Co"} {
		if !strings.Contains(r.HTML, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	for _, want := range []string{d.Link, c.Grouped(), "2 April 2025", "Contoso & Co"} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("text lacks %q", want)
		}
	}
	// Custom per-portal subject and bodies; newlines in a subject collapse.
	tpl, err = parseEmail(kindInvitation, "Welcome\n{{.FirstName}}", "<p>{{.Link}}</p>", "{{.GroupedCode}}")
	if err != nil {
		t.Fatal(err)
	}
	r, err = tpl.render(EmailData{FirstName: "Ada", Link: "https://x/invitation?code=A", GroupedCode: "AAAA"})
	if err != nil || r.Subject != "Welcome Ada" || r.Text != "AAAA" || r.HTML != "<p>https://x/invitation?code=A</p>" {
		t.Fatalf("custom render %+v %v", r, err)
	}
	for _, kind := range []string{kindConfirmEmail, kindResetPassword} {
		if _, err := parseEmail(kind, "", "", ""); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}
	if _, err := parseEmail(kindInvitation, "{{.Nope}}", "", ""); err == nil {
		t.Error("a template naming an unknown field was accepted")
	}
	if _, err := parseEmail(kindInvitation, "", "{{if}}", ""); err == nil {
		t.Error("a broken template was accepted")
	}
}
