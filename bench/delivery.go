package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	smtpd "github.com/emersion/go-smtp"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/delivery"
)

// smtpSink is an in-process SMTP server (go-smtp) on loopback, without TLS
// or AUTH (the connector allows security none for loopback only). It keeps
// the Message-IDs received per recipient and cuts a seeded share of the
// connections after the message's final dot, before its reply: the case
// where SMTP cannot tell the client whether the message was taken.
type smtpSink struct {
	Host string
	Port int

	dropRate float64
	mu       sync.Mutex
	rng      *rand.Rand
	byRcpt   map[string][]string // lower-case recipient -> Message-IDs received
	drops    int
	count    atomic.Int64
	srv      *smtpd.Server
	ln       net.Listener
}

var sinkMessageID = regexp.MustCompile(`(?mi)^Message-ID:\s*(<[^>\r\n]+>)`)

func startSMTPSink(dropRate float64, seed uint64) (*smtpSink, error) {
	s := &smtpSink{dropRate: dropRate, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), byRcpt: map[string][]string{}}
	s.srv = smtpd.NewServer(smtpd.BackendFunc(func(c *smtpd.Conn) (smtpd.Session, error) {
		return &sinkSession{sink: s, conn: c}, nil
	}))
	s.srv.Domain = "sink.test"
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.ReadTimeout, s.srv.WriteTimeout = 30*time.Second, 30*time.Second
	s.srv.MaxRecipients = 10
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("smtp sink: %w", err)
	}
	s.ln, s.Host, s.Port = ln, "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *smtpSink) close() { _ = s.ln.Close(); _ = s.srv.Close() }

// received returns the Message-IDs per recipient and the cuts made.
func (s *smtpSink) received() (map[string][]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]string, len(s.byRcpt))
	for k, v := range s.byRcpt {
		out[k] = append([]string(nil), v...)
	}
	return out, s.drops
}

type sinkSession struct {
	sink *smtpSink
	conn *smtpd.Conn
	to   []string
}

func (ss *sinkSession) Mail(string, *smtpd.MailOptions) error { return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtpd.RcptOptions) error {
	ss.to = append(ss.to, strings.ToLower(to))
	return nil
}
func (ss *sinkSession) Reset()        { ss.to = nil }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	id := ""
	if m := sinkMessageID.FindSubmatch(data); m != nil {
		id = string(m[1])
	}
	s := ss.sink
	s.mu.Lock()
	// The message is taken either way: a server that cut the connection
	// after the dot may well have queued it.
	for _, to := range ss.to {
		s.byRcpt[to] = append(s.byRcpt[to], id)
	}
	cut := s.dropRate > 0 && s.rng.Float64() < s.dropRate
	if cut {
		s.drops++
	}
	s.mu.Unlock()
	s.count.Add(1)
	if cut {
		ss.conn.Conn().Close()
		return errors.New("connection cut after the dot")
	}
	return nil
}

// smtpYAML is the smtp block pointing at the sink.
func (s *smtpSink) smtpYAML() string {
	return fmt.Sprintf("smtp:\n  host: %q\n  port: %d\n  security: none\n  from: \"Contoso Portal <invites@contoso.test>\"\n", s.Host, s.Port)
}

// clickPortal is the Invite to portal button for a chosen portal and roles.
func (g *org) clickPortal(ctx context.Context, id, portal string, roles []string) error {
	var err error
	for range 10 {
		_, err = g.crm.Update(ctx, "contacts", id, map[string]any{
			emulator.ColInviteStatus: emulator.InviteRequested,
			emulator.ColInvitePortal: portal,
			emulator.ColInviteRoles:  strings.Join(roles, ", "),
			emulator.ColInviteError:  nil,
		}, &dataverse.WriteOptions{Headers: http.Header{"MSCRMCallerID": {emulator.DemoAdminUserID}}})
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("click invite on %s: %w", id, err)
	}
	g.clicks.Add(1)
	return nil
}

