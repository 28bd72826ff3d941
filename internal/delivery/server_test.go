package delivery_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	smtpd "github.com/emersion/go-smtp"
)

// testPKI is a throwaway CA and a server certificate for 127.0.0.1, ::1 and
// localhost. The machine trusts other roots through SSL_CERT_FILE, so the
// client side gets this CA explicitly.
type testPKI struct {
	server *tls.Config // for the SMTP server
	client *tls.Config // trusts only the throwaway CA
}

func newPKI(t testing.TB) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "delivery test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{
		server: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}},
		client: &tls.Config{RootCAs: pool},
	}
}

// received is one message a test server took in full (up to the final dot).
type received struct {
	From, To string
	Data     []byte
	TLS      bool   // the session was encrypted
	User     string // the authenticated user, if any
}

// errDropped marks a transaction whose connection the server cut on purpose.
var errDropped = errors.New("connection dropped by the test server")

// serverConfig scripts a go-smtp server. Hooks run in the session's
// goroutine; a hook may cut the connection with drop.
type serverConfig struct {
	security string            // "none", "starttls" or "tls"
	users    map[string]string // username → password; nil: no AUTH offered
	mechs    []string          // AUTH mechanisms offered; default PLAIN
	onMail   func(c *smtpd.Conn, from string) error
	onRcpt   func(c *smtpd.Conn, to string) error
	// onData sees the whole message; returning nil or errDropped counts it
	// as delivered (a server that cut the connection after the dot may
	// well have queued the message first).
	onData func(c *smtpd.Conn, data []byte) error
	// dropDataAfter > 0 cuts the connection after that many bytes of the
	// message, before the final dot.
	dropDataAfter int
	// countOnly keeps a count instead of the messages (benchmarks).
	countOnly bool
}

type testServer struct {
	host string
	port int
	pki  testPKI

	accepted atomic.Int64 // TCP connections accepted
	count    atomic.Int64 // messages delivered

	mu        sync.Mutex
	delivered []received
}

func (s *testServer) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.delivered...)
}

// drop cuts c's TCP connection without a reply.
func drop(c *smtpd.Conn) error {
	c.Conn().Close()
	return errDropped
}

func startServer(t testing.TB, pki testPKI, cfg serverConfig) *testServer {
	t.Helper()
	ts := &testServer{host: "127.0.0.1", pki: pki}
	srv := smtpd.NewServer(smtpd.BackendFunc(func(c *smtpd.Conn) (smtpd.Session, error) {
		return &session{srv: ts, cfg: &cfg, conn: c}, nil
	}))
	srv.Domain = "mx.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	var ln net.Listener
	var err error
	switch cfg.security {
	case "none":
		srv.AllowInsecureAuth = true
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	case "starttls":
		srv.TLSConfig = pki.server
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	case "tls":
		srv.TLSConfig = pki.server
		ln, err = tls.Listen("tcp", "127.0.0.1:0", pki.server)
	default:
		t.Fatalf("security %q", cfg.security)
	}
	if err != nil {
		t.Fatal(err)
	}
	ts.port = ln.Addr().(*net.TCPAddr).Port
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(&countingListener{Listener: ln, n: &ts.accepted})
	}()
	t.Cleanup(func() {
		// Closing the listener too: Serve may not have registered it with
		// srv yet when a short test ends.
		ln.Close()
		srv.Close()
		<-done
	})
	return ts
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

type session struct {
	srv      *testServer
	cfg      *serverConfig
	conn     *smtpd.Conn
	user     string
	from, to string
}

