package delivery_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	smtpd "github.com/emersion/go-smtp"

	"github.com/d365portal/connector/internal/delivery"
)

const (
	testActivity = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
	testUser     = "invites@contoso.test"
	testPassword = "s3cret-Pa55word"
)

func testMessage() delivery.Message {
	return delivery.Message{
		ActivityID: testActivity,
		To:         "ada@example.test",
		ToName:     "Ada Lovelace",
		Subject:    "Your invitation to the Contoso portal",
		Text:       "Hello Ada,\n\nOpen https://portal.test/invitation?code=ABC to join.\n",
		HTML:       "<p>Hello Ada,</p><p><a href=\"https://portal.test/invitation?code=ABC\">Join</a></p>",
	}
}

func newSender(t testing.TB, host string, port int, o delivery.SMTPOptions) *delivery.SMTPSender {
	t.Helper()
	o.Host, o.Port = host, port
	if o.From == "" {
		o.From = "Contoso Portal <invites@contoso.test>"
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.CommandTimeout == 0 {
		o.CommandTimeout = 5 * time.Second
	}
	s, err := delivery.NewSMTPSender(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sendErr(t *testing.T, err error) *delivery.SendError {
	t.Helper()
	var se *delivery.SendError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want a *delivery.SendError", err, err)
	}
	if errors.Is(err, delivery.ErrTemporary) == errors.Is(err, delivery.ErrPermanent) {
		t.Fatalf("err %v matches both or neither of ErrTemporary and ErrPermanent", err)
	}
	return se
}

func wantMessageID(t testing.TB) string {
	t.Helper()
	id, err := delivery.MessageID(testActivity, "contoso.test")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestSendSecurityAndAuth submits through each security mode and AUTH
// mechanism and checks what the server saw.
func TestSendSecurityAndAuth(t *testing.T) {
	pki := newPKI(t)
	users := map[string]string{testUser: testPassword}
	cases := []struct {
		name     string
		server   serverConfig
		security delivery.Security
		user     string
		wantTLS  bool
	}{
		{"starttls plain", serverConfig{security: "starttls", users: users}, delivery.SecurityStartTLS, testUser, true},
		{"starttls login", serverConfig{security: "starttls", users: users, mechs: []string{"LOGIN"}}, delivery.SecurityStartTLS, testUser, true},
		{"implicit tls plain", serverConfig{security: "tls", users: users}, delivery.SecurityTLS, testUser, true},
		{"implicit tls login", serverConfig{security: "tls", users: users, mechs: []string{"LOGIN"}}, delivery.SecurityTLS, testUser, true},
		{"none on loopback with auth", serverConfig{security: "none", users: users}, delivery.SecurityNone, testUser, false},
		{"starttls without auth", serverConfig{security: "starttls"}, delivery.SecurityStartTLS, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, pki, tc.server)
			o := delivery.SMTPOptions{Security: tc.security, TLSConfig: pki.client}
			if tc.user != "" {
				o.Username, o.Password = tc.user, testPassword
			}
			rec, err := newSender(t, srv.host, srv.port, o).Send(context.Background(), testMessage())
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if rec.MessageID != wantMessageID(t) {
				t.Errorf("receipt Message-ID = %q, want %q", rec.MessageID, wantMessageID(t))
			}
			if !strings.Contains(rec.Response, "queued") {
				t.Errorf("receipt response = %q, want the server's 250 text", rec.Response)
			}
			got := srv.messages()
			if len(got) != 1 {
				t.Fatalf("server got %d messages, want 1", len(got))
			}
			m := got[0]
			if m.TLS != tc.wantTLS || m.User != tc.user {
				t.Errorf("session TLS=%v user=%q, want TLS=%v user=%q", m.TLS, m.User, tc.wantTLS, tc.user)
			}
			if m.From != "invites@contoso.test" || m.To != "ada@example.test" {
				t.Errorf("envelope %q → %q", m.From, m.To)
			}
		})
	}
}

// TestMessageReceivedIntact parses what the server stored: headers, the
// Message-ID, and both bodies byte for byte after MIME decoding.
func TestMessageReceivedIntact(t *testing.T) {
	pki := newPKI(t)
	srv := startServer(t, pki, serverConfig{security: "starttls"})
	msg := testMessage()
	msg.ToName = "Zoë Ångström"
	msg.Subject = "Invitation — portail Contoso ✓"
	// A line that starts with a dot (SMTP dot-stuffing), a line longer than
	// quoted-printable's 76 characters, trailing spaces and non-ASCII text.
	msg.Text = "Bonjour Zoë,\n.hidden? no: dot-stuffed\n" + strings.Repeat("long-line-", 20) + "\nend with spaces   \n"
	msg.HTML = "<p>Bonjour Zoë,</p>\n.<p>" + strings.Repeat("x=y ", 40) + "</p>\n"
	if _, err := newSender(t, srv.host, srv.port, delivery.SMTPOptions{TLSConfig: pki.client}).Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	got := srv.messages()
	if len(got) != 1 {
		t.Fatalf("server got %d messages", len(got))
	}
	parsed, err := mail.ReadMessage(bytes.NewReader(got[0].Data))
	if err != nil {
		t.Fatalf("net/mail cannot parse the message: %v\n%s", err, got[0].Data)
	}
	h := parsed.Header
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(h.Get("Subject"))
	if err != nil || subject != msg.Subject {
		t.Errorf("Subject = %q (%v), want %q", subject, err, msg.Subject)
	}
	to, err := h.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Name != msg.ToName || to[0].Address != msg.To {
		t.Errorf("To = %v (%v)", to, err)
	}
	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Contoso Portal" || from[0].Address != "invites@contoso.test" {
		t.Errorf("From = %v (%v)", from, err)
	}
	if got := h.Get("Message-ID"); got != wantMessageID(t) {
		t.Errorf("Message-ID = %q, want %q", got, wantMessageID(t))
	}
	if got := h.Get("Auto-Submitted"); got != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", got)
	}
	if _, err := h.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if ua := h.Get("User-Agent") + h.Get("X-Mailer"); ua != "" {
		t.Errorf("the message names its mailer: %q", ua)
	}
	mediaType, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (%v)", h.Get("Content-Type"), err)
	}
	bodies := map[string]string{}
	mr := multipart.NewReader(parsed.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, cp, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if !strings.EqualFold(cp["charset"], "utf-8") {
			t.Errorf("%s charset = %q", ct, cp["charset"])
		}
		b, err := io.ReadAll(p) // multipart decodes quoted-printable
		if err != nil {
			t.Fatal(err)
		}
		bodies[ct] = strings.ReplaceAll(string(b), "\r\n", "\n")
	}
	if bodies["text/plain"] != msg.Text {
		t.Errorf("text/plain body:\n got %q\nwant %q", bodies["text/plain"], msg.Text)
	}
	if bodies["text/html"] != msg.HTML {
		t.Errorf("text/html body:\n got %q\nwant %q", bodies["text/html"], msg.HTML)
	}
}