// statusOf is a contact's invite status and error column.
func (g *org) statusOf(id string) (int, string) {
	row, _ := g.Row("contact", id)
	st, _ := row[emulator.ColInviteStatus].(int)
	msg, _ := row[emulator.ColInviteError].(string)
	return st, msg
}

// waitOutcomes waits until no contact shows Requested or Sent, and returns
// how many show each status.
func (g *org) waitOutcomes(ctx context.Context, cs []contact, timeout time.Duration, progress func(map[int]int)) (map[int]int, error) {
	deadline := time.Now().Add(timeout)
	lastReport := time.Now()
	for {
		counts := map[int]int{}
		for _, c := range cs {
			st, _ := g.statusOf(c.ID)
			counts[st]++
		}
		if counts[emulator.InviteRequested] == 0 && counts[emulator.InviteSent] == 0 {
			return counts, nil
		}
		if progress != nil && time.Since(lastReport) > 5*time.Second {
			progress(counts)
			lastReport = time.Now()
		}
		if time.Now().After(deadline) {
			return counts, fmt.Errorf("after %s: %d Requested, %d Sent", timeout, counts[emulator.InviteRequested], counts[emulator.InviteSent])
		}
		select {
		case <-ctx.Done():
			return counts, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// emailActivities counts email rows regarding each contact's invitations.
func (g *org) emailActivities(cs []contact) (total, maxPer int, byStatus map[int]int) {
	invContact := map[string]string{}
	for _, inv := range g.Rows("adx_invitation") {
		id, _ := inv["adx_invitationid"].(string)
		c, _ := inv["adx_invitecontact"].(string)
		invContact[strings.ToLower(id)] = strings.ToLower(c)
	}
	want := map[string]bool{}
	for _, c := range cs {
		want[c.ID] = true
	}
	per := map[string]int{}
	byStatus = map[int]int{}
	for _, e := range g.Rows("email") {
		reg, _ := e["regardingobjectid"].(string)
		c := invContact[strings.ToLower(reg)]
		if !want[c] {
			continue
		}
		total++
		per[c]++
		maxPer = max(maxPer, per[c])
		st, _ := e["statuscode"].(int)
		byStatus[st]++
	}
	return total, maxPer, byStatus
}

// reasonSummary groups Failed contacts by the start of their reason.
func (g *org) reasonSummary(cs []contact) (noReason int, groups []string) {
	by := map[string]int{}
	for _, c := range cs {
		st, msg := g.statusOf(c.ID)
		if st != emulator.InviteFailed {
			continue
		}
		if strings.TrimSpace(msg) == "" {
			noReason++
			continue
		}
		head := msg
		if i := strings.IndexAny(head, ".\n"); i > 0 {
			head = head[:i]
		}
		if len(head) > 110 {
			head = head[:110] + "…"
		}
		by[head]++
	}
	for k, v := range by {
		groups = append(groups, fmt.Sprintf("%d × “%s”", v, k))
	}
	sort.Strings(groups)
	return noReason, groups
}

// senderThroughput submits n messages with the SMTP channel's sender at the
// given concurrency and returns messages per second.
func senderThroughput(ctx context.Context, sink *smtpSink, n, conc int) (float64, error) {
	sender, err := delivery.NewSMTPSender(delivery.SMTPOptions{Host: sink.Host, Port: sink.Port, Security: delivery.SecurityNone,
		From: "Contoso Portal <invites@contoso.test>"})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	err = parallel(ctx, conc, n, func(i int) error {
		_, err := sender.Send(ctx, delivery.Message{
			ActivityID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), To: fmt.Sprintf("throughput%06d@example.test", i),
			Subject: "You're invited to Contoso Partner Portal", Text: "Open https://portal.test/invitation?code=ABC to join.",
			HTML: "<p><a href=\"https://portal.test/invitation?code=ABC\">Join</a></p>",
		})
		return err
	})
	if err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
