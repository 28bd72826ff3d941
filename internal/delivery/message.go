package delivery

import (
	"net/mail"
	"strings"

	"github.com/google/uuid"
	gomail "github.com/wneessen/go-mail"
)

// Message is one invitation email as the SMTP channel submits it.
type Message struct {
	// ActivityID is the Dataverse email activity (email.activityid) this
	// message is the transmission of. The Message-ID derives from it, so
	// every try and every resend of the same activity carries the same
	// Message-ID and receivers can drop the copies SMTP may produce.
	ActivityID string
	To         string // recipient address
	ToName     string // recipient display name; optional
	Subject    string
	Text       string // text/plain body; at least one of Text and HTML
	HTML       string // text/html body
}

// MessageID is the Message-ID header value (with angle brackets) for the
// email activity activityID sent from fromDomain: "<activityid@domain>",
// lower case. Dataverse's email.messageid column (max 320 characters) can
// hold it, so replies correlate by In-Reply-To.
func MessageID(activityID, fromDomain string) (string, error) {
	id, err := uuid.Parse(strings.TrimSpace(activityID))
	if err != nil {
		return "", invalid(StageMessage, "activity id %q is not a GUID", cleanText(activityID))
	}
	return "<" + id.String() + "@" + strings.ToLower(fromDomain) + ">", nil
}

// render validates m and builds the MIME message (multipart/alternative
// when both bodies are present, quoted-printable UTF-8, no User-Agent), and
// returns it with the envelope recipient and the Message-ID.
func (m Message) render(from *mail.Address, fromDomain string) (msg *gomail.Msg, rcpt, id string, err error) {
	id, err = MessageID(m.ActivityID, fromDomain)
	if err != nil {
		return nil, "", "", err
	}
	to, err := mail.ParseAddress(m.To)
	if err != nil || to.Name != "" || !strings.Contains(to.Address, "@") {
		return nil, "", "", invalid(StageMessage, "recipient %q is not a bare email address", cleanText(m.To))
	}
	if strings.ContainsAny(m.Subject, "\r\n") || strings.ContainsAny(m.ToName, "\r\n") {
		return nil, "", "", invalid(StageMessage, "subject and recipient name must be one line")
	}
	if m.Text == "" && m.HTML == "" {
		return nil, "", "", invalid(StageMessage, "the message has no body")
	}

	msg = gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	msg.FromMailAddress(from)
	msg.AddToMailAddress(&mail.Address{Name: m.ToName, Address: to.Address})
	msg.Subject(m.Subject)
	msg.SetMessageIDWithValue(strings.Trim(id, "<>"))
	msg.SetDate()
	// RFC 3834: sent by a process, not typed by a person, so vacation
	// responders stay quiet. Exchange reads its own header for the same;
	// delivery reports (NDRs) are still wanted and not suppressed.
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetGenHeader(gomail.HeaderXAutoResponseSuppress, "OOF, AutoReply")
	switch {
	case m.Text != "" && m.HTML != "":
		msg.SetBodyString(gomail.TypeTextPlain, m.Text)
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	case m.Text != "":
		msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	default:
		msg.SetBodyString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, to.Address, id, nil
}