func TestWrongPasswordIsPermanent(t *testing.T) {
	pki := newPKI(t)
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			srv := startServer(t, pki, serverConfig{security: "starttls", users: map[string]string{testUser: "the-right-one"}, mechs: []string{mech}})
			s := newSender(t, srv.host, srv.port, delivery.SMTPOptions{TLSConfig: pki.client, Username: testUser, Password: testPassword})
			_, err := s.Send(context.Background(), testMessage())
			se := sendErr(t, err)
			if se.Temporary() || se.Stage != delivery.StageAuth || se.Code != 535 || se.EnhancedCode != "5.7.8" || !strings.Contains(se.Text, "Authentication failed") {
				t.Errorf("got %+v (%v), want a permanent 535 5.7.8 at auth with the server's text", se, err)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error text holds the password: %v", err)
			}
			if n := len(srv.messages()); n != 0 {
				t.Errorf("server got %d messages", n)
			}
		})
	}
}

// TestEchoedCredentialsRedacted: a server that quotes the AUTH line back
// does not get the password into the error.
func TestEchoedCredentialsRedacted(t *testing.T) {
	host, port := scriptedServer(t, smtpScript("220 mx.test ESMTP", map[string]string{
		"EHLO": "250-mx.test\r\n250 AUTH PLAIN",
		"AUTH": "535 5.7.8 rejected: AUTH {args} / " + testPassword,
	}))
	s := newSender(t, host, port, delivery.SMTPOptions{Security: delivery.SecurityNone, Username: testUser, Password: testPassword})
	_, err := s.Send(context.Background(), testMessage())
	se := sendErr(t, err)
	if se.Code != 535 || se.Stage != delivery.StageAuth || !strings.Contains(err.Error(), "AUTH PLAIN [redacted] / [redacted]") {
		t.Errorf("got %v", err)
	}
	for e := error(se); e != nil; e = errors.Unwrap(e) {
		if strings.Contains(e.Error(), testPassword) || strings.Contains(e.Error(), "AGludml0ZXNAY29udG9zby50ZXN0") {
			t.Errorf("%T holds the credentials: %q", e, e.Error())
		}
	}
}

