package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
)

// Email statuscode values (email_statuscode). Pending Send and Sending
// already have statecode 1 (Completed), so statecode says nothing about
// delivery; Failed goes back to statecode 0.
const (
	EmailDraft       = 1
	EmailCompleted   = 2
	EmailSent        = 3
	EmailReceived    = 4
	EmailCanceled    = 5
	EmailPendingSend = 6
	EmailSending     = 7
	EmailFailed      = 8
)

// Mailbox column values.
const (
	ApprovalEmpty    = 0 // emailrouteraccessapproval
	ApprovalApproved = 1
	ApprovalPending  = 2
	ApprovalRejected = 3

	OutgoingNone    = 0 // outgoingemaildeliverymethod
	OutgoingOutlook = 1
	OutgoingSSS     = 2 // Server-Side Synchronization or Email Router

	TestNotRun  = 0 // outgoingemailstatus
	TestSuccess = 1
	TestFailure = 2
)

// Reader is the part of the Web API client that reads mailboxes and alerts.
type Reader interface {
	Retrieve(ctx context.Context, set, id string, q *dataverse.Query) (dataverse.Record, error)
	QueryPage(ctx context.Context, set string, q *dataverse.Query, nextLink string) (*dataverse.Page, error)
}

var mailboxColumns = []string{"mailboxid", "name", "emailaddress", "emailrouteraccessapproval", "isemailaddressapprovedbyo365admin",
	"outgoingemaildeliverymethod", "enabledforoutgoingemail", "outgoingemailstatus", "testemailconfigurationscheduled",
	"testmailboxaccesscompletedon", "statecode"}

// Mailbox is the sender's mailbox as `connector check` and the follower
// read it.
type Mailbox struct {
	ID, Name, Address  string
	Approval           int  // emailrouteraccessapproval
	ApprovedByO365     bool // isemailaddressapprovedbyo365admin
	OutgoingMethod     int  // outgoingemaildeliverymethod
	EnabledForOutgoing bool // enabledforoutgoingemail
	OutgoingStatus     int  // outgoingemailstatus: result of the last test or processing
	TestScheduled      bool // testemailconfigurationscheduled
	TestCompletedOn    time.Time
	Active             bool // statecode 0
}

// FindMailbox reads the mailbox of a sender ("systemusers" or "queues" and
// its id). It returns nil when the sender has none.
func FindMailbox(ctx context.Context, dv Reader, senderTable, senderID string) (*Mailbox, error) {
	page, err := dv.QueryPage(ctx, "mailboxes", &dataverse.Query{
		Select: mailboxColumns,
		Filter: "_regardingobjectid_value eq " + senderID,
		Top:    1,
	}, "")
	if err != nil {
		return nil, fmt.Errorf("mailbox of %s %s: %w", strings.TrimSuffix(senderTable, "s"), senderID, err)
	}
	if len(page.Records) == 0 {
		return nil, nil
	}
	return toMailbox(page.Records[0]), nil
}

func readMailbox(ctx context.Context, dv Reader, id string) (*Mailbox, error) {
	r, err := dv.Retrieve(ctx, "mailboxes", id, &dataverse.Query{Select: mailboxColumns})
	if err != nil {
		return nil, fmt.Errorf("mailbox %s: %w", id, err)
	}
	return toMailbox(r), nil
}

func toMailbox(r dataverse.Record) *Mailbox {
	return &Mailbox{
		ID: strings.ToLower(r.Str("mailboxid")), Name: r.Str("name"), Address: r.Str("emailaddress"),
		Approval: r.Int("emailrouteraccessapproval"), ApprovedByO365: r.Bool("isemailaddressapprovedbyo365admin"),
		OutgoingMethod: r.Int("outgoingemaildeliverymethod"), EnabledForOutgoing: r.Bool("enabledforoutgoingemail"),
		OutgoingStatus: r.Int("outgoingemailstatus"), TestScheduled: r.Bool("testemailconfigurationscheduled"),
		TestCompletedOn: r.Time("testmailboxaccesscompletedon"), Active: r.Int("statecode") == 0,
	}
}

// Label names the mailbox for people: "name <address>", or its id.
func (m *Mailbox) Label() string {
	switch {
	case m == nil:
		return "(none)"
	case m.Name != "" && m.Address != "" && !strings.EqualFold(m.Name, m.Address):
		return m.Name + " <" + m.Address + ">"
	case m.Name != "":
		return m.Name
	case m.Address != "":
		return m.Address
	}
	return m.ID
}

