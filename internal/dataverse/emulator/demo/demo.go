// Package demo serves the emulator's stand-in for Dynamics 365: a contact list
// with an "Invite to portal" button per contact, and an outbox showing each
// email the organization handed to server-side sync, with its delivery state
// (Pending Send, Sending, Sent, Failed) and the mailbox alert that holds or
// failed it, under the senders' mailboxes and their settings.
//
// The button does what the real one does: it sets the contact's invite
// columns through the Web API, as a CRM user, so the emulator fires the
// registered webhook and the connector takes it from there.
package demo

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

//go:embed templates
var templateFS embed.FS

// Portal is a portal the Invite dialog offers.
type Portal struct {
	Name         string
	Roles        []string
	DefaultRoles []string
}

// Columns are the contact invite columns and their option values (Delivered
// 0: the status has no Delivered option).
type Columns struct {
	Status, Portal, Roles, InvitedOn, Error      string
	Requested, Sent, Failed, Redeemed, Delivered int
	// Resend and Revoke are the values the Resend and Revoke buttons write
	// (0: no such button); Revoked and Expired label the outcomes.
	Resend, Revoke, Revoked, Expired int
}

// Config wires the demo pages to a running emulator.
type Config struct {
	Emulator   *emulator.Server
	APIURL     string       // the emulator's Web API root, ending in /api/data/v9.2/
	HTTPClient *http.Client // trusts the emulator's CA
	ClientID   string       // the application whose token the button uses
	ActAs      string       // systemuserid of the CRM user clicking (MSCRMCallerID)
	ActAsName  string
	Portals    []Portal
	Columns    Columns
	Prefix     string // where the pages are mounted, e.g. "/_demo"
	Logger     *slog.Logger
}

type handler struct {
	cfg   Config
	pages map[string]*template.Template
}

