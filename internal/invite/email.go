package invite

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"net/url"
	"strings"
	texttemplate "text/template"
	"time"
)

// Paths on the redemption site that emails link to (relative to
// Portal.BaseURL); the site serves these routes.
const (
	InvitationPath    = "/invitation"     // ?code=<code>
	ConfirmEmailPath  = "/confirm-email"  // ?token=<token>
	ResetPasswordPath = "/reset-password" // ?token=<token>
)

// EmailSettings configure a portal's invitation email.
type EmailSettings struct {
	// Sender is who the email is from: "systemuser:<guid>", "queue:<guid>",
	// or "initiating_user" (the CRM user who asked for the invitation,
	// falling back to the owner when there is none). Empty means the
	// Dataverse default (the caller).
	Sender string
	// Subject is a text/template over EmailData. Default
	// "You're invited to {{.PortalName}}".
	Subject string
	// HTMLTemplate and TextTemplate are template sources (html/template and
	// text/template over EmailData), not file names. Empty means the
	// embedded defaults.
	HTMLTemplate, TextTemplate string
	// Channel is ChannelDataverse (default: SendEmail with IssueSend=true,
	// server-side sync sends it) or ChannelSMTP (the email activity is
	// created as a draft; the SMTP channel submits it and records it sent).
	Channel string
}

// Email channels (EmailSettings.Channel).
const (
	ChannelDataverse = "dataverse"
	ChannelSMTP      = "smtp"
)

// EmailData is what email templates see.
type EmailData struct {
	FirstName, LastName, FullName string // the contact
	Email                         string
	PortalName                    string
	BaseURL                       string // the portal's redemption site, no trailing slash
	Link                          string // the action link (invitation, confirmation or reset)
	Code                          string // invitation code, canonical form (invitation emails only)
	GroupedCode                   string // the same in groups of four for manual entry
	ExpiresAt                     time.Time
	Expires                       string // ExpiresAt formatted for people ("2 January 2006"), "" when it never expires
	Roles                         []string
}

// RenderedEmail is a subject with HTML and plain-text bodies.
type RenderedEmail struct {
	Subject, HTML, Text string
}

//go:embed templates/*.html templates/*.txt
var defaultTemplates embed.FS

// emailTemplates is one parsed email kind (subject, HTML, text).
type emailTemplates struct {
	subject *texttemplate.Template
	html    *htmltemplate.Template
	text    *texttemplate.Template
}

const (
	kindInvitation    = "invitation"
	kindConfirmEmail  = "confirm_email"
	kindResetPassword = "reset_password"
)

var defaultSubjects = map[string]string{
	kindInvitation:    "You're invited to {{.PortalName}}",
	kindConfirmEmail:  "Confirm your email address for {{.PortalName}}",
	kindResetPassword: "Reset your {{.PortalName}} password",
}

// parseEmail parses one email kind; empty sources fall back to the embedded
// defaults. Errors name the kind so a bad config template fails at startup.
func parseEmail(kind, subject, html, text string) (*emailTemplates, error) {
	if subject == "" {
		subject = defaultSubjects[kind]
	}
	if html == "" {
		b, err := defaultTemplates.ReadFile("templates/" + kind + ".html")
		if err != nil {
			return nil, fmt.Errorf("email %s: %w", kind, err)
		}
		html = string(b)
	}
	if text == "" {
		b, err := defaultTemplates.ReadFile("templates/" + kind + ".txt")
		if err != nil {
			return nil, fmt.Errorf("email %s: %w", kind, err)
		}
		text = string(b)
	}
	var t emailTemplates
	var err error
	if t.subject, err = texttemplate.New("subject").Option("missingkey=error").Parse(subject); err != nil {
		return nil, fmt.Errorf("email %s: subject: %w", kind, err)
	}
	if t.html, err = htmltemplate.New("html").Option("missingkey=error").Parse(html); err != nil {
		return nil, fmt.Errorf("email %s: html template: %w", kind, err)
	}
	if t.text, err = texttemplate.New("text").Option("missingkey=error").Parse(text); err != nil {
		return nil, fmt.Errorf("email %s: text template: %w", kind, err)
	}
	// Execute once with sample data so field typos fail at startup, not on
	// the first invitation.
	if _, err := t.render(sampleEmailData()); err != nil {
		return nil, fmt.Errorf("email %s: %w", kind, err)
	}
	return &t, nil
}

func sampleEmailData() EmailData {
	return EmailData{FirstName: "Ada", LastName: "Lovelace", FullName: "Ada Lovelace", Email: "ada@example.com",
		PortalName: "Portal", BaseURL: "https://portal.example.com", Link: "https://portal.example.com/invitation?code=X",
		Code: "X", GroupedCode: "X", ExpiresAt: time.Unix(0, 0), Expires: "1 January 1970"}
}

func (t *emailTemplates) render(d EmailData) (RenderedEmail, error) {
	var subj, html, text bytes.Buffer
	if err := t.subject.Execute(&subj, d); err != nil {
		return RenderedEmail{}, fmt.Errorf("render subject: %w", err)
	}
	if err := t.html.Execute(&html, d); err != nil {
		return RenderedEmail{}, fmt.Errorf("render html: %w", err)
	}
	if err := t.text.Execute(&text, d); err != nil {
		return RenderedEmail{}, fmt.Errorf("render text: %w", err)
	}
	// A subject is one line; a template newline must not become a header break.
	s := strings.Join(strings.Fields(subj.String()), " ")
	return RenderedEmail{Subject: s, HTML: html.String(), Text: text.String()}, nil
}

// actionLink joins the portal base URL, a path and one query parameter.
func actionLink(baseURL, path, key, value string) string {
	return strings.TrimRight(baseURL, "/") + path + "?" + url.Values{key: {value}}.Encode()
}

// formatExpiry renders an expiry for people; emails show dates in UTC
// because the recipient's time zone is unknown.
func formatExpiry(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2 January 2006 15:04 MST")
}
