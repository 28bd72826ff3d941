package delivery

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"regexp"
	"strings"
	"unicode"

	gosmtp "github.com/wneessen/go-mail/smtp"
)

// Sentinels for the two failure classes. Every error Send returns matches
// exactly one of them with errors.Is, so callers branch on behaviour, never
// on text.
var (
	// ErrTemporary: the message was not accepted but may be on a later try
	// (a 4xx reply, a dropped or refused connection, a timeout, a reply that
	// is not SMTP). Retry with backoff.
	ErrTemporary = errors.New("temporary delivery failure")
	// ErrPermanent: retrying the same message will fail the same way (a 5xx
	// reply, rejected credentials, an untrusted certificate, an invalid
	// message or configuration).
	ErrPermanent = errors.New("permanent delivery failure")
)

// Stage names the step of the SMTP session at which a send failed.
type Stage string

// The stages of one submission, in order.
const (
	StageMessage  Stage = "message"  // building the message, before any connection
	StageConnect  Stage = "connect"  // TCP connect
	StageTLS      Stage = "tls"      // implicit TLS handshake (security: tls)
	StageGreeting Stage = "greeting" // the server's 220 banner
	StageHello    Stage = "ehlo"     // EHLO (HELO fallback)
	StageStartTLS Stage = "starttls" // STARTTLS and its handshake
	StageAuth     Stage = "auth"     // AUTH
	StageMail     Stage = "mail"     // MAIL FROM
	StageRcpt     Stage = "rcpt"     // RCPT TO
	StageData     Stage = "data"     // the DATA command and writing the message
	StageDataEnd  Stage = "data-end" // the reply to the message's final dot
)

// SendError is a failed submission: where it failed, the server's reply when
// there was one, and whether a retry may succeed. Its text never holds the
// password or the message body. Only this package makes temporary ones; a
// SendError built elsewhere is permanent.
type SendError struct {
	Stage        Stage
	Code         int    // the server's reply code; 0 when no reply was read
	EnhancedCode string // e.g. "5.1.1", when the server sent one
	Text         string // the server's reply text, or what went wrong on the wire
	// MaybeDelivered is set when the connection failed after the whole
	// message was sent but before the server's reply: the server may have
	// queued it, so a retry can deliver a second copy (same Message-ID).
	MaybeDelivered bool
	Err            error // the underlying error, for errors.As (nil for an invalid message)
	temporary      bool
}

// Error reads like "smtp rcpt: 550 5.1.1 mailbox unavailable (permanent)".
func (e *SendError) Error() string {
	var b strings.Builder
	b.WriteString("smtp ")
	b.WriteString(string(e.Stage))
	b.WriteString(": ")
	if e.Code != 0 {
		fmt.Fprintf(&b, "%d ", e.Code)
		if e.EnhancedCode != "" && !strings.HasPrefix(e.Text, e.EnhancedCode) {
			b.WriteString(e.EnhancedCode)
			b.WriteByte(' ')
		}
	}
	b.WriteString(e.Text)
	if e.MaybeDelivered {
		b.WriteString(" (temporary; the server may have accepted the message)")
	} else if e.temporary {
		b.WriteString(" (temporary)")
	} else {
		b.WriteString(" (permanent)")
	}
	return b.String()
}

// Temporary reports whether a later try may succeed.
func (e *SendError) Temporary() bool { return e.temporary }

// Is matches ErrTemporary or ErrPermanent by class.
func (e *SendError) Is(target error) bool {
	switch target {
	case ErrTemporary:
		return e.temporary
	case ErrPermanent:
		return !e.temporary
	}
	return false
}

// Unwrap returns the underlying error.
func (e *SendError) Unwrap() error { return e.Err }

// IsTemporary reports whether err is a delivery failure worth retrying.
func IsTemporary(err error) bool { return errors.Is(err, ErrTemporary) }

// enhancedRe finds an RFC 3463 enhanced status code at the start of a reply.
var enhancedRe = regexp.MustCompile(`^([245]\.\d{1,3}\.\d{1,3})\b`)

// maxReplyText bounds the server text kept in errors and logs: a hostile or
// broken server must not flood them.
const maxReplyText = 300

// classify turns what went wrong at stage into a SendError. ctxErr is the
// send's context error, if the context ended.
func classify(stage Stage, err error, ctxErr error) *SendError {
	e := &SendError{Stage: stage, Err: err}
	var tpErr *textproto.Error
	var protoErr textproto.ProtocolError
	switch {
	case ctxErr != nil:
		// The connection was closed because the caller gave up; the
		// message is still unsent (or its fate unknown) and may be retried
		// by a caller with a fresh context.
		e.Err = ctxErr
		e.Text = ctxErr.Error()
		e.temporary = true
	case errors.As(err, &tpErr):
		e.Code = tpErr.Code
		e.Text = cleanText(tpErr.Msg)
		if m := enhancedRe.FindStringSubmatch(e.Text); m != nil {
			e.EnhancedCode = m[1]
		}
		// RFC 5321 §4.2.1: 4yz is transient, 5yz permanent. Any other code
		// where a different one was expected means the server is confused,
		// which a new session may not be.
		e.temporary = e.Code/100 != 5
	case errors.As(err, &protoErr):
		e.Text = "the server's reply is not SMTP: " + cleanText(string(protoErr))
		e.temporary = true
	case isCertificateError(err):
		e.Text = "the server's certificate is not trusted: " + cleanText(err.Error())
	case isTLSRecordError(err):
		e.Text = "the server did not answer TLS (is security right for this port?): " + cleanText(err.Error())
	case errors.Is(err, gosmtp.ErrUnencrypted), errors.Is(err, gosmtp.ErrWrongHostname):
		e.Text = "refusing to send credentials: " + err.Error()
	default:
		// Dropped or refused connections, timeouts, resets, EOF.
		e.Text = describeNetError(err)
		e.temporary = true
	}
	return e
}

func isCertificateError(err error) bool {
	var verr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var cerr x509.CertificateInvalidError
	return errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cerr)
}

func isTLSRecordError(err error) bool {
	var rerr tls.RecordHeaderError
	return errors.As(err, &rerr)
}

// describeNetError says what happened on the wire in words an administrator
// reads without a packet capture.
func describeNetError(err error) string {
	var te interface{ Timeout() bool }
	switch {
	case errors.As(err, &te) && te.Timeout():
		return "no reply from the server in time: " + cleanText(err.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the server closed the connection"
	}
	return cleanText(err.Error())
}

// cleanText keeps server text printable and short, so a reply cannot forge
// log lines or fill them.
func cleanText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxReplyText {
		cut := maxReplyText
		for cut > 0 && !utf8RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// invalid is a permanent error for a message or option that can never be sent.
func invalid(stage Stage, format string, args ...any) *SendError {
	return &SendError{Stage: stage, Text: fmt.Sprintf(format, args...)}
}