func (s *session) AuthMechanisms() []string {
	if s.cfg.users == nil {
		return nil
	}
	if len(s.cfg.mechs) == 0 {
		return []string{sasl.Plain}
	}
	return s.cfg.mechs
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	check := func(username, password string) error {
		if want, ok := s.cfg.users[username]; !ok || want != password {
			return smtpd.ErrAuthFailed // 535 5.7.8
		}
		s.user = username
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, username, password string) error { return check(username, password) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtpd.ErrAuthUnknownMechanism
}

func (s *session) Mail(from string, _ *smtpd.MailOptions) error {
	if s.cfg.users != nil && s.user == "" {
		return smtpd.ErrAuthRequired
	}
	if s.cfg.onMail != nil {
		if err := s.cfg.onMail(s.conn, from); err != nil {
			return err
		}
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtpd.RcptOptions) error {
	if s.cfg.onRcpt != nil {
		if err := s.cfg.onRcpt(s.conn, to); err != nil {
			return err
		}
	}
	s.to = to
	return nil
}

func (s *session) Data(r io.Reader) error {
	if n := s.cfg.dropDataAfter; n > 0 {
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return err
		}
		return drop(s.conn)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.cfg.onData != nil {
		err = s.cfg.onData(s.conn, data)
	}
	if err == nil || errors.Is(err, errDropped) {
		s.srv.count.Add(1)
		if s.cfg.countOnly {
			return err
		}
		_, isTLS := s.conn.TLSConnectionState()
		s.srv.mu.Lock()
		s.srv.delivered = append(s.srv.delivered, received{From: s.from, To: s.to, Data: data, TLS: isTLS, User: s.user})
		s.srv.mu.Unlock()
	}
	return err
}

func (s *session) Reset()        { s.from, s.to = "", "" }
func (s *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN, which go-sasl only ships
// as a client.
type loginServer struct {
	check    func(username, password string) error
	step     int
	username string
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if response != nil { // initial response carries the username
			l.username = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.step++
		l.username = string(response)
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.username, string(response))
	}
}

// scriptedServer is a raw TCP server for replies go-smtp will not produce:
// handle gets each accepted connection.
func scriptedServer(t testing.TB, handle func(c net.Conn)) (host string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
}

// smtpScript answers a minimal SMTP dialogue: replies maps a command verb
// (EHLO, MAIL, RCPT, DATA, DATA-END, QUIT) to a raw reply line sent instead
// of the normal one; "{args}" in it becomes the command's arguments.
// Unlisted verbs get the normal reply.
func smtpScript(greeting string, replies map[string]string) func(c net.Conn) {
	normal := map[string]string{
		"EHLO":     "250-mx.test\r\n250 8BITMIME",
		"HELO":     "250 mx.test",
		"MAIL":     "250 2.1.0 OK",
		"RCPT":     "250 2.1.5 OK",
		"DATA":     "354 go ahead",
		"DATA-END": "250 2.0.0 OK: queued",
		"RSET":     "250 2.0.0 OK",
		"NOOP":     "250 2.0.0 OK",
		"QUIT":     "221 2.0.0 bye",
	}
	return func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		w := bufio.NewWriter(c)
		say := func(line string) bool {
			_, err := w.WriteString(line + "\r\n")
			return err == nil && w.Flush() == nil
		}
		reply := func(verb string) string {
			if r, ok := replies[verb]; ok {
				return r
			}
			if r, ok := normal[verb]; ok {
				return r
			}
			return "502 5.5.1 unknown command"
		}
		if !say(greeting) {
			return
		}
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			verb, args, _ := strings.Cut(strings.TrimSpace(line), " ")
			verb = strings.ToUpper(verb)
			rep := strings.ReplaceAll(reply(verb), "{args}", args)
			if !say(rep) {
				return
			}
			if verb == "QUIT" {
				return
			}
			if verb == "DATA" && strings.HasPrefix(rep, "354") {
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
				}
				if !say(reply("DATA-END")) {
					return
				}
			}
		}
	}
}

// closedPort is a loopback port nothing listens on (just released).
func closedPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// randomDrops is an onData hook that cuts a seeded-random share rate of
// connections after the final dot, and a counter of the cuts.
func randomDrops(rate float64, seed uint64) (func(c *smtpd.Conn, _ []byte) error, func() int) {
	var mu sync.Mutex
	rng := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	drops := 0
	hook := func(c *smtpd.Conn, _ []byte) error {
		mu.Lock()
		cut := rng.Float64() < rate
		if cut {
			drops++
		}
		mu.Unlock()
		if cut {
			return drop(c)
		}
		return nil
	}
	return hook, func() int {
		mu.Lock()
		defer mu.Unlock()
		return drops
	}
}
