package delivery

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	gosmtp "github.com/wneessen/go-mail/smtp"
)

// Security is how the connection to the submission server is protected.
type Security string

// The values of the smtp.security setting.
const (
	SecurityStartTLS Security = "starttls" // plain connect, then STARTTLS, required (port 587)
	SecurityTLS      Security = "tls"      // TLS from the first byte (port 465)
	SecurityNone     Security = "none"     // no TLS at all; loopback hosts only (a local relay)
)

// SMTPOptions configure an SMTPSender. Host and From are required; every
// other zero value means the default stated beside it.
type SMTPOptions struct {
	Host     string
	Port     int      // default 587 for starttls, 465 for tls, 25 for none
	Security Security // default starttls
	Username string   // empty: no AUTH
	Password string
	From     string // "Name <address>" or a bare address; its domain names Message-IDs

	// TLSConfig verifies the server; nil means the system roots (which
	// honour SSL_CERT_FILE). It is cloned; an empty ServerName becomes Host
	// and MinVersion is at least TLS 1.2.
	TLSConfig *tls.Config
	// HELOName is the name sent in EHLO; default "localhost". Some relays
	// want the sending host's real name.
	HELOName string
	// ConnectTimeout bounds the TCP connect, the TLS handshake and the
	// server's greeting; default 15s.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each later command's reply, including the one
	// after the message; default 60s.
	CommandTimeout time.Duration
	// Logger gets one debug line per submission; nil discards.
	Logger *slog.Logger
}

// SMTPSender submits messages to one SMTP submission server, one
// connection per message. It is safe for concurrent use.
type SMTPSender struct {
	addr       string
	host       string
	security   Security
	username   string
	password   string
	from       *mail.Address
	fromDomain string
	tls        *tls.Config
	helo       string
	connectTO  time.Duration
	commandTO  time.Duration
	log        *slog.Logger
	dialer     net.Dialer
}

// Receipt is an accepted submission.
type Receipt struct {
	MessageID string // the Message-ID header sent, with angle brackets
	Response  string // the server's reply to the message, e.g. "2.0.0 OK: queued as 4F2A"
}

// NewSMTPSender checks opts and returns a sender. It does not connect.
func NewSMTPSender(opts SMTPOptions) (*SMTPSender, error) {
	host := strings.TrimSpace(opts.Host)
	if host == "" {
		return nil, errors.New("delivery.NewSMTPSender: host is empty")
	}
	security := opts.Security
	if security == "" {
		security = SecurityStartTLS
	}
	port := opts.Port
	switch security {
	case SecurityStartTLS:
		port = cmp.Or(port, 587)
	case SecurityTLS:
		port = cmp.Or(port, 465)
	case SecurityNone:
		if !isLoopback(host) {
			return nil, fmt.Errorf("delivery.NewSMTPSender: security %q sends credentials and invitation links in clear text, so it is allowed only for a loopback host (localhost, 127.0.0.0/8, ::1), not %q: use starttls or tls", security, host)
		}
		port = cmp.Or(port, 25)
	default:
		return nil, fmt.Errorf("delivery.NewSMTPSender: security %q: want starttls, tls or none", security)
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("delivery.NewSMTPSender: port %d out of range", port)
	}
	if opts.Username == "" && opts.Password != "" {
		return nil, errors.New("delivery.NewSMTPSender: password set without username")
	}
	from, err := mail.ParseAddress(opts.From)
	if err != nil {
		return nil, fmt.Errorf("delivery.NewSMTPSender: from %q: %w", opts.From, err)
	}
	at := strings.LastIndexByte(from.Address, '@')
	if at < 1 || at == len(from.Address)-1 {
		return nil, fmt.Errorf("delivery.NewSMTPSender: from %q has no domain", opts.From)
	}
	helo := cmp.Or(opts.HELOName, "localhost")
	if strings.ContainsAny(helo, " \r\n") {
		return nil, fmt.Errorf("delivery.NewSMTPSender: HELO name %q is not a host name", helo)
	}

	var tlsConf *tls.Config
	if opts.TLSConfig != nil {
		tlsConf = opts.TLSConfig.Clone()
	} else {
		tlsConf = &tls.Config{}
	}
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = strings.Trim(host, "[]")
	}
	tlsConf.MinVersion = max(tlsConf.MinVersion, tls.VersionTLS12)

	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	connectTO := cmp.Or(opts.ConnectTimeout, 15*time.Second)
	return &SMTPSender{
		addr:       net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port)),
		host:       strings.Trim(host, "[]"),
		security:   security,
		username:   opts.Username,
		password:   opts.Password,
		from:       from,
		fromDomain: strings.ToLower(from.Address[at+1:]),
		tls:        tlsConf,
		helo:       helo,
		connectTO:  connectTO,
		commandTO:  cmp.Or(opts.CommandTimeout, 60*time.Second),
		log:        log,
		dialer:     net.Dialer{Timeout: connectTO},
	}, nil
}

// FromDomain is the domain of the From address, which Message-IDs use.
func (s *SMTPSender) FromDomain() string { return s.fromDomain }

// Send submits m in one SMTP session. It returns a Receipt when the server
// accepted the message (250 after the final dot), else a *SendError that
// matches ErrTemporary or ErrPermanent. A temporary error with
// MaybeDelivered set means the message may already be on its way; a retry
// can then produce a duplicate with the same Message-ID.
func (s *SMTPSender) Send(ctx context.Context, m Message) (Receipt, error) {
	start := time.Now()
	rec, err := s.send(ctx, m)
	var se *SendError
	if errors.As(err, &se) {
		s.scrub(se)
	}
	attrs := []slog.Attr{
		slog.String("activity_id", m.ActivityID),
		slog.String("message_id", rec.MessageID),
		slog.String("server", s.addr),
		slog.Duration("duration", time.Since(start)),
	}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "smtp submit failed", append(attrs, slog.String("error", err.Error()))...)
		return rec, err
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "smtp submit accepted", append(attrs, slog.String("response", rec.Response))...)
	return rec, nil
}

