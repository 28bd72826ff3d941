package emulator

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Email statuscode values (email_statuscode) that SendEmail and the emulated
// server-side synchronization move an email between (email-delivery.md §1).
const (
	EmailDraft       = 1 // statecode 0 Open
	EmailSent        = 3 // statecode 1 Completed: the mail server accepted it
	EmailPendingSend = 6 // statecode 1 Completed: handed over, waiting for the mailbox's outgoing cycle
	EmailSending     = 7 // statecode 1 Completed: being submitted
	EmailFailed      = 8 // statecode 0 Open
)

// Mailbox and tracelog option values (mailbox.emailrouteraccessapproval,
// mailbox.outgoingemaildeliverymethod, tracelog.level).
const (
	ApprovalEmpty    = 0
	ApprovalApproved = 1
	ApprovalPending  = 2
	ApprovalRejected = 3

	OutgoingNone           = 0
	OutgoingOutlook        = 1
	OutgoingServerSideSync = 2

	AlertInformation = 1
	AlertWarning     = 2
	AlertError       = 3
)

// EmailSyncOptions shapes the emulated server-side synchronization that
// delivers emails sent with SendEmail(IssueSend=true). The zero value delivers
// at once through approved mailboxes under Exchange Online's limits.
type EmailSyncOptions struct {
	// Delay is how long an email waits in Pending Send before its mailbox's
	// outgoing cycle picks it up (Dataverse: about five minutes). Zero runs
	// the cycle when the SendEmail commits, before the response: the email is
	// then already Sent (or Failed, or held with an alert) when SendEmail
	// returns.
	Delay time.Duration
	// Submit is how long an email stays in Sending before the mail server's
	// answer; default 0 (Sending and Sent are written one after the other).
	Submit time.Duration
	// Retry is how long a mailbox that could not send (not approved, not
	// enabled) waits before its next outgoing cycle; default 5 minutes, the
	// outgoing cycle of server-side sync. Changing a mailbox, a queue's
	// approval or the organization's approval settings retries at once.
	Retry time.Duration
	// Manual turns the background cycle off: emails move only when
	// RunEmailSync is called, at the time Options.Now gives (deterministic
	// tests).
	Manual bool
	// Bounce reports whether the mail server refuses a recipient, which fails
	// the email; default: an address whose domain ends in ".invalid" (the
	// top-level domain RFC 2606 reserves for invalid names).
	Bounce func(address string) bool
	// Limits are the per-mailbox sending limits.
	Limits MailboxLimits
}

// MailboxLimits are Exchange Online's per-mailbox sending limits
// (email-delivery.md §4). Zero fields take the defaults; a negative budget
// turns that limit off.
type MailboxLimits struct {
	MessageWindow   time.Duration // default 1 minute
	Messages        int           // messages per MessageWindow; default 30
	RecipientWindow time.Duration // rolling; default 24 hours
	Recipients      int           // recipients per RecipientWindow; default 10,000
}

// DefaultMailboxLimits returns 30 messages a minute and 10,000 recipients in a
// rolling 24 hours.
func DefaultMailboxLimits() MailboxLimits {
	return MailboxLimits{MessageWindow: time.Minute, Messages: 30, RecipientWindow: 24 * time.Hour, Recipients: 10000}
}

func (l MailboxLimits) withDefaults() MailboxLimits {
	d := DefaultMailboxLimits()
	if l.MessageWindow <= 0 {
		l.MessageWindow = d.MessageWindow
	}
	if l.Messages == 0 {
		l.Messages = d.Messages
	}
	if l.RecipientWindow <= 0 {
		l.RecipientWindow = d.RecipientWindow
	}
	if l.Recipients == 0 {
		l.Recipients = d.Recipients
	}
	return l
}

// Scaled shrinks (or grows) the windows and their budgets by f, keeping their
// ratio, like throttle.Limits.Scaled: 0.01 gives 1 message per 600ms and 100
// recipients per 14m24s. A budget that is on never scales below one.
func (l MailboxLimits) Scaled(f float64) MailboxLimits {
	l = l.withDefaults()
	l.MessageWindow = max(1, time.Duration(math.Round(float64(l.MessageWindow)*f)))
	l.RecipientWindow = max(1, time.Duration(math.Round(float64(l.RecipientWindow)*f)))
	if l.Messages > 0 {
		l.Messages = max(1, int(math.Round(float64(l.Messages)*f)))
	}
	if l.Recipients > 0 {
		l.Recipients = max(1, int(math.Round(float64(l.Recipients)*f)))
	}
	return l
}

func (o EmailSyncOptions) withDefaults() EmailSyncOptions {
	if o.Retry <= 0 {
		o.Retry = 5 * time.Minute
	}
	if o.Bounce == nil {
		o.Bounce = BounceInvalidDomains
	}
	o.Limits = o.Limits.withDefaults()
	return o
}

