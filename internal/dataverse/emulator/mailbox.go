package emulator

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Alert texts the emulated server-side sync writes to tracelog. Where
// Microsoft documents the alert, the text is Microsoft's with its
// placeholders filled; where it documents none, the emulator words one in the
// same shape and says so here.
const (
	// "Email addresses must be approved", troubleshooting-monitoring-server-side-synchronization.md.
	alertNotApproved = "One or more mailboxes have been disabled for sending/receiving email because their email addresses have not been approved. Approve the email addresses, and then enable the mailboxes for sending/receiving email."
	// KB 4052727, Email Server Error Code OutgoingEmailS2SApprovalNeeded (mailbox name).
	alertS2SApproval = "Email cannot be sent because the email address of the mailbox %s requires an approval by an Office 365 administrator. The mailbox didn't synchronize. The owner of the email server profile Microsoft Exchange Online has been notified.\nEmail Server Error Code: OutgoingEmailS2SApprovalNeeded"
	// KB 4486353, ErrorSubmissionQuotaExceeded (email subject, mailbox name).
	alertQuota = "An unknown error occurred while sending the email message %s through the mailbox %s. The owner of the associated email server profile Microsoft Exchange Online has been notified. The system will try to send the message again later.\nEmail Server Error Code: Exchange server returned UnknownOutgoingEmailIntegrationError ErrorSubmissionQuotaExceeded exception."
	// Emulator wording: Microsoft documents no alert for a mailbox disabled
	// for outgoing email (mailbox name).
	alertDisabled = "Email cannot be sent because the mailbox %s is disabled for sending email. Enable the mailbox for sending email, and then test and enable it."
	// Emulator wording: Exchange Online accepts a message for an unknown
	// recipient and returns an NDR later; the emulator fails the email at
	// submission instead, with that NDR's status (subject, mailbox name,
	// recipients).
	alertBounce = "The email message \"%s\" could not be sent through the mailbox %s because the email server refused its recipient.\nEmail Server Error Code: Exchange server returned 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient %s not found by SMTP address lookup"

	tracelogTextMax = 2000
)

// mailboxInfo is what an outgoing cycle reads of a mailbox.
type mailboxInfo struct {
	id, name        string
	owner           string // systemuserid the sync acts as
	active, enabled bool
	o365            bool // isemailaddressapprovedbyo365admin
	approval        int
	method          int
	requireApproval bool // the organization processes email only for approved users/queues
	outgoingStatus  int
	postponeUntil   time.Time
}

// blocked reports why the mailbox cannot send (text "": no alert is written).
func (mb mailboxInfo) blocked() (level int, text string, blocked bool) {
	switch {
	case !mb.active || !mb.enabled:
		return AlertError, fmt.Sprintf(alertDisabled, mb.name), true
	case mb.method != OutgoingServerSideSync:
		// Sent by Outlook or not at all: server-side sync leaves the email in
		// Pending Send and logs nothing (email-delivery.md §7).
		return 0, "", true
	case mb.requireApproval && mb.approval != ApprovalApproved:
		return AlertError, alertNotApproved, true
	case !mb.o365:
		return AlertError, fmt.Sprintf(alertS2SApproval, mb.name), true
	}
	return 0, "", false
}

func (s *Server) readMailbox(id string) (mailboxInfo, bool) {
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	r, ok := s.st.data["mailbox"].rows[id]
	if !ok {
		return mailboxInfo{}, false
	}
	v := r.vals
	mb := mailboxInfo{id: id, owner: s.appUser}
	mb.name, _ = v["name"].(string)
	if mb.name == "" {
		mb.name, _ = v["emailaddress"].(string)
	}
	if o, ok := v["ownerid"].(ref); ok && o.table == "systemuser" {
		mb.owner = o.id
	}
	state, _ := v["statecode"].(int)
	mb.active = state == 0
	mb.enabled, _ = v["enabledforoutgoingemail"].(bool)
	mb.o365, _ = v["isemailaddressapprovedbyo365admin"].(bool)
	mb.approval, _ = v["emailrouteraccessapproval"].(int)
	mb.method, _ = v["outgoingemaildeliverymethod"].(int)
	mb.outgoingStatus, _ = v["outgoingemailstatus"].(int)
	mb.postponeUntil, _ = v["postponesendinguntil"].(time.Time)
	setting := "requireapprovalforuseremail"
	if rg, ok := v["regardingobjectid"].(ref); ok && rg.table == "queue" {
		setting = "requireapprovalforqueueemail"
	}
	if org, ok := s.st.data["organization"].rows[OrganizationID]; ok {
		mb.requireApproval, _ = org.vals[setting].(bool)
	}
	return mb, true
}

