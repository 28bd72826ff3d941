package emulator

import (
	"fmt"
	"html"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// SentEmail is an email handed to server-side sync with SendEmail
// (IssueSend=true), with its delivery state as the sync last left it.
type SentEmail struct {
	ID             string // activityid of the email row
	Subject        string
	HTML           string // the email's description (HTML body)
	Text           string // HTML reduced to text
	To, CC, BCC    []string
	From           string
	RegardingID    string
	RegardingTable string
	SentAt         time.Time // when SendEmail handed it over

	MailboxID string    // sendermailboxid ("" when the sender has no mailbox: it stays Pending Send)
	Status    int       // EmailPendingSend, EmailSending, EmailSent or EmailFailed
	SentOn    time.Time // senton: when the mail server accepted it (Sent only)
	Attempts  int       // deliveryattempts
	Alert     string    // the tracelog alert text that holds or failed it ("" when none)
}

// StatusLabel is the email_statuscode label of Status.
func (e SentEmail) StatusLabel() string {
	switch e.Status {
	case EmailPendingSend:
		return "Pending Send"
	case EmailSending:
		return "Sending"
	case EmailSent:
		return "Sent"
	case EmailFailed:
		return "Failed"
	}
	return fmt.Sprint(e.Status)
}

func (s *Server) whoAmI(req *request) *response {
	req.cost += s.costs.Retrieve
	o := &obj{}
	o.set("@odata.context", req.base+"$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
	o.set("BusinessUnitId", BusinessUnitID)
	o.set("UserId", req.caller.userID)
	o.set("OrganizationId", OrganizationID)
	return jsonResponse(http.StatusOK, appendJSON(nil, o))
}

func (s *Server) serveBoundAction(req *request, t *table, key, action string, rest []string) *response {
	if len(rest) > 0 {
		return errorResponse(errSegment(rest[0]))
	}
	if action != "SendEmail" || t.logical != "email" {
		return errorResponse(errSegment("Microsoft.Dynamics.CRM." + action))
	}
	if req.method != http.MethodPost {
		return errorResponse(errNoResource(req.base + req.path))
	}
	body, err := decodeBody(nil, req.body)
	if err != nil {
		return errorResponse(err)
	}
	issue, ok := body["IssueSend"].(bool)
	if !ok {
		return errorResponse(errBadRequest("Parameter 'IssueSend' of type 'Edm.Boolean' is required for action 'SendEmail'."))
	}
	token, _ := body["TrackingToken"].(string)
	return s.write(req, func(tx *tx) (*response, *apiError) {
		r, _, err := s.findRow(t, key)
		if err == nil && r == nil {
			err = s.notFound(t, key)
		}
		if err != nil {
			return nil, err
		}
		sent, aerr := s.sendEmail(tx, req, r, issue, token)
		if aerr != nil {
			return nil, aerr
		}
		o := &obj{}
		o.set("@odata.context", req.base+"$metadata#Microsoft.Dynamics.CRM.SendEmailResponse")
		o.set("Subject", sent.Subject)
		return jsonResponse(http.StatusOK, appendJSON(nil, o)), nil
	})
}

// sendEmail validates a draft email and hands it over. IssueSend=true moves it
// to Pending Send (6) and into the sender mailbox's queue for the emulated
// server-side sync (mail.go), which moves it on to Sending and Sent or Failed;
// IssueSend=false records it as Sent (3) without delivering it.
func (s *Server) sendEmail(tx *tx, req *request, r *row, issue bool, token string) (SentEmail, *apiError) {
	state, _ := r.vals["statecode"].(int)
	status, _ := r.vals["statuscode"].(int)
	if state != 0 || status != emailStatusDraft {
		return SentEmail{}, newErr(http.StatusBadRequest, codeSendEmailNotDraft, "The e-mail must be in the Draft state in order to be sent. Current state: %d, status: %d.", state, status)
	}
	parties := s.emailParties(r.id)
	var e SentEmail
	var sender ref
	for _, p := range parties {
		switch p.mask {
		case 1:
			e.From, sender = p.address, p.party
		case 2:
			e.To = append(e.To, p.address)
		case 3:
			e.CC = append(e.CC, p.address)
		case 4:
			e.BCC = append(e.BCC, p.address)
		}
	}
	if len(e.To)+len(e.CC)+len(e.BCC) == 0 {
		return SentEmail{}, newErr(http.StatusBadRequest, codeSendEmailNoRecipients, "The e-mail must have at least one recipient before it can be sent.")
	}
	if o, ok := r.vals["ownerid"].(ref); ok {
		if e.From == "" {
			e.From = s.addressOf(o)
		}
		if sender.id == "" {
			sender = o
		}
	}
	subject, _ := r.vals["subject"].(string)
	if token != "" {
		subject = strings.TrimSpace(subject + " " + token)
	}
	e.ID = r.id
	e.Subject = subject
	e.HTML, _ = r.vals["description"].(string)
	e.Text = htmlToText(e.HTML)
	if rg, ok := r.vals["regardingobjectid"].(ref); ok {
		e.RegardingID, e.RegardingTable = rg.id, rg.table
	}
	e.SentAt = tx.now.UTC()
	cols := map[string]any{
		"subject": nilIfEmpty(subject), "sender": nilIfEmpty(e.From), "torecipients": nilIfEmpty(strings.Join(e.To, ";")),
	}
	changed := []string{"statecode", "statuscode"}
	if issue {
		cols["statecode"], cols["statuscode"] = 1, EmailPendingSend
		e.Status = EmailPendingSend
		if mb := s.defaultMailbox(sender); mb != "" {
			e.MailboxID = mb
			cols["sendermailboxid"] = ref{table: "mailbox", id: mb}
			changed = append(changed, "sendermailboxid")
		}
	} else {
		cols["statecode"], cols["statuscode"] = 1, EmailSent
		cols["senton"] = tx.now.UTC().Truncate(time.Second)
		changed = append(changed, "senton")
	}
	if token != "" {
		cols["trackingtoken"] = token
	}
	t := s.reg.tables["email"]
	if err := s.updateValues(tx, req, t, r, cols, changed); err != nil {
		return SentEmail{}, err
	}
	if issue {
		var q *queuedEmail
		if e.MailboxID != "" {
			q = &queuedEmail{id: e.ID, mailbox: e.MailboxID, subject: subject, due: tx.now.Add(s.mail.o.Delay),
				recipients: append(append(append([]string(nil), e.To...), e.CC...), e.BCC...)}
		}
		tx.send(e, q)
	}
	req.cost += s.costs.Action
	return e, nil
}

// defaultMailbox is the mailbox of a sender (systemuser or queue); "" when it
// has none (the caller holds the lock).
func (s *Server) defaultMailbox(p ref) string {
	if p.table != "systemuser" && p.table != "queue" {
		return ""
	}
	r, ok := s.st.data[p.table].rows[p.id]
	if !ok {
		return ""
	}
	if mb, ok := r.vals["defaultmailbox"].(ref); ok {
		return mb.id
	}
	return ""
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

type party struct {
	mask    int
	address string
	party   ref // partyid (zero when the party is an address only)
}

// emailParties reads the activity parties of an activity (caller holds the lock).
func (s *Server) emailParties(activityID string) []party {
	td := s.st.data["activityparty"]
	var rows []*row
	for r := range s.st.index(td, "activityid")[strings.ToLower(activityID)] {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b *row) int { return cmpU(a.seq, b.seq) })
	var out []party
	for _, r := range rows {
		mask, _ := r.vals["participationtypemask"].(int)
		addr, _ := r.vals["addressused"].(string)
		p, _ := r.vals["partyid"].(ref)
		if addr == "" && p.id != "" {
			addr = s.addressOf(p)
		}
		if addr == "" {
			continue
		}
		out = append(out, party{mask: mask, address: addr, party: p})
	}
	return out
}

// addressOf is the primary email address of a party record.
func (s *Server) addressOf(p ref) string {
	td, ok := s.st.data[p.table]
	if !ok {
		return ""
	}
	r, ok := td.rows[p.id]
	if !ok {
		return ""
	}
	for _, col := range []string{"emailaddress1", "internalemailaddress", "emailaddress"} {
		if v, ok := r.vals[col].(string); ok && v != "" {
			return v
		}
	}
	return ""
}

var (
	tagRe   = regexp.MustCompile(`(?s)<[^>]*>`)
	breakRe = regexp.MustCompile(`(?i)<\s*(br|/p|/div|/h[1-6]|/li|/tr)\s*/?>`)
	spaceRe = regexp.MustCompile(`[ \t]+`)
	nlRe    = regexp.MustCompile(`\n{3,}`)
)

func htmlToText(h string) string {
	t := breakRe.ReplaceAllString(h, "\n")
	t = tagRe.ReplaceAllString(t, "")
	t = html.UnescapeString(t)
	t = spaceRe.ReplaceAllString(t, " ")
	lines := strings.Split(t, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.TrimSpace(nlRe.ReplaceAllString(strings.Join(lines, "\n"), "\n\n"))
}

// metadataDocument is a compact CSDL: entity types with keys, properties (every column,
// write-only ones included, lookups as _x_value) and navigation properties, and the
// entity container. schema.Drift compares it with the table reference.
func (s *Server) metadataDocument(req *request) *response {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices><Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">`)
	s.st.mu.RLock() // DefineColumn may add columns concurrently
	defer s.st.mu.RUnlock()
	names := sortedTableNames(s.reg)
	for _, n := range names {
		t := s.reg.tables[n]
		fmt.Fprintf(&b, `<EntityType Name="%s"><Key><PropertyRef Name="%s"/></Key>`, t.logical, t.pk)
		for _, cn := range t.order {
			c := t.columns[cn]
			fmt.Fprintf(&b, `<Property Name="%s" Type="Edm.%s"/>`, propertyName(c), edmType(c))
		}
		for _, nav := range sortedNames(t.navMulti) {
			fmt.Fprintf(&b, `<NavigationProperty Name="%s" Type="mscrm.%s"/>`, nav, t.navMulti[nav][0].navType)
		}
		for _, nav := range sortedNames(t.navColl) {
			fmt.Fprintf(&b, `<NavigationProperty Name="%s" Type="Collection(mscrm.%s)"/>`, nav, t.navColl[nav].from.logical)
		}
		for _, nav := range sortedNames(t.navNN) {
			fmt.Fprintf(&b, `<NavigationProperty Name="%s" Type="Collection(mscrm.%s)"/>`, nav, otherSide(t.navNN[nav], t.logical))
		}
		b.WriteString(`</EntityType>`)
	}
	b.WriteString(`<EntityContainer Name="System">`)
	for _, n := range names {
		t := s.reg.tables[n]
		fmt.Fprintf(&b, `<EntitySet Name="%s" EntityType="Microsoft.Dynamics.CRM.%s"/>`, t.set, t.logical)
	}
	b.WriteString(`</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>`)
	resp := newResponse(http.StatusOK)
	resp.header.Set("Content-Type", "application/xml")
	resp.header.Set("OData-Version", "4.0")
	resp.body = []byte(b.String())
	return resp
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