func (s *SMTPSender) send(ctx context.Context, m Message) (rec Receipt, err error) {
	msg, rcpt, id, err := m.render(s.from, s.fromDomain)
	if err != nil {
		return rec, err
	}
	rec.MessageID = id

	stage := StageConnect
	fail := func(err error) error { return classify(stage, err, ctx.Err()) }

	raw, err := s.dialer.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return rec, fail(err)
	}
	// Closing the connection is how a cancelled context interrupts a
	// blocked read or write; whatever fails next reports ctx.Err().
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer func() {
		stop()
		raw.Close()
	}()
	if err := raw.SetDeadline(time.Now().Add(s.connectTO)); err != nil {
		return rec, fail(err)
	}
	conn := raw
	if s.security == SecurityTLS {
		stage = StageTLS
		tc := tls.Client(raw, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return rec, fail(err)
		}
		conn = tc
	}

	stage = StageGreeting
	c, err := gosmtp.NewClient(conn, s.host)
	if err != nil {
		return rec, fail(err)
	}
	step := func(next Stage) error {
		stage = next
		return c.UpdateDeadline(s.commandTO)
	}

	if err := step(StageHello); err != nil {
		return rec, fail(err)
	}
	if err := c.Hello(s.helo); err != nil {
		return rec, fail(err)
	}
	if s.security == SecurityStartTLS {
		if err := step(StageStartTLS); err != nil {
			return rec, fail(err)
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			// Sending anyway would expose the credentials and the
			// invitation link to anyone who stripped the capability.
			return rec, invalid(StageStartTLS, "the server does not offer STARTTLS (security is starttls)")
		}
		if err := c.StartTLS(s.tls); err != nil {
			return rec, fail(err)
		}
	}
	if s.username != "" {
		if err := step(StageAuth); err != nil {
			return rec, fail(err)
		}
		auth, err := s.auth(c)
		if err != nil {
			return rec, err
		}
		if err := c.Auth(auth); err != nil {
			return rec, fail(err)
		}
	}

	if err := step(StageMail); err != nil {
		return rec, fail(err)
	}
	if err := c.Mail(s.from.Address); err != nil {
		return rec, s.abort(c, fail(err))
	}
	if err := step(StageRcpt); err != nil {
		return rec, fail(err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		return rec, s.abort(c, fail(err))
	}
	if err := step(StageData); err != nil {
		return rec, fail(err)
	}
	w, err := c.Data()
	if err != nil {
		return rec, s.abort(c, fail(err))
	}
	if _, err := msg.WriteTo(w); err != nil {
		return rec, fail(err)
	}
	if err := step(StageDataEnd); err != nil {
		return rec, fail(err)
	}
	if err := w.Close(); err != nil {
		se := classify(stage, err, ctx.Err())
		// No reply code read means the message went out whole and the
		// connection failed before the verdict.
		se.MaybeDelivered = se.Code == 0
		return rec, se
	}
	if dc, ok := w.(*gosmtp.DataCloser); ok {
		rec.Response = cleanText(dc.ServerResponse())
	}
	// Accepted. QUIT is a courtesy; its failure changes nothing.
	_ = c.UpdateDeadline(s.commandTO)
	_ = c.Quit()
	return rec, nil
}

// auth picks PLAIN, else LOGIN, from what the server offers after TLS.
func (s *SMTPSender) auth(c *gosmtp.Client) (gosmtp.Auth, error) {
	ok, offered := c.Extension("AUTH")
	if !ok {
		return nil, invalid(StageAuth, "the server does not offer AUTH but a username is configured")
	}
	mechs := strings.Fields(strings.ToUpper(offered))
	// Over security none (loopback only) the go-mail guard against clear
	// text credentials would refuse 127.0.0.2; the loopback check stands in.
	clear := s.security == SecurityNone
	switch {
	case slices.Contains(mechs, "PLAIN"):
		return gosmtp.PlainAuth("", s.username, s.password, s.host, clear), nil
	case slices.Contains(mechs, "LOGIN"):
		return gosmtp.LoginAuth(s.username, s.password, s.host, clear), nil
	}
	return nil, invalid(StageAuth, "the server offers AUTH %s; want PLAIN or LOGIN", cleanText(offered))
}

// scrub removes the credentials from a server reply kept in e. A broken or
// hostile server may echo what it was sent; AUTH PLAIN and LOGIN carry the
// password in clear or in base64.
func (s *SMTPSender) scrub(e *SendError) {
	if s.password == "" {
		return
	}
	b64 := base64.StdEncoding.EncodeToString
	text := e.Text
	for _, secret := range []string{
		b64([]byte("\x00" + s.username + "\x00" + s.password)),
		b64([]byte(s.password)),
		s.password,
	} {
		text = strings.ReplaceAll(text, secret, "[redacted]")
	}
	if text != e.Text {
		e.Text = text
		e.Err = &textproto.Error{Code: e.Code, Msg: text}
	}
}

// abort ends a refused transaction politely (RSET is implied by QUIT) and
// returns err.
func (s *SMTPSender) abort(c *gosmtp.Client, err error) error {
	_ = c.UpdateDeadline(s.commandTO)
	_ = c.Quit()
	return err
}

func isLoopback(host string) bool {
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