// syncTx runs fn as one transaction of the sync acting as user, firing the
// webhooks of its writes like any other write.
func (s *Server) syncTx(now time.Time, user string, fn func(tx *tx, req *request)) {
	c := &caller{userID: user, principal: user}
	tx := s.st.begin(now, c)
	req := &request{base: apiPrefix, caller: c, reqID: newGUID(), corrID: newGUID()}
	fn(tx, req)
	s.fire(tx.commit())
}

// syncUpdate writes columns the platform maintains (read-only to the API).
func (s *Server) syncUpdate(tx *tx, req *request, table string, r *row, cols map[string]any) {
	sent := make([]string, 0, len(cols))
	for k := range cols {
		sent = append(sent, k)
	}
	if err := s.updateValues(tx, req, s.reg.tables[table], r, cols, sent); err != nil {
		s.log.Error("dataverse emulator email sync", "table", table, "id", r.id, "err", err.message)
	}
}

// emailRow is an email row in the given status (nil: gone or moved on).
func (s *Server) emailRow(id string, status int) *row {
	r, ok := s.st.data["email"].rows[id]
	if !ok {
		return nil
	}
	if st, _ := r.vals["statuscode"].(int); st != status {
		return nil
	}
	return r
}

func (s *Server) markSending(q *queuedEmail, mb mailboxInfo, now time.Time) bool {
	ok := false
	s.syncTx(now, mb.owner, func(tx *tx, req *request) {
		r := s.emailRow(q.id, EmailPendingSend)
		if r == nil {
			return
		}
		attempts, _ := r.vals["deliveryattempts"].(int)
		s.syncUpdate(tx, req, "email", r, map[string]any{"statuscode": EmailSending, "deliveryattempts": attempts + 1})
		if e := s.st.outboxEntry(q.id); e != nil {
			e.Status, e.Attempts = EmailSending, attempts+1
		}
		ok = true
	})
	return ok
}

func (s *Server) markSent(q *queuedEmail, now time.Time) bool {
	ok := false
	s.syncTx(now, s.mailboxOwner(q.mailbox), func(tx *tx, req *request) {
		r := s.emailRow(q.id, EmailSending)
		if r == nil {
			return
		}
		on := now.UTC().Truncate(time.Second)
		s.syncUpdate(tx, req, "email", r, map[string]any{"statuscode": EmailSent, "senton": on})
		if e := s.st.outboxEntry(q.id); e != nil {
			e.Status, e.SentOn, e.Alert = EmailSent, on, ""
		}
		ok = true
	})
	return ok
}

func (s *Server) markFailed(q *queuedEmail, bounced []string, now time.Time) bool {
	ok := false
	s.syncTx(now, s.mailboxOwner(q.mailbox), func(tx *tx, req *request) {
		r := s.emailRow(q.id, EmailSending)
		if r == nil {
			return
		}
		name := q.mailbox
		if mb, found := s.st.data["mailbox"].rows[q.mailbox]; found {
			if n, _ := mb.vals["name"].(string); n != "" {
				name = n
			}
		}
		text := fmt.Sprintf(alertBounce, q.subject, name, strings.Join(bounced, ";"))
		s.writeAlert(tx, req, q.mailbox, AlertError, text)
		s.syncUpdate(tx, req, "email", r, map[string]any{"statecode": 0, "statuscode": EmailFailed})
		if e := s.st.outboxEntry(q.id); e != nil {
			e.Status, e.Alert = EmailFailed, truncate(text, tracelogTextMax)
		}
		ok = true
	})
	return ok
}

func (s *Server) mailboxOwner(id string) string {
	mb, ok := s.readMailbox(id)
	if !ok {
		return s.appUser
	}
	return mb.owner
}

// mailboxFailed records a cycle that could not send: the alert (if any), the
// mailbox's last result, and the alert on each held email in the outbox.
func (s *Server) mailboxFailed(mb mailboxInfo, held []*queuedEmail, level int, text string, now time.Time) {
	s.syncTx(now, mb.owner, func(tx *tx, req *request) {
		r, ok := s.st.data["mailbox"].rows[mb.id]
		if !ok {
			return
		}
		cols := map[string]any{"outgoingemailstatus": 2, "mailboxstatus": 2, "processinglastattemptedon": now.UTC().Truncate(time.Second)}
		if text != "" {
			s.writeAlert(tx, req, mb.id, level, text)
			count, _ := r.vals["lastsyncerrorcount"].(int)
			cols["lastsyncerror"] = truncate(text, 2048)
			cols["lastsyncerroroccurredon"] = now.UTC().Truncate(time.Second)
			cols["lastsyncerrorcount"] = count + 1
		}
		s.syncUpdate(tx, req, "mailbox", r, cols)
		for _, q := range held {
			if e := s.st.outboxEntry(q.id); e != nil {
				e.Alert = truncate(text, tracelogTextMax)
			}
		}
	})
}