// MailboxItem is one line of a mailbox check: what was checked, whether it
// holds, and for a failure the fix in the Power Platform admin center.
type MailboxItem struct {
	What string
	OK   bool
	Fix  string
}

const mailboxesPath = "Power Platform admin center → Environments → <environment> → Settings → Email → Mailboxes → Active Mailboxes → "

// Check lists what server-side sync needs from the mailbox to send: the
// address approved, outgoing email through server-side sync, the mailbox
// active and enabled for outgoing email, and the last test passed.
func (m *Mailbox) Check() []MailboxItem {
	open := mailboxesPath + "open " + m.Label()
	approval := map[int]string{ApprovalEmpty: "empty", ApprovalApproved: "approved", ApprovalPending: "pending approval", ApprovalRejected: "rejected"}[m.Approval]
	if approval == "" {
		approval = fmt.Sprint(m.Approval)
	}
	method := map[int]string{OutgoingNone: "none", OutgoingOutlook: "Dynamics 365 for Outlook", OutgoingSSS: "server-side synchronization"}[m.OutgoingMethod]
	if method == "" {
		method = fmt.Sprint(m.OutgoingMethod)
	}
	test := map[int]string{TestNotRun: "not run", TestSuccess: "success", TestFailure: "failure"}[m.OutgoingStatus]
	if test == "" {
		test = fmt.Sprint(m.OutgoingStatus)
	}
	if !m.TestCompletedOn.IsZero() {
		test += " (" + m.TestCompletedOn.UTC().Format("2006-01-02 15:04 MST") + ")"
	}
	return []MailboxItem{
		{What: "email address approved (emailrouteraccessapproval: " + approval + ")", OK: m.Approval == ApprovalApproved,
			Fix: open + ", select Approve Email (an Exchange or Global admin who is also a System Administrator), then Test & Enable Mailbox"},
		{What: "outgoing email through server-side synchronization (outgoingemaildeliverymethod: " + method + ")", OK: m.OutgoingMethod == OutgoingSSS,
			Fix: open + ", set Outgoing Email to Server-Side Synchronization or Email Router, save, then Test & Enable Mailbox"},
		{What: "mailbox active", OK: m.Active, Fix: open + " (it is under Inactive Mailboxes) and activate it"},
		{What: "enabled for outgoing email (enabledforoutgoingemail)", OK: m.EnabledForOutgoing,
			Fix: open + ", select Test & Enable Mailbox and read its Alerts if the test fails"},
		{What: "last outgoing test: " + test, OK: m.OutgoingStatus == TestSuccess,
			Fix: open + ", select Test & Enable Mailbox and fix what its Alerts name"},
	}
}

// Alert is one server-side sync alert (a tracelog row) of a mailbox.
type Alert struct {
	Level int // 1 Information, 2 Warning, 3 Error
	Text  string
	At    time.Time // modifiedon: repeated alerts update the same row
}

// ErrAlertsUnreadable is returned by Alerts when the application user may
// not read trace logs (prvReadTraceLog) or mailboxes (prvReadMailbox).
var ErrAlertsUnreadable = errors.New("the mailbox's alerts cannot be read (the connector's role needs prvReadMailbox and prvReadTraceLog)")

// Alerts reads the newest warning and error alerts of a mailbox, newest first.
func Alerts(ctx context.Context, dv Reader, mailboxID string, n int) ([]Alert, error) {
	page, err := dv.QueryPage(ctx, "tracelogs", &dataverse.Query{
		Select:  []string{"text", "level", "modifiedon", "createdon"},
		Filter:  "_regardingobjectid_value eq " + mailboxID + " and level ge 2",
		OrderBy: []string{"modifiedon desc"},
		Top:     n,
	}, "")
	if err != nil {
		if forbidden(err) {
			return nil, fmt.Errorf("alerts of mailbox %s: %w: %w", mailboxID, ErrAlertsUnreadable, err)
		}
		return nil, fmt.Errorf("alerts of mailbox %s: %w", mailboxID, err)
	}
	out := make([]Alert, 0, len(page.Records))
	for _, r := range page.Records {
		at := r.Time("modifiedon")
		if at.IsZero() {
			at = r.Time("createdon")
		}
		out = append(out, Alert{Level: r.Int("level"), Text: strings.TrimSpace(r.Str("text")), At: at})
	}
	return out, nil
}

// forbidden reports a missing privilege (403) or a 401.
func forbidden(err error) bool {
	var e *dataverse.Error
	return errors.As(err, &e) && (e.StatusCode == http.StatusForbidden || e.StatusCode == http.StatusUnauthorized)
}
