package delivery_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/smtp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/delivery"
)

// submitModes are the two session shapes the benchmarks compare: bare
// loopback, and STARTTLS with AUTH PLAIN (a full handshake per message).
func submitModes(pki testPKI) []submitMode {
	users := map[string]string{testUser: testPassword}
	return []submitMode{
		{"none", serverConfig{security: "none", countOnly: true}, delivery.SMTPOptions{Security: delivery.SecurityNone}, false},
		{"starttls+auth", serverConfig{security: "starttls", users: users, countOnly: true},
			delivery.SMTPOptions{Security: delivery.SecurityStartTLS, TLSConfig: pki.client, Username: testUser, Password: testPassword}, true},
	}
}

type submitMode struct {
	name   string
	server serverConfig
	opts   delivery.SMTPOptions
	auth   bool
}

// submitPair is this package's sender and the net/smtp baseline, both
// aimed at one in-process go-smtp server.
type submitPair struct {
	delivery func() error
	netSMTP  func() error
}

func newSubmitPair(b *testing.B, pki testPKI, mode submitMode) submitPair {
	srv := startServer(b, pki, mode.server)
	sender := newSender(b, srv.host, srv.port, mode.opts)
	raw := renderedBytes(b, pki, mode.opts)
	addr := net.JoinHostPort(srv.host, strconv.Itoa(srv.port))
	var auth smtp.Auth
	if mode.auth {
		auth = smtp.PlainAuth("", testUser, testPassword, srv.host)
	}
	m := testMessage()
	return submitPair{
		delivery: func() error { _, err := sender.Send(context.Background(), m); return err },
		netSMTP:  func() error { return netSMTPSend(addr, srv.host, pki.client, auth, raw) },
	}
}

// BenchmarkSubmit measures one message per SMTP session against the
// in-process go-smtp server: this package's sender (render with go-mail,
// then the session) and a bare net/smtp session sending the same bytes,
// pre-rendered. Allocations include the in-process server's, the same for
// both.
func BenchmarkSubmit(b *testing.B) {
	pki := newPKI(b)
	for _, mode := range submitModes(pki) {
		pair := newSubmitPair(b, pki, mode)
		for _, side := range []struct {
			name string
			send func() error
		}{{"delivery", pair.delivery}, {"net-smtp", pair.netSMTP}} {
			b.Run(mode.name+"/"+side.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := side.send(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkSubmitRatio alternates the two senders message by message, so a
// busy machine slows both alike, and reports each one's median time per
// message and their ratio (delivery / net/smtp).
func BenchmarkSubmitRatio(b *testing.B) {
	pki := newPKI(b)
	for _, mode := range submitModes(pki) {
		pair := newSubmitPair(b, pki, mode)
		b.Run(mode.name, func(b *testing.B) {
			var ours, base []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := pair.delivery(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := pair.netSMTP(); err != nil {
					b.Fatal(err)
				}
				ours = append(ours, t1.Sub(t0))
				base = append(base, time.Since(t1))
			}
			mo, mb := median(ours), median(base)
			b.ReportMetric(float64(mo.Microseconds()), "delivery-µs/msg")
			b.ReportMetric(float64(mb.Microseconds()), "net-smtp-µs/msg")
			b.ReportMetric(float64(mo)/float64(mb), "ratio")
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// netSMTPSend is the baseline: one bare net/smtp session, STARTTLS and
// AUTH PLAIN when tlsConf and auth are set by the mode.
func netSMTPSend(addr, host string, tlsConf *tls.Config, auth smtp.Auth, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		conf := tlsConf.Clone()
		conf.ServerName = host
		if err := c.StartTLS(conf); err != nil {
			return err
		}
	}
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	if err := c.Mail("invites@contoso.test"); err != nil {
		return err
	}
	if err := c.Rcpt("ada@example.test"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// renderedBytes is the message as this package renders it, captured by a
// throwaway server, so the baseline sends the same bytes.
func renderedBytes(b *testing.B, pki testPKI, opts delivery.SMTPOptions) []byte {
	b.Helper()
	cfg := serverConfig{security: "none"}
	if opts.Security == delivery.SecurityStartTLS {
		cfg.security = "starttls"
	}
	if opts.Username != "" {
		cfg.users = map[string]string{opts.Username: opts.Password}
	}
	srv := startServer(b, pki, cfg)
	if _, err := newSender(b, srv.host, srv.port, opts).Send(context.Background(), testMessage()); err != nil {
		b.Fatal(err)
	}
	return srv.messages()[0].Data
}

// BenchmarkDropAfterDot10 sends invitations through a server that cuts 10%
// of connections after the final dot, retrying with Backoff, and reports
// the copies delivered per invitation.
func BenchmarkDropAfterDot10(b *testing.B) {
	pki := newPKI(b)
	onData, _ := randomDrops(0.10, 15)
	srv := startServer(b, pki, serverConfig{security: "none", countOnly: true, onData: onData})
	s := newSender(b, srv.host, srv.port, delivery.SMTPOptions{Security: delivery.SecurityNone})
	bo := delivery.Backoff{Attempts: 10, Base: time.Millisecond, Max: 8 * time.Millisecond}
	b.ResetTimer()
	st := runInvitations(b, s, bo, b.N, 4)
	b.StopTimer()
	delivered := srv.count.Load()
	b.ReportMetric(float64(delivered)/float64(b.N), "copies/invitation")
	b.ReportMetric(float64(delivered-int64(b.N))/float64(b.N)*100, "dup%")
	b.ReportMetric(float64(st.sends)/float64(b.N), "sends/invitation")
}