// BounceInvalidDomains is the default bounce rule: the recipient's domain
// ends in ".invalid".
func BounceInvalidDomains(address string) bool {
	return strings.HasSuffix(strings.ToLower(strings.TrimSpace(address)), ".invalid")
}

// EmailSyncResult counts what one outgoing cycle did.
type EmailSyncResult struct {
	Sending int // emails moved from Pending Send to Sending
	Sent    int // emails the mail server accepted
	Failed  int // emails failed (a recipient bounced)
	Held    int // emails left in Pending Send (mailbox not ready, over a limit)
}

// queuedEmail is an email in Pending Send or Sending, waiting for its
// mailbox's outgoing cycle or the mail server's answer.
type queuedEmail struct {
	id, mailbox string
	subject     string
	recipients  []string
	seq         uint64
	due         time.Time // stays in Pending Send until then (SendEmail + Delay)
	retryAt     time.Time // held until then
	heldBy      string    // "mailbox" or "quota" while held
	answerAt    time.Time // non-zero: in Sending, answered then
}

type submission struct {
	at         time.Time
	recipients int
}

// mailSync is the emulated server-side synchronization: a queue of emails per
// mailbox, each mailbox's sending limits, and a background cycle.
type mailSync struct {
	s *Server
	o EmailSyncOptions

	passMu sync.Mutex // one cycle at a time

	mu        sync.Mutex // guards everything below
	seq       uint64
	queue     map[string]*queuedEmail
	sent      map[string][]submission // mailbox -> submissions, oldest first
	postponed map[string]time.Time    // mailbox -> over a limit until
	looping   bool
	closed    bool
	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
}