// mailboxOverLimit records a submission refused by a sending limit: a
// transient alert and the mailbox postponed until the window allows it.
func (s *Server) mailboxOverLimit(mb mailboxInfo, q *queuedEmail, until, now time.Time) {
	s.syncTx(now, mb.owner, func(tx *tx, req *request) {
		r, ok := s.st.data["mailbox"].rows[mb.id]
		if !ok {
			return
		}
		text := fmt.Sprintf(alertQuota, q.subject, mb.name)
		s.writeAlert(tx, req, mb.id, AlertWarning, text)
		s.syncUpdate(tx, req, "mailbox", r, map[string]any{"postponesendinguntil": until.UTC().Truncate(time.Second)})
		if e := s.st.outboxEntry(q.id); e != nil {
			e.Alert = truncate(text, tracelogTextMax)
		}
	})
}

// mailboxSucceeded records the first successful cycle after a failure (or
// ever), so the mailbox's last result reads Success.
func (s *Server) mailboxSucceeded(mb mailboxInfo, now time.Time) {
	if mb.outgoingStatus == 1 {
		return
	}
	s.syncTx(now, mb.owner, func(tx *tx, req *request) {
		if r, ok := s.st.data["mailbox"].rows[mb.id]; ok {
			s.syncUpdate(tx, req, "mailbox", r, map[string]any{"outgoingemailstatus": 1, "mailboxstatus": 1,
				"lastsuccessfulsynccompletedon": now.UTC().Truncate(time.Second)})
		}
	})
}