// New returns the demo pages' handler, to be mounted at cfg.Prefix.
func New(cfg Config) (http.Handler, error) {
	if cfg.Emulator == nil || cfg.HTTPClient == nil || cfg.APIURL == "" {
		return nil, fmt.Errorf("demo: Emulator, HTTPClient and APIURL are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{cfg: cfg, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{"join": strings.Join, "has": slices.Contains[[]string]}
	for _, page := range []string{"contacts", "outbox"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("demo: parse %s: %w", page, err)
		}
		h.pages[page] = t
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.contacts)
	mux.HandleFunc("POST /invite", h.invite)
	mux.HandleFunc("POST /resend", h.command)
	mux.HandleFunc("POST /revoke", h.command)
	mux.HandleFunc("GET /outbox", h.outbox)
	mux.HandleFunc("GET /style.css", h.style)
	return http.StripPrefix(cfg.Prefix, http.NewCrossOriginProtection().Handler(mux)), nil
}

type contactRow struct {
	ID, Name, Email, Status, Portal, Roles, InvitedOn, Error string
	CanInvite                                                bool
	CanResend, CanRevoke                                     bool
}

type basePage struct {
	Prefix, Title, Flash, User string
	Refresh                    bool // reload every few seconds (emails on their way)
}

type contactsPage struct {
	basePage
	Contacts []contactRow
	Portals  []Portal
}

func (h *handler) contacts(w http.ResponseWriter, r *http.Request) {
	c := h.cfg.Columns
	var rows []contactRow
	for _, rec := range h.cfg.Emulator.Rows("contact") {
		row := contactRow{
			ID:     str(rec["contactid"]),
			Name:   str(rec["fullname"]),
			Email:  str(rec["emailaddress1"]),
			Portal: str(rec[c.Portal]),
			Roles:  str(rec[c.Roles]),
			Error:  str(rec[c.Error]),
		}
		if t, ok := rec[c.InvitedOn].(time.Time); ok {
			row.InvitedOn = t.Local().Format("Jan 2 15:04")
		} else if s := str(rec[c.InvitedOn]); s != "" {
			row.InvitedOn = s
		}
		row.Status = h.statusLabel(rec[c.Status])
		active := fmt.Sprint(rec["statecode"]) == "0"
		row.CanInvite = row.Email != "" && active
		row.CanResend = row.CanInvite && c.Resend != 0
		// Only rows with the Invite form get the command forms, so the
		// first contact form on the page is always an Invite one.
		row.CanRevoke = row.CanInvite && c.Revoke != 0
		if !active {
			row.Status = "Inactive contact"
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b contactRow) int { return strings.Compare(a.Name, b.Name) })
	h.render(w, "contacts", contactsPage{
		basePage: h.base("Contacts", r.URL.Query().Get("flash")),
		Contacts: rows, Portals: h.cfg.Portals,
	})
}

func (h *handler) statusLabel(v any) string {
	c := h.cfg.Columns
	n, ok := toInt(v)
	if !ok {
		return ""
	}
	switch n {
	case c.Requested:
		return "Requested"
	case c.Sent:
		return "Sent"
	case c.Failed:
		return "Failed"
	case c.Redeemed:
		return "Redeemed"
	}
	if c.Delivered != 0 && n == c.Delivered {
		return "Delivered"
	}
	for _, o := range []struct {
		v     int
		label string
	}{{c.Resend, "Resend requested"}, {c.Revoke, "Revoke requested"}, {c.Revoked, "Revoked"}, {c.Expired, "Expired"}} {
		if o.v != 0 && n == o.v {
			return o.label
		}
	}
	return fmt.Sprint(n)
}

// invite sets the contact's invite columns through the Web API as the CRM
// user, exactly as the button's script does with Xrm.WebApi.updateRecord.
func (h *handler) invite(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get("contact")
	if !guidRe.MatchString(id) {
		http.Error(w, "bad contact id", http.StatusBadRequest)
		return
	}
	portal := r.PostForm.Get("portal")
	roles := r.PostForm["role"]
	var p *Portal
	for i := range h.cfg.Portals {
		if h.cfg.Portals[i].Name == portal {
			p = &h.cfg.Portals[i]
		}
	}
	if p == nil {
		http.Error(w, "unknown portal", http.StatusBadRequest)
		return
	}
	roles = slices.DeleteFunc(roles, func(s string) bool { return !slices.Contains(p.Roles, s) })
	c := h.cfg.Columns
	body := map[string]any{c.Status: c.Requested, c.Portal: portal, c.Error: nil}
	if len(roles) > 0 {
		body[c.Roles] = strings.Join(roles, ",")
	} else {
		body[c.Roles] = nil
	}
	flash := "Invitation requested: the connector will send it in a moment."
	if err := h.patchContact(r.Context(), id, body); err != nil {
		h.cfg.Logger.Error("demo invite", "contact_id", id, "err", err)
		flash = "Could not update the contact: " + err.Error()
	}
	http.Redirect(w, r, h.cfg.Prefix+"/?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

// command is the Resend invitation and Revoke invitation buttons: the
// contact's status column gets the command value through the Web API as
// the CRM user, as the ribbon's script does.
func (h *handler) command(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get("contact")
	if !guidRe.MatchString(id) {
		http.Error(w, "bad contact id", http.StatusBadRequest)
		return
	}
	c := h.cfg.Columns
	value, flash := c.Resend, "Resend requested: the connector sends the invitation again in a moment."
	if strings.HasSuffix(r.URL.Path, "/revoke") {
		value, flash = c.Revoke, "Revoke requested: the connector withdraws the invitation in a moment."
	}
	if value == 0 {
		http.Error(w, "no such command", http.StatusNotFound)
		return
	}
	if err := h.patchContact(r.Context(), id, map[string]any{c.Status: value}); err != nil {
		h.cfg.Logger.Error("demo command", "contact_id", id, "path", r.URL.Path, "err", err)
		flash = "Could not update the contact: " + err.Error()
	}
	http.Redirect(w, r, h.cfg.Prefix+"/?flash="+url.QueryEscape(flash), http.StatusSeeOther)
}

func (h *handler) patchContact(ctx context.Context, id string, body map[string]any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, h.cfg.APIURL+"contacts("+id+")", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.cfg.Emulator.STS().IssueToken(h.cfg.ClientID))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-Version", "4.0")
	req.Header.Set("OData-MaxVersion", "4.0")
	req.Header.Set("If-Match", "*")
	if h.cfg.ActAs != "" {
		req.Header.Set("MSCRMCallerID", h.cfg.ActAs)
	}
	resp, err := h.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("PATCH contacts(%s): %s: %s", id, resp.Status, msg)
	}
	return nil
}

type outboxEmail struct {
	Subject, To, From, SentAt, HTML string
	Links                           []string
	Status, StatusClass             string // "Pending Send", "PendingSend"
	Mailbox, SentOn, Alert          string
	Attempts                        int
}

type outboxMailbox struct {
	Name, Address, Approval, Outgoing, Enabled, LastResult string
	Ready                                                  bool
}

type outboxPage struct {
	basePage
	Emails    []outboxEmail
	Mailboxes []outboxMailbox
}

var linkRe = regexp.MustCompile(`href="([^"]+)"`)

// Mailbox option labels (mailbox.emailrouteraccessapproval,
// outgoingemaildeliverymethod, outgoingemailstatus).
var (
	approvalLabels = map[int]string{emulator.ApprovalEmpty: "Empty", emulator.ApprovalApproved: "Approved", emulator.ApprovalPending: "Pending Approval", emulator.ApprovalRejected: "Rejected"}
	outgoingLabels = map[int]string{emulator.OutgoingNone: "None", emulator.OutgoingOutlook: "Microsoft Dynamics 365 for Outlook", emulator.OutgoingServerSideSync: "Server-Side Synchronization"}
	resultLabels   = map[int]string{0: "Not Run", 1: "Success", 2: "Failure"}
)

func (h *handler) outbox(w http.ResponseWriter, r *http.Request) {
	names := map[string]string{}
	var mailboxes []outboxMailbox
	for _, m := range h.cfg.Emulator.Rows("mailbox") {
		names[str(m["mailboxid"])] = str(m["name"])
		if str(m["emailaddress"]) == "" {
			continue // application users have no mailbox address
		}
		approval, _ := toInt(m["emailrouteraccessapproval"])
		outgoing, _ := toInt(m["outgoingemaildeliverymethod"])
		result, _ := toInt(m["outgoingemailstatus"])
		state, _ := toInt(m["statecode"])
		enabled := m["enabledforoutgoingemail"] == true && state == 0
		mb := outboxMailbox{Name: str(m["name"]), Address: str(m["emailaddress"]), Approval: approvalLabels[approval],
			Outgoing: outgoingLabels[outgoing], Enabled: "No", LastResult: resultLabels[result],
			Ready: enabled && approval == emulator.ApprovalApproved && outgoing == emulator.OutgoingServerSideSync && m["isemailaddressapprovedbyo365admin"] == true}
		if enabled {
			mb.Enabled = "Yes"
		}
		mailboxes = append(mailboxes, mb)
	}
	slices.SortFunc(mailboxes, func(a, b outboxMailbox) int { return strings.Compare(a.Name, b.Name) })
	var emails []outboxEmail
	refresh := false
	sent := h.cfg.Emulator.Outbox()
	for i := len(sent) - 1; i >= 0; i-- {
		m := sent[i]
		e := outboxEmail{Subject: m.Subject, To: strings.Join(m.To, ", "), From: m.From, SentAt: m.SentAt.Local().Format("15:04:05"), HTML: m.HTML,
			Status: m.StatusLabel(), StatusClass: strings.ReplaceAll(m.StatusLabel(), " ", ""), Mailbox: names[m.MailboxID],
			Alert: m.Alert, Attempts: m.Attempts}
		if !m.SentOn.IsZero() {
			e.SentOn = m.SentOn.Local().Format("15:04:05")
		}
		if (m.Status == emulator.EmailPendingSend || m.Status == emulator.EmailSending) && m.Alert == "" && m.MailboxID != "" {
			refresh = true
		}
		for _, l := range linkRe.FindAllStringSubmatch(m.HTML, -1) {
			link := html.UnescapeString(l[1])
			if strings.HasPrefix(link, "http") && !slices.Contains(e.Links, link) {
				e.Links = append(e.Links, link)
			}
		}
		emails = append(emails, e)
	}
	base := h.base("Outbox", "")
	base.Refresh = refresh
	h.render(w, "outbox", outboxPage{basePage: base, Emails: emails, Mailboxes: mailboxes})
}

func (h *handler) base(title, flash string) basePage {
	return basePage{Prefix: h.cfg.Prefix, Title: title, Flash: flash, User: h.cfg.ActAsName}
}

func (h *handler) render(w http.ResponseWriter, page string, data any) {
	var buf bytes.Buffer
	if err := h.pages[page].Execute(&buf, data); err != nil {
		h.cfg.Logger.Error("demo render", "page", page, "err", err)
		http.Error(w, "render failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-src 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = buf.WriteTo(w)
}

func (h *handler) style(w http.ResponseWriter, _ *http.Request) {
	b, _ := templateFS.ReadFile("templates/style.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write(b)
}

var guidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func str(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), true
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	}
	return 0, false
}