func newMailSync(s *Server, o EmailSyncOptions) *mailSync {
	return &mailSync{
		s: s, o: o.withDefaults(), queue: map[string]*queuedEmail{}, sent: map[string][]submission{},
		postponed: map[string]time.Time{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// committed takes the emails a transaction handed over and the fact that it
// changed a mailbox's settings.
func (m *mailSync) committed(list []*queuedEmail, mailboxChanged bool) {
	m.mu.Lock()
	for _, q := range list {
		m.seq++
		q.seq = m.seq
		m.queue[q.id] = q
	}
	if mailboxChanged {
		for _, q := range m.queue {
			if q.heldBy == "mailbox" {
				q.retryAt = time.Time{}
			}
		}
	}
	m.mu.Unlock()
	m.kick()
}

// kick runs a cycle now (Delay zero) or wakes the background cycle.
func (m *mailSync) kick() {
	if m.o.Manual {
		return
	}
	if m.o.Delay == 0 {
		m.run(m.s.now())
	}
	m.ensureLoop()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// ensureLoop starts the background cycle once there is something to do.
func (m *mailSync) ensureLoop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.looping || m.closed || len(m.queue) == 0 {
		return
	}
	m.looping = true
	go m.loop()
}

func (m *mailSync) loop() {
	defer close(m.done)
	for {
		var timer *time.Timer
		var fire <-chan time.Time
		if next := m.nextWake(); !next.IsZero() {
			timer = time.NewTimer(max(0, next.Sub(m.s.now())))
			fire = timer.C
		}
		select {
		case <-m.stop:
			if timer != nil {
				timer.Stop()
			}
			return
		case <-m.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		m.run(m.s.now())
	}
}

// nextWake is the earliest time a queued email needs a cycle (zero: none).
func (m *mailSync) nextWake() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	var next time.Time
	for _, q := range m.queue {
		at := q.answerAt
		if at.IsZero() {
			at = later(q.due, q.retryAt)
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

func (m *mailSync) close() {
	m.mu.Lock()
	looping := m.looping && !m.closed
	m.closed = true
	m.mu.Unlock()
	if looping {
		close(m.stop)
		<-m.done
	}
}

// run is one outgoing cycle at now: the mail server answers the emails in
// Sending whose time has come, then every mailbox submits its due emails in
// the order they were sent, until it is not ready or over a limit.
func (m *mailSync) run(now time.Time) EmailSyncResult {
	m.passMu.Lock()
	defer m.passMu.Unlock()
	var res EmailSyncResult
	answers, byMailbox := m.due(now)
	for _, q := range answers {
		m.answer(q, now, &res)
	}
	for _, mb := range sortedNames(byMailbox) {
		m.cycle(mb, byMailbox[mb], now, &res)
	}
	return res
}

// due lists the emails in Sending to answer and, per mailbox, the emails in
// Pending Send to submit, oldest first.
func (m *mailSync) due(now time.Time) ([]*queuedEmail, map[string][]*queuedEmail) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var answers []*queuedEmail
	byMailbox := map[string][]*queuedEmail{}
	for _, q := range m.queue {
		switch {
		case !q.answerAt.IsZero():
			if !q.answerAt.After(now) {
				answers = append(answers, q)
			}
		case !q.due.After(now) && !q.retryAt.After(now):
			byMailbox[q.mailbox] = append(byMailbox[q.mailbox], q)
		}
	}
	bySeq := func(a, b *queuedEmail) int { return cmp.Compare(a.seq, b.seq) }
	slices.SortFunc(answers, bySeq)
	for _, l := range byMailbox {
		slices.SortFunc(l, bySeq)
	}
	return answers, byMailbox
}

// cycle submits one mailbox's due emails.
func (m *mailSync) cycle(mb string, list []*queuedEmail, now time.Time, res *EmailSyncResult) {
	mbx, ok := m.s.readMailbox(mb)
	if !ok {
		// The mailbox is gone: its emails stay in Pending Send.
		m.hold(list, "mailbox", now.Add(m.o.Retry))
		res.Held += len(list)
		return
	}
	if level, text, blocked := mbx.blocked(); blocked {
		m.s.mailboxFailed(mbx, list, level, text, now)
		m.hold(list, "mailbox", now.Add(m.o.Retry))
		res.Held += len(list)
		return
	}
	m.mu.Lock()
	until := m.postponed[mb]
	m.mu.Unlock()
	if until.After(now) {
		// Behind emails held by a limit: keep the mailbox's order.
		m.hold(list, "quota", until)
		res.Held += len(list)
		return
	}
	submitted := false
	for i, q := range list {
		if until, over := m.overLimit(mb, len(q.recipients), now); over {
			m.s.mailboxOverLimit(mbx, q, until, now)
			m.mu.Lock()
			m.postponed[mb] = until
			m.mu.Unlock()
			m.hold(list[i:], "quota", until)
			res.Held += len(list) - i
			break
		}
		if !m.s.markSending(q, mbx, now) {
			m.drop(q) // no longer Pending Send (deleted, or changed by someone)
			continue
		}
		submitted = true
		m.record(mb, len(q.recipients), now)
		res.Sending++
		if m.o.Submit > 0 {
			m.mu.Lock()
			q.answerAt = now.Add(m.o.Submit)
			q.heldBy, q.retryAt = "", time.Time{}
			m.mu.Unlock()
			continue
		}
		m.answer(q, now, res)
	}
	if submitted {
		m.s.mailboxSucceeded(mbx, now)
	}
}

// answer is the mail server's reply to a submitted email: refused when a
// recipient bounces, otherwise accepted.
func (m *mailSync) answer(q *queuedEmail, now time.Time, res *EmailSyncResult) {
	var bounced []string
	for _, a := range q.recipients {
		if m.o.Bounce(a) {
			bounced = append(bounced, a)
		}
	}
	if len(bounced) > 0 {
		if m.s.markFailed(q, bounced, now) {
			res.Failed++
		}
	} else if m.s.markSent(q, now) {
		res.Sent++
	}
	m.drop(q)
}

func (m *mailSync) hold(list []*queuedEmail, by string, until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, q := range list {
		q.heldBy, q.retryAt = by, until
	}
}

func (m *mailSync) drop(q *queuedEmail) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.queue, q.id)
}

func (m *mailSync) record(mb string, recipients int, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent[mb] = append(m.sent[mb], submission{at: now, recipients: recipients})
}

// overLimit reports whether submitting an email with n recipients now would
// exceed a limit of mailbox mb, and when it would not.
func (m *mailSync) overLimit(mb string, n int, now time.Time) (time.Time, bool) {
	l := m.o.Limits
	m.mu.Lock()
	defer m.mu.Unlock()
	subs := m.sent[mb]
	// Forget submissions outside both windows.
	keep := max(l.MessageWindow, l.RecipientWindow)
	i := 0
	for i < len(subs) && !subs[i].at.Add(keep).After(now) {
		i++
	}
	subs = subs[i:]
	m.sent[mb] = subs
	var until time.Time
	if l.Messages > 0 {
		in := inWindow(subs, l.MessageWindow, now)
		if len(in) >= l.Messages {
			until = later(until, in[len(in)-l.Messages].at.Add(l.MessageWindow))
		}
	}
	if l.Recipients > 0 {
		in := inWindow(subs, l.RecipientWindow, now)
		sum := 0
		for _, s := range in {
			sum += s.recipients
		}
		// An email larger than the whole budget goes out once the window is
		// empty rather than never.
		if sum > 0 && sum+n > l.Recipients {
			var at time.Time
			for _, s := range in {
				sum -= s.recipients
				at = s.at.Add(l.RecipientWindow)
				if sum == 0 || sum+n <= l.Recipients {
					break
				}
			}
			until = later(until, at)
		}
	}
	return until, !until.IsZero()
}

// inWindow is the tail of subs (oldest first) that still counts at now.
func inWindow(subs []submission, window time.Duration, now time.Time) []submission {
	i := 0
	for i < len(subs) && !subs[i].at.Add(window).After(now) {
		i++
	}
	return subs[i:]
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