// TestServerReplies covers 4xx and 5xx at each step of the transaction.
func TestServerReplies(t *testing.T) {
	pki := newPKI(t)
	reply := func(code int, enh smtpd.EnhancedCode, text string) error {
		return &smtpd.SMTPError{Code: code, EnhancedCode: enh, Message: text}
	}
	cases := []struct {
		name      string
		cfg       serverConfig
		stage     delivery.Stage
		code      int
		enhanced  string
		text      string
		temporary bool
	}{
		{"4xx at MAIL", serverConfig{onMail: func(*smtpd.Conn, string) error {
			return reply(451, smtpd.EnhancedCode{4, 3, 0}, "sender throttled, try later")
		}}, delivery.StageMail, 451, "4.3.0", "sender throttled", true},
		{"4xx at RCPT", serverConfig{onRcpt: func(*smtpd.Conn, string) error {
			return reply(450, smtpd.EnhancedCode{4, 2, 1}, "greylisted")
		}}, delivery.StageRcpt, 450, "4.2.1", "greylisted", true},
		{"4xx after DATA", serverConfig{onData: func(*smtpd.Conn, []byte) error {
			return reply(451, smtpd.EnhancedCode{4, 7, 500}, "server busy")
		}}, delivery.StageDataEnd, 451, "4.7.500", "server busy", true},
		{"5xx at MAIL", serverConfig{onMail: func(*smtpd.Conn, string) error {
			return reply(550, smtpd.EnhancedCode{5, 7, 60}, "SMTP; Client does not have permissions to send as this sender")
		}}, delivery.StageMail, 550, "5.7.60", "permissions to send as this sender", false},
		{"5xx at RCPT", serverConfig{onRcpt: func(*smtpd.Conn, string) error {
			return reply(550, smtpd.EnhancedCode{5, 1, 1}, "ada@example.test: mailbox unavailable")
		}}, delivery.StageRcpt, 550, "5.1.1", "mailbox unavailable", false},
		{"5xx after DATA", serverConfig{onData: func(*smtpd.Conn, []byte) error {
			return reply(554, smtpd.EnhancedCode{5, 7, 1}, "message rejected as spam")
		}}, delivery.StageDataEnd, 554, "5.7.1", "message rejected as spam", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.security = "starttls"
			srv := startServer(t, pki, tc.cfg)
			_, err := newSender(t, srv.host, srv.port, delivery.SMTPOptions{TLSConfig: pki.client}).Send(context.Background(), testMessage())
			se := sendErr(t, err)
			if se.Stage != tc.stage || se.Code != tc.code || se.EnhancedCode != tc.enhanced || se.Temporary() != tc.temporary || se.MaybeDelivered {
				t.Errorf("got stage=%s code=%d enhanced=%q temporary=%v maybe=%v, want %s %d %q %v false (%v)",
					se.Stage, se.Code, se.EnhancedCode, se.Temporary(), se.MaybeDelivered, tc.stage, tc.code, tc.enhanced, tc.temporary, err)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q lacks the server's text %q", err, tc.text)
			}
			if n := len(srv.messages()); n != 0 {
				t.Errorf("server delivered %d messages", n)
			}
		})
	}
}

// TestDataCommandRefused: go-smtp always answers DATA with 354, so a raw
// server refuses the DATA command itself.
func TestDataCommandRefused(t *testing.T) {
	for _, tc := range []struct {
		reply     string
		temporary bool
	}{
		{"452 4.3.1 insufficient system storage", true},
		{"554 5.5.0 no valid recipients", false},
	} {
		host, port := scriptedServer(t, smtpScript("220 mx.test ESMTP", map[string]string{"DATA": tc.reply}))
		_, err := newSender(t, host, port, delivery.SMTPOptions{Security: delivery.SecurityNone}).Send(context.Background(), testMessage())
		se := sendErr(t, err)
		if se.Stage != delivery.StageData || se.Temporary() != tc.temporary || !strings.Contains(err.Error(), tc.reply[4:]) {
			t.Errorf("reply %q: got %v (stage %s, temporary %v)", tc.reply, err, se.Stage, se.Temporary())
		}
	}
}