// writeAlert writes a tracelog row regarding a mailbox. An alert repeated for
// the same mailbox updates its row (modifiedon, level) instead of adding one,
// as Dataverse does.
func (s *Server) writeAlert(tx *tx, req *request, mailboxID string, level int, text string) {
	text = truncate(text, tracelogTextMax)
	t := s.reg.tables["tracelog"]
	td := s.st.data["tracelog"]
	for r := range s.st.index(td, "regardingobjectid")[strings.ToLower(mailboxID)] {
		if r.vals["text"] == text {
			s.syncUpdate(tx, req, "tracelog", r, map[string]any{"level": level})
			return
		}
	}
	_, err := s.createRow(tx, req, t, map[string]any{}, "", map[string]any{
		"regardingobjectid": ref{table: "mailbox", id: mailboxID}, "level": level, "text": text, "tracestatus": false,
	})
	if err != nil {
		s.log.Error("dataverse emulator email sync: alert", "mailbox", mailboxID, "err", err.message)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// addDefaultMailbox gives a new user or queue its mailbox, as Dataverse does
// (one per user, one per queue). The emulator's organization has approved,
// tested and enabled every mailbox it creates; a real new mailbox starts
// unapproved and untested. A queue created with emailrouteraccessapproval
// passes it on to its mailbox.
func (s *Server) addDefaultMailbox(tx *tx, req *request, t *table, id string, vals map[string]any) *apiError {
	if t.logical != "systemuser" && t.logical != "queue" {
		return nil
	}
	if _, ok := vals["defaultmailbox"].(ref); ok {
		return nil
	}
	now := tx.now.UTC().Truncate(time.Second)
	preset := map[string]any{
		"regardingobjectid": ref{table: t.logical, id: id}, "regardingobjecttypecode": t.logical,
		"emailrouteraccessapproval": ApprovalApproved, "isemailaddressapprovedbyo365admin": true,
		"outgoingemaildeliverymethod": OutgoingServerSideSync, "incomingemaildeliverymethod": 2,
		"outgoingemailstatus": 1, "incomingemailstatus": 1, "mailboxstatus": 1, "testmailboxaccesscompletedon": now,
	}
	name, address := "", ""
	if t.logical == "systemuser" {
		name, _ = vals["fullname"].(string)
		address, _ = vals["internalemailaddress"].(string)
		preset["ownerid"] = ref{table: "systemuser", id: id}
	} else {
		name, _ = vals["name"].(string)
		address, _ = vals["emailaddress"].(string)
		preset["ownerid"] = vals["ownerid"]
		if a, ok := vals["emailrouteraccessapproval"].(int); ok {
			preset["emailrouteraccessapproval"] = a
		} else {
			vals["emailrouteraccessapproval"] = ApprovalApproved
		}
		if _, ok := vals["outgoingemaildeliverymethod"].(int); !ok {
			vals["outgoingemaildeliverymethod"] = OutgoingServerSideSync
		}
	}
	if name != "" {
		preset["name"] = name
	}
	if address != "" {
		preset["emailaddress"] = address
	}
	mb, err := s.createRow(tx, req, s.reg.tables["mailbox"], map[string]any{}, "", preset)
	if err != nil {
		return err
	}
	vals["defaultmailbox"] = ref{table: "mailbox", id: mb.id}
	return nil
}

// mailboxUpdated runs after an update: a queue's approval and its mailbox's
// stay the same (admins approve either), and a change to a mailbox, a queue
// or the organization lets held emails try again.
func (s *Server) mailboxUpdated(tx *tx, req *request, t *table, r *row, cols map[string]any) *apiError {
	switch t.logical {
	case "mailbox", "queue", "organization":
		tx.mailboxChanged = true
	default:
		return nil
	}
	v, ok := cols["emailrouteraccessapproval"]
	if !ok {
		return nil
	}
	var other *row
	var otherTable string
	switch t.logical {
	case "queue":
		if mb, ok := r.vals["defaultmailbox"].(ref); ok {
			other, otherTable = s.st.data["mailbox"].rows[mb.id], "mailbox"
		}
	case "mailbox":
		if rg, ok := r.vals["regardingobjectid"].(ref); ok && rg.table == "queue" {
			other, otherTable = s.st.data["queue"].rows[rg.id], "queue"
		}
	}
	if other == nil || compareValues(other.vals["emailrouteraccessapproval"], v) == 0 {
		return nil
	}
	return s.updateValues(tx, req, s.reg.tables[otherTable], other, map[string]any{"emailrouteraccessapproval": v}, []string{"emailrouteraccessapproval"})
}

// MailboxOf returns the default mailbox of a systemuser or queue.
func (s *Server) MailboxOf(ownerID string) (string, bool) {
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	id := normGUID(ownerID)
	for _, table := range []string{"systemuser", "queue"} {
		if r, ok := s.st.data[table].rows[id]; ok {
			if mb, ok := r.vals["defaultmailbox"].(ref); ok {
				return mb.id, true
			}
			return "", false
		}
	}
	return "", false
}

// SetMailbox changes a mailbox's writable columns as an admin would in the
// admin centre (logical names, Go values: ints for choices, bools), for
// example {"emailrouteraccessapproval": ApprovalPending} or
// {"enabledforoutgoingemail": false}. Like the other direct writes it fires
// no webhooks; emails held by the mailbox try again at once.
func (s *Server) SetMailbox(mailboxID string, cols map[string]any) error {
	t := s.reg.tables["mailbox"]
	body := map[string]any{}
	for k, v := range cols {
		body[k] = directValue(v)
	}
	tx := s.st.begin(s.now(), &caller{userID: s.appUser, principal: s.appUser})
	req := &request{base: apiPrefix, caller: tx.caller, reqID: newGUID(), corrID: newGUID()}
	r, ok := s.st.data["mailbox"].rows[normGUID(mailboxID)]
	if !ok {
		tx.rollback()
		return fmt.Errorf("set mailbox %s: no such mailbox", mailboxID)
	}
	pb, err := s.parseBody(req, t, body, false)
	if err == nil && (len(pb.deepOne) > 0 || len(pb.collBinds) > 0 || len(pb.collDeep) > 0) {
		err = newErr(http.StatusBadRequest, codeInvalidArgument, "only column values can be set")
	}
	if err == nil {
		err = s.updateValues(tx, req, t, r, pb.cols, pb.sent)
	}
	if err != nil {
		tx.rollback()
		return fmt.Errorf("set mailbox %s: %s", mailboxID, err.message)
	}
	tx.commit()
	s.mail.committed(nil, true)
	return nil
}

// RunEmailSync runs one outgoing cycle of every mailbox at the time
// Options.Now gives: the mail server answers the emails in Sending whose
// time has come, and each mailbox submits the emails whose Delay (or retry
// time) has passed. With EmailSyncOptions.Manual it is the only way emails
// move, which makes tests with an injected clock deterministic.
func (s *Server) RunEmailSync() EmailSyncResult {
	return s.mail.run(s.now())
}

// QueuedEmails is how many emails the sync still follows: in Pending Send
// (waiting for their mailbox's cycle, or held) or in Sending. An email whose
// sender has no mailbox is never queued.
func (s *Server) QueuedEmails() int {
	s.mail.mu.Lock()
	defer s.mail.mu.Unlock()
	return len(s.mail.queue)
}

// committed fires a committed transaction's webhooks and hands its emails to
// server-side sync.
func (s *Server) committed(tx *tx) {
	s.fire(tx.commit())
	if len(tx.mail) > 0 || tx.mailboxChanged {
		s.mail.committed(tx.mail, tx.mailboxChanged)
	}
}