// TestDroppedConnections: a connection cut mid-transaction is temporary; cut
// after the final dot it is temporary and flagged as possibly delivered.
func TestDroppedConnections(t *testing.T) {
	pki := newPKI(t)
	cases := []struct {
		name          string
		cfg           serverConfig
		stage         delivery.Stage
		maybe         bool
		serverStored  int
		checkMaybeBit bool
	}{
		{"at MAIL", serverConfig{onMail: func(c *smtpd.Conn, _ string) error { return drop(c) }}, delivery.StageMail, false, 0, true},
		{"at RCPT", serverConfig{onRcpt: func(c *smtpd.Conn, _ string) error { return drop(c) }}, delivery.StageRcpt, false, 0, true},
		// Cut while the client may still be writing: whether the client sees
		// it during the body or after the dot depends on socket buffers.
		{"during DATA", serverConfig{dropDataAfter: 200}, "", false, 0, false},
		{"after the final dot", serverConfig{onData: func(c *smtpd.Conn, _ []byte) error { return drop(c) }}, delivery.StageDataEnd, true, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.security = "none"
			srv := startServer(t, pki, tc.cfg)
			_, err := newSender(t, srv.host, srv.port, delivery.SMTPOptions{Security: delivery.SecurityNone}).Send(context.Background(), testMessage())
			se := sendErr(t, err)
			if !se.Temporary() || se.Code != 0 {
				t.Errorf("got %v, want temporary with no reply code", err)
			}
			if tc.stage != "" && se.Stage != tc.stage {
				t.Errorf("stage = %s, want %s", se.Stage, tc.stage)
			}
			if tc.stage == "" && se.Stage != delivery.StageData && se.Stage != delivery.StageDataEnd {
				t.Errorf("stage = %s, want data or data-end", se.Stage)
			}
			if tc.checkMaybeBit && se.MaybeDelivered != tc.maybe {
				t.Errorf("MaybeDelivered = %v, want %v (%v)", se.MaybeDelivered, tc.maybe, err)
			}
			if len(srv.messages()) != tc.serverStored {
				t.Errorf("server stored %d messages, want %d", len(srv.messages()), tc.serverStored)
			}
		})
	}
}

// TestBrokenServers: servers that close at once, answer garbage, say
// nothing, or are not there. All temporary, each with a readable reason.
func TestBrokenServers(t *testing.T) {
	refusing := closedPort(t)
	type target struct {
		host string
		port int
	}
	cases := []struct {
		name   string
		server func(t *testing.T) target
		stage  delivery.Stage
		reason string
	}{
		{"closes at once", func(t *testing.T) target {
			h, p := scriptedServer(t, func(net.Conn) {})
			return target{h, p}
		}, delivery.StageGreeting, "the server closed the connection"},
		{"answers HTTP", func(t *testing.T) target {
			h, p := scriptedServer(t, func(c net.Conn) { io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n") })
			return target{h, p}
		}, delivery.StageGreeting, "HTTP/1.1 400 Bad Request"},
		{"garbage after MAIL", func(t *testing.T) target {
			h, p := scriptedServer(t, smtpScript("220 mx.test ESMTP", map[string]string{"MAIL": "\x00\x01 what?"}))
			return target{h, p}
		}, delivery.StageMail, "not SMTP"},
		{"a code nobody expects", func(t *testing.T) target {
			h, p := scriptedServer(t, smtpScript("220 mx.test ESMTP", map[string]string{"RCPT": "999 ok?"}))
			return target{h, p}
		}, delivery.StageRcpt, "ok?"},
		{"says nothing", func(t *testing.T) target {
			h, p := scriptedServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
			return target{h, p}
		}, delivery.StageGreeting, "no reply from the server in time"},
		{"refuses connections", func(t *testing.T) target { return target{"127.0.0.1", refusing} }, delivery.StageConnect, "refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := tc.server(t)
			s := newSender(t, tg.host, tg.port, delivery.SMTPOptions{Security: delivery.SecurityNone, ConnectTimeout: 300 * time.Millisecond})
			_, err := s.Send(context.Background(), testMessage())
			se := sendErr(t, err)
			if !se.Temporary() || se.Stage != tc.stage || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("got %q (stage %s, temporary %v), want temporary at %s mentioning %q", err, se.Stage, se.Temporary(), tc.stage, tc.reason)
			}
			if strings.ContainsAny(err.Error(), "\x00\x01\r\n") {
				t.Errorf("error text carries control characters: %q", err)
			}
		})
	}
}

func TestTLSFailuresArePermanent(t *testing.T) {
	pki := newPKI(t)
	t.Run("untrusted certificate", func(t *testing.T) {
		srv := startServer(t, pki, serverConfig{security: "starttls"})
		// An empty pool: the system roots (SSL_CERT_FILE) are not consulted.
		s := newSender(t, srv.host, srv.port, delivery.SMTPOptions{TLSConfig: &tls.Config{RootCAs: x509.NewCertPool()}})
		_, err := s.Send(context.Background(), testMessage())
		se := sendErr(t, err)
		if se.Temporary() || se.Stage != delivery.StageStartTLS || !strings.Contains(err.Error(), "not trusted") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("wrong name", func(t *testing.T) {
		srv := startServer(t, pki, serverConfig{security: "tls"})
		s := newSender(t, srv.host, srv.port, delivery.SMTPOptions{Security: delivery.SecurityTLS, TLSConfig: &tls.Config{RootCAs: pki.client.RootCAs, ServerName: "smtp.elsewhere.test"}})
		_, err := s.Send(context.Background(), testMessage())
		se := sendErr(t, err)
		if se.Temporary() || se.Stage != delivery.StageTLS || !strings.Contains(err.Error(), "not trusted") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("STARTTLS not offered", func(t *testing.T) {
		srv := startServer(t, pki, serverConfig{security: "none", users: map[string]string{testUser: testPassword}})
		s := newSender(t, srv.host, srv.port, delivery.SMTPOptions{TLSConfig: pki.client, Username: testUser, Password: testPassword})
		_, err := s.Send(context.Background(), testMessage())
		se := sendErr(t, err)
		if se.Temporary() || se.Stage != delivery.StageStartTLS || len(srv.messages()) != 0 {
			t.Errorf("got %v", err)
		}
	})
	t.Run("tls against a plain port", func(t *testing.T) {
		host, port := scriptedServer(t, smtpScript("220 mx.test ESMTP", nil))
		s := newSender(t, host, port, delivery.SMTPOptions{Security: delivery.SecurityTLS, TLSConfig: pki.client})
		_, err := s.Send(context.Background(), testMessage())
		se := sendErr(t, err)
		if se.Temporary() || se.Stage != delivery.StageTLS || !strings.Contains(err.Error(), "did not answer TLS") {
			t.Errorf("got %v", err)
		}
	})
}

func TestSecurityNoneOnlyForLoopback(t *testing.T) {
	for _, host := range []string{"smtp.contoso.test", "10.0.0.5", "192.168.1.10", "::ffff:10.0.0.1", "localhost.contoso.test"} {
		_, err := delivery.NewSMTPSender(delivery.SMTPOptions{Host: host, Security: delivery.SecurityNone, From: "invites@contoso.test"})
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("host %q: err = %v, want a refusal that names loopback", host, err)
		}
	}
	for _, host := range []string{"localhost", "127.0.0.1", "127.0.0.2", "::1", "[::1]"} {
		if _, err := delivery.NewSMTPSender(delivery.SMTPOptions{Host: host, Security: delivery.SecurityNone, From: "invites@contoso.test"}); err != nil {
			t.Errorf("host %q: %v", host, err)
		}
	}
}

func TestNewSMTPSenderRefusesBadOptions(t *testing.T) {
	ok := delivery.SMTPOptions{Host: "smtp.contoso.test", From: "invites@contoso.test"}
	cases := map[string]func(o *delivery.SMTPOptions){
		"no host":              func(o *delivery.SMTPOptions) { o.Host = " " },
		"unknown security":     func(o *delivery.SMTPOptions) { o.Security = "ssl" },
		"port out of range":    func(o *delivery.SMTPOptions) { o.Port = 70000 },
		"from not an address":  func(o *delivery.SMTPOptions) { o.From = "Contoso" },
		"password, no user":    func(o *delivery.SMTPOptions) { o.Password = testPassword },
		"HELO name with space": func(o *delivery.SMTPOptions) { o.HELOName = "my host" },
	}
	for name, mutate := range cases {
		o := ok
		mutate(&o)
		_, err := delivery.NewSMTPSender(o)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), testPassword) {
			t.Errorf("%s: error holds the password: %v", name, err)
		}
	}
	if _, err := delivery.NewSMTPSender(ok); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}

// TestInvalidMessages never reach the server.
func TestInvalidMessages(t *testing.T) {
	pki := newPKI(t)
	srv := startServer(t, pki, serverConfig{security: "none"})
	s := newSender(t, srv.host, srv.port, delivery.SMTPOptions{Security: delivery.SecurityNone})
	cases := map[string]func(m *delivery.Message){
		"activity id not a GUID": func(m *delivery.Message) { m.ActivityID = "42" },
		"no activity id":         func(m *delivery.Message) { m.ActivityID = "" },
		"recipient not an email": func(m *delivery.Message) { m.To = "ada" },
		"recipient with a name":  func(m *delivery.Message) { m.To = "Ada <ada@example.test>" },
		"header injection":       func(m *delivery.Message) { m.Subject = "Hi\r\nBcc: eve@example.test" },
		"name injection":         func(m *delivery.Message) { m.ToName = "Ada\nBcc: eve@example.test" },
		"no body":                func(m *delivery.Message) { m.Text, m.HTML = "", "" },
	}
	for name, mutate := range cases {
		m := testMessage()
		mutate(&m)
		_, err := s.Send(context.Background(), m)
		se := sendErr(t, err)
		if se.Temporary() || se.Stage != delivery.StageMessage {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if n := srv.accepted.Load(); n != 0 {
		t.Errorf("server saw %d connections for invalid messages", n)
	}
}

func TestSingleBodies(t *testing.T) {
	pki := newPKI(t)
	srv := startServer(t, pki, serverConfig{security: "none"})
	s := newSender(t, srv.host, srv.port, delivery.SMTPOptions{Security: delivery.SecurityNone})
	for _, tc := range []struct{ text, html, wantType string }{
		{"only text\n", "", "text/plain"},
		{"", "<p>only html</p>", "text/html"},
	} {
		m := testMessage()
		m.Text, m.HTML = tc.text, tc.html
		if _, err := s.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		got := srv.messages()
		parsed, err := mail.ReadMessage(bytes.NewReader(got[len(got)-1].Data))
		if err != nil {
			t.Fatal(err)
		}
		mt, _, _ := mime.ParseMediaType(parsed.Header.Get("Content-Type"))
		body, _ := io.ReadAll(parsed.Body)
		if mt != tc.wantType || !strings.Contains(string(body), "only") {
			t.Errorf("Content-Type %q body %q, want %s", mt, body, tc.wantType)
		}
	}
}

// TestCancelInterruptsSend: a server stuck after the dot does not hold the
// caller past its context.
func TestCancelInterruptsSend(t *testing.T) {
	pki := newPKI(t)
	for _, security := range []delivery.Security{delivery.SecurityNone, delivery.SecurityTLS, delivery.SecurityStartTLS} {
		t.Run(string(security), func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			entered := make(chan struct{}, 1)
			srv := startServer(t, pki, serverConfig{security: string(security), onData: func(*smtpd.Conn, []byte) error {
				entered <- struct{}{}
				<-release
				return nil
			}})
			s := newSender(t, srv.host, srv.port, delivery.SMTPOptions{Security: security, TLSConfig: pki.client, CommandTimeout: time.Hour})
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-entered
				cancel()
			}()
			_, err := s.Send(ctx, testMessage())
			se := sendErr(t, err)
			if !errors.Is(err, context.Canceled) || !se.Temporary() || se.Stage != delivery.StageDataEnd {
				t.Errorf("got %v, want a temporary error wrapping context.Canceled at data-end", err)
			}
		})
	}
}

func TestMessageID(t *testing.T) {
	a, err := delivery.MessageID("{6F9619FF-8B86-D011-B42D-00C04FC964FF}", "Contoso.TEST")
	if err != nil {
		t.Fatal(err)
	}
	b, err := delivery.MessageID("6f9619ff-8b86-d011-b42d-00c04fc964ff", "contoso.test")
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a != "<6f9619ff-8b86-d011-b42d-00c04fc964ff@contoso.test>" {
		t.Errorf("MessageID = %q and %q, want one canonical form", a, b)
	}
	if _, err := delivery.MessageID("not-a-guid", "contoso.test"); err == nil {
		t.Error("a non-GUID activity id was accepted")
	}
}
