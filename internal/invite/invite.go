package invite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
)

// InviteRequest asks for a contact to be invited to a portal.
type InviteRequest struct {
	ContactID string
	Portal    string   // configured portal name
	Roles     []string // web role names; empty means the portal's DefaultRoles
	// ExpiresAt overrides the portal's ExpiresAfter; zero means the default.
	ExpiresAt time.Time
	// InitiatingUserID is the CRM user (systemuserid) who asked; when set it
	// owns the invitation and can be the email sender (initiating_user).
	InitiatingUserID string
	Source           string // where the request came from (webhook, poll, cli, register, api), for logs
	// Sender overrides the portal's email.sender: the mailbox the pacer
	// reserved for this email (systemuser:<guid> or queue:<guid>).
	Sender string
	// Contact is the contact as ReadContact returned it, read by the caller
	// under its per-contact lock; nil makes Invite read it. Passing it saves
	// a request per invitation.
	Contact dataverse.Record
}

// InviteResult is the outcome of Invite or Resend.
type InviteResult struct {
	Invitation *Invitation
	// Code is the code emailed by this call; "" when no email was sent
	// (reuse) and the row stores only a hash.
	Code Code
	// Link is the redemption link emailed by this call ("" when none).
	Link    string
	Created bool // a new adx_invitation row was created
	Reused  bool // an open invitation already existed and was kept
	// EmailSent: an email activity was handed over: sent with SendEmail
	// (ChannelDataverse), or created as a draft for the SMTP channel to
	// submit (ChannelSMTP). Either way the contact shows Sent until the
	// delivery outcome is known.
	EmailSent bool
	EmailID   string
	Channel   string // the portal's email channel
}

// Invite invites a contact: it reuses the contact's open invitation for the
// portal when there is one (no second email), otherwise it creates the
// adx_invitation with its web roles and the email activity in one request
// and sends the email in the same transaction, then records the outcome on
// the contact. Calls for one contact and portal are serialised with
// Config.Locker, so retries and concurrent callers never create a second
// invitation.
//
// Contacts that cannot be invited get Failed and the reason written back and
// a permanent error: ErrUnknownPortal, ErrUnknownRole, ErrNoEmail,
// ErrInactiveContact, ErrAlreadyPortalUser (status Redeemed). ErrNotFound
// when the contact does not exist. Dataverse failures are returned wrapped
// (not permanent) and not written back; sync retries them and finally calls
// MarkFailed.
func (s *Service) Invite(ctx context.Context, req InviteRequest) (*InviteResult, error) {
	id, ok := normalizeGUID(req.ContactID)
	if !ok {
		return nil, fmt.Errorf("invite contact %q: %w", req.ContactID, ErrNotFound)
	}
	pc, err := s.portal(req.Portal)
	if err != nil {
		s.writeFailure(ctx, id, req.Portal, err)
		return nil, fmt.Errorf("invite contact %s: %w", id, err)
	}
	unlock, err := s.locker.Lock(ctx, "invite:"+id+":"+strings.ToLower(pc.Name), s.cfg.LockTTL)
	if err != nil {
		return nil, fmt.Errorf("invite contact %s: lock: %w", id, err)
	}
	defer unlock()
	res, err := s.invite(ctx, pc, id, req)
	if err != nil {
		if errors.Is(err, ErrAlreadyPortalUser) {
			s.writeBack(ctx, id, map[string]any{s.cols.Status: s.cols.Redeemed, s.cols.Portal: pc.Name,
				s.cols.Error: "Already a portal user: no invitation was sent."})
		} else if IsPermanent(err) && !errors.Is(err, ErrNotFound) {
			s.writeFailure(ctx, id, pc.Name, err)
		}
		s.log.WarnContext(ctx, "invite failed", "contact", id, "portal", pc.Name, "source", req.Source, "err", err)
		return nil, fmt.Errorf("invite contact %s to %s: %w", id, pc.Name, err)
	}
	s.log.InfoContext(ctx, "invited", "contact", id, "portal", pc.Name, "source", req.Source,
		"invitation", res.Invitation.ID, "created", res.Created, "reused", res.Reused, "email_sent", res.EmailSent)
	return res, nil
}

func (s *Service) invite(ctx context.Context, pc *portalConf, contactID string, req InviteRequest) (*InviteResult, error) {
	m := pc.model
	// One read: the contact and its open invitations to this website.
	contact := req.Contact
	if contact == nil {
		invFilter := "statecode eq 0 and " + m.websiteValue + " eq " + pc.WebsiteID
		var err error
		contact, err = s.dv.Retrieve(ctx, "contacts", contactID, &dataverse.Query{
			Select: append(slices.Clone(contactSelect), s.cols.Status, s.cols.Portal),
			Expand: []string{"adx_invitation_invitecontact($select=" + strings.Join(s.invitationSelect(), ",") +
				";$filter=" + invFilter + ";$orderby=createdon desc)"},
		})
		if err != nil {
			if dataverse.IsNotFound(err) {
				return nil, fmt.Errorf("contact %s: %w", contactID, ErrNotFound)
			}
			return nil, fmt.Errorf("read contact: %w", err)
		}
	}
	sender := pc.sender
	if req.Sender != "" {
		var err error
		if sender, err = parseSender(req.Sender); err != nil || sender.initiatingUser {
			return nil, fmt.Errorf("reserved sender %q is not a mailbox (want systemuser:<guid> or queue:<guid>)", req.Sender)
		}
	}
	switch {
	case contact.Int("statecode") != contactStateActive:
		return nil, ErrInactiveContact
	case strings.TrimSpace(contact.Str("emailaddress1")) == "":
		return nil, ErrNoEmail
	case hasIdentity(contact):
		return nil, ErrAlreadyPortalUser
	}
	names := req.Roles
	if len(names) == 0 {
		names = pc.DefaultRoles
	}
	roles, err := s.roles.resolve(ctx, m, pc.WebsiteID, names)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var open *Invitation
	if list, ok := contact["adx_invitation_invitecontact"].([]any); ok {
		for _, x := range list {
			rec, ok := x.(map[string]any)
			if !ok {
				continue
			}
			inv := s.toInvitation(rec)
			if inv.WebsiteID == pc.WebsiteID && inv.Open(now) {
				open = inv
				break
			}
		}
	}
	if open != nil && open.StatusCode == invStatusSent {
		// An email that failed, or was canceled, did not go out: a new click
		// sends a fresh one for the same invitation (below).
		undelivered, err := s.lastEmailUndelivered(ctx, open.ID)
		if err != nil {
			return nil, err
		}
		if undelivered {
			open.StatusCode = invStatusNew
		}
	}
	if open != nil && open.StatusCode == invStatusSent {
		// Reuse: the email went out already, or is on its way; Resend is
		// the explicit way to send it again.
		if contact.Int(s.cols.Status) != s.cols.Sent || !strings.EqualFold(contact.Str(s.cols.Portal), pc.Name) {
			s.writeBack(ctx, contactID, s.sentColumns(pc, roleNames(roles), open.CreatedOn))
		}
		open.ContactName, open.ContactEmail = contact.Str("fullname"), contact.Str("emailaddress1")
		return &InviteResult{Invitation: open, Reused: true}, nil
	}
	code, err := NewCode()
	if err != nil {
		return nil, err
	}
	expires := req.ExpiresAt
	if expires.IsZero() && pc.ExpiresAfter > 0 {
		expires = now.Add(pc.ExpiresAfter)
	}
	link := actionLink(pc.BaseURL, InvitationPath, "code", string(code))
	rendered, err := pc.email.render(EmailData{
		FirstName: contact.Str("firstname"), LastName: contact.Str("lastname"), FullName: contact.Str("fullname"),
		Email: contact.Str("emailaddress1"), PortalName: pc.Name, BaseURL: pc.BaseURL, Link: link,
		Code: string(code), GroupedCode: code.Grouped(), ExpiresAt: expires, Expires: formatExpiry(expires),
		Roles: roleNames(roles),
	})
	if err != nil {
		return nil, fmt.Errorf("render invitation email: %w", err)
	}
	emailID := dataverse.NewGUID()
	email := s.emailRecord(emailID, rendered, sender, req.InitiatingUserID, contactID)
	var ops []dataverse.BatchOp
	var inv *Invitation
	created := false
	if open != nil {
		// An open invitation nobody emailed (created in Portal Management,
		// or by a run that failed before sending): give it a fresh code,
		// which hashed storage needs anyway, and send it.
		inv = open
		email["regardingobjectid_adx_invitation_email@odata.bind"] = "/adx_invitations(" + inv.ID + ")"
		patch := map[string]any{"adx_invitationcode": storedCode(code, pc.CodeStorage)}
		if !pc.viaSMTP() {
			patch["statuscode"] = invStatusSent
		}
		if !expires.IsZero() {
			patch["adx_expirydate"] = odataTime(expires)
		}
		ops = append(ops, dataverse.BatchOp{Method: http.MethodPost, Path: "emails", Body: email})
		ops = append(ops, pc.sendOps(emailID)...)
		ops = append(ops, dataverse.BatchOp{Method: http.MethodPatch, Path: "adx_invitations(" + inv.ID + ")", Body: patch, Headers: ifMatch("*")})
		if !pc.viaSMTP() {
			inv.StatusCode, inv.Status = invStatusSent, StatusSent
		}
	} else {
		invID := dataverse.NewGUID()
		body := s.invitationRecord(invID, pc, contact, code, expires, roles, req.InitiatingUserID)
		// Deep insert: the email (with its parties) is created regarding the
		// new invitation in the same request. The row is created as Sent:
		// SendEmail runs in the same transaction, so if it fails there is no
		// invitation at all, and a committed row always had its email sent.
		// With the SMTP channel the row stays New (and the email a draft)
		// until the server accepts the message; a later click then finds an
		// invitation nobody emailed and sends it afresh.
		body["adx_invitation_Emails"] = []any{email}
		status, statusName := invStatusSent, StatusSent
		if pc.viaSMTP() {
			status, statusName = invStatusNew, StatusNew
		}
		body["statuscode"] = status
		ops = append(ops, dataverse.BatchOp{Method: http.MethodPost, Path: "adx_invitations", Body: body})
		ops = append(ops, pc.sendOps(emailID)...)
		inv = &Invitation{ID: invID, Name: body["adx_name"].(string), Portal: pc.Name, WebsiteID: pc.WebsiteID,
			Type: TypeSingle, Status: statusName, StatusCode: status, ExpiresAt: expires,
			MaxRedemptions: pc.MaxRedemptions, ContactID: contactID, OwnerID: req.InitiatingUserID, CreatedOn: now}
		if pc.MaxRedemptions > 1 {
			inv.Type = TypeGroup
		}
		for _, r := range roles {
			inv.RoleIDs = append(inv.RoleIDs, r.ID)
			inv.Roles = append(inv.Roles, r.Name)
		}
		if pc.CodeStorage == CodePlain {
			inv.Code = string(code)
		}
		created = true
	}
	ops = append(ops, dataverse.BatchOp{Method: http.MethodPatch, Path: "contacts(" + contactID + ")",
		Body: s.sentColumns(pc, roleNames(roles), now), Headers: ifMatch("*")})
	if _, err := s.changeSet(ctx, "create and send invitation", ops); err != nil {
		return nil, err
	}
	inv.ContactFirstName, inv.ContactLastName = contact.Str("firstname"), contact.Str("lastname")
	inv.ContactName, inv.ContactEmail = contact.Str("fullname"), contact.Str("emailaddress1")
	return &InviteResult{Invitation: inv, Code: code, Link: link, Created: created, EmailSent: true, EmailID: emailID,
		Channel: pc.Email.Channel}, nil
}

// invitationRecord is the adx_invitation create body with the web roles
// bound through the data model's N:N navigation property.
func (s *Service) invitationRecord(id string, pc *portalConf, contact dataverse.Record, code Code, expires time.Time, roles []role, owner string) map[string]any {
	m := pc.model
	name := strings.TrimSpace(contact.Str("fullname"))
	if name == "" {
		name = contact.Str("emailaddress1")
	}
	body := map[string]any{
		"adx_invitationid":             id,
		"adx_name":                     truncate(pc.Name+" invitation for "+name, 200),
		"adx_type":                     invTypeSingle,
		"adx_invitationcode":           storedCode(code, pc.CodeStorage),
		"adx_maximumredemptions":       pc.MaxRedemptions,
		"adx_redemptions":              0,
		"adx_inviteContact@odata.bind": "/contacts(" + contact.Str("contactid") + ")",
		m.websiteNav + "@odata.bind":   "/" + m.websiteSet + "(" + pc.WebsiteID + ")",
	}
	if pc.MaxRedemptions > 1 {
		body["adx_type"] = invTypeGroup
	}
	if !expires.IsZero() {
		body["adx_expirydate"] = odataTime(expires)
	}
	if owner != "" {
		if id, ok := normalizeGUID(owner); ok {
			// adx_invitation is not an activity: its owner navigation is ownerid.
			body["ownerid@odata.bind"] = "/systemusers(" + id + ")"
		}
	}
	if len(roles) > 0 {
		binds := make([]string, len(roles))
		for i, r := range roles {
			binds[i] = "/" + m.roleSet + "(" + r.ID + ")"
		}
		body[m.invRoles+"@odata.bind"] = binds
	}
	return body
}

// emailRecord is an outgoing email activity body with its parties.
func (s *Service) emailRecord(id string, r RenderedEmail, sender party, initiatingUser, toContact string) map[string]any {
	parties := []any{map[string]any{"participationtypemask": partyTo, "partyid_contact@odata.bind": "/contacts(" + toContact + ")"}}
	from := sender
	if sender.initiatingUser {
		from = party{}
		if id, ok := normalizeGUID(initiatingUser); ok {
			from = party{set: "systemusers", id: id}
		}
	}
	if from.set != "" {
		nav := "partyid_systemuser@odata.bind"
		if from.set == "queues" {
			nav = "partyid_queue@odata.bind"
		}
		parties = append([]any{map[string]any{"participationtypemask": partySender, nav: "/" + from.set + "(" + from.id + ")"}}, parties...)
	}
	body := map[string]any{
		"activityid":             id,
		"subject":                truncate(r.Subject, 800),
		"description":            r.HTML,
		"directioncode":          true,
		"email_activity_parties": parties,
	}
	if uid, ok := normalizeGUID(initiatingUser); ok {
		// Activities name their single-valued navigation properties after the
		// table: the email's owner is ownerid_email (ownerid is refused).
		body["ownerid_email@odata.bind"] = "/systemusers(" + uid + ")"
	}
	return body
}

func sendEmailOp(emailID string) dataverse.BatchOp {
	return dataverse.BatchOp{Method: http.MethodPost, Path: "emails(" + emailID + ")/Microsoft.Dynamics.CRM.SendEmail",
		Body: map[string]any{"IssueSend": true, "TrackingToken": ""}}
}

// viaSMTP reports whether the portal's emails leave through the SMTP channel.
func (pc *portalConf) viaSMTP() bool { return pc.Email.Channel == ChannelSMTP }

// sendOps hand a new email activity over: SendEmail with IssueSend=true for
// server-side sync; nothing for the SMTP channel, which submits the draft
// itself and then records it with SendEmail(IssueSend=false).
func (pc *portalConf) sendOps(emailID string) []dataverse.BatchOp {
	if pc.viaSMTP() {
		return nil
	}
	return []dataverse.BatchOp{sendEmailOp(emailID)}
}

func ifMatch(v string) http.Header { return http.Header{"If-Match": {v}} }

func roleNames(roles []role) []string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = r.Name
	}
	return out
}

func (s *Service) sentColumns(pc *portalConf, roles []string, when time.Time) map[string]any {
	return map[string]any{
		s.cols.Status: s.cols.Sent, s.cols.Portal: pc.Name, s.cols.Roles: truncate(strings.Join(roles, ", "), 1000),
		s.cols.InvitedOn: odataTime(when), s.cols.Error: nil,
	}
}

// changeSet runs ops as one atomic change set in one $batch request.
func (s *Service) changeSet(ctx context.Context, op string, ops []dataverse.BatchOp) ([]dataverse.BatchResult, error) {
	res, err := s.dv.Batch(ctx, &dataverse.BatchRequest{Parts: []dataverse.BatchPart{{ChangeSet: ops}}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := dataverse.FirstError(res); err != nil {
		return res, fmt.Errorf("%s: %w", op, err)
	}
	return res, nil
}

// writeFailure records a permanent failure on the contact (best effort).
func (s *Service) writeFailure(ctx context.Context, contactID, portal string, cause error) {
	cols := map[string]any{s.cols.Status: s.cols.Failed, s.cols.Error: truncate(failureReason(cause), 2000)}
	if portal != "" {
		cols[s.cols.Portal] = truncate(portal, 100)
	}
	s.writeBack(ctx, contactID, cols)
}

// writeBack patches the contact's invite columns; failures are logged, not
// returned, because the invitation outcome stands either way.
func (s *Service) writeBack(ctx context.Context, contactID string, cols map[string]any) {
	if _, err := s.dv.Update(ctx, "contacts", contactID, cols, &dataverse.WriteOptions{IfMatch: "*"}); err != nil {
		s.log.WarnContext(ctx, "write invite status to contact", "contact", contactID, "err", err)
	}
}

// failureReason turns an error into the sentence CRM users see on the contact.
func failureReason(err error) string {
	switch {
	case errors.Is(err, ErrNoEmail):
		return "The contact has no email address (emailaddress1)."
	case errors.Is(err, ErrInactiveContact):
		return "The contact is inactive."
	case errors.Is(err, ErrAlreadyPortalUser):
		return "Already a portal user: no invitation was sent."
	case errors.Is(err, ErrUnknownPortal), errors.Is(err, ErrUnknownRole):
		return capitalise(strings.TrimPrefix(err.Error(), "invite: ")) + "."
	}
	return capitalise(err.Error())
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// MarkFailed records Failed and reason on the contact: sync calls it when
// it gives up on a request (its dead letter).
func (s *Service) MarkFailed(ctx context.Context, contactID, reason string) error {
	id, ok := normalizeGUID(contactID)
	if !ok {
		return fmt.Errorf("mark failed %q: %w", contactID, ErrNotFound)
	}
	_, err := s.dv.Update(ctx, "contacts", id, map[string]any{s.cols.Status: s.cols.Failed,
		s.cols.Error: truncate(reason, 2000)}, &dataverse.WriteOptions{IfMatch: "*"})
	if err != nil {
		if dataverse.IsNotFound(err) {
			return fmt.Errorf("mark failed %s: %w", id, ErrNotFound)
		}
		return fmt.Errorf("mark failed %s: %w", id, err)
	}
	return nil
}

// Resend sends the invitation email again and records it. The code is kept
// when the row stores it in plain form and it has not expired; otherwise a
// new code is issued (hashed rows cannot reveal the old one) and an expired
// invitation gets a new expiry. Errors: ErrNotFound, ErrCodeRevoked,
// ErrCodeUsedUp, ErrUnknownPortal (website not configured), ErrNoEmail.
func (s *Service) Resend(ctx context.Context, invitationID string) (*InviteResult, error) {
	return s.resend(ctx, invitationID, "*")
}

// resend writes the contact only while its row version is still
// contactETag ("*": any version).
func (s *Service) resend(ctx context.Context, invitationID, contactETag string) (*InviteResult, error) {
	id, ok := normalizeGUID(invitationID)
	if !ok {
		return nil, fmt.Errorf("resend invitation %q: %w", invitationID, ErrNotFound)
	}
	inv, err := s.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("resend: %w", err)
	}
	pc := s.portalForWebsite(inv.WebsiteID)
	if pc == nil {
		return nil, fmt.Errorf("resend invitation %s: website %s: %w", id, inv.WebsiteID, ErrUnknownPortal)
	}
	if inv.ContactID != "" {
		unlock, err := s.locker.Lock(ctx, "invite:"+inv.ContactID+":"+strings.ToLower(pc.Name), s.cfg.LockTTL)
		if err != nil {
			return nil, fmt.Errorf("resend invitation %s: lock: %w", id, err)
		}
		defer unlock()
		if inv, err = s.Get(ctx, id); err != nil { // state may have moved while we waited
			return nil, fmt.Errorf("resend: %w", err)
		}
	}
	now := s.now()
	switch {
	case inv.StateCode != invStateActive:
		return nil, fmt.Errorf("resend invitation %s: %w", id, ErrCodeRevoked)
	case inv.usedUp():
		return nil, fmt.Errorf("resend invitation %s: %w", id, ErrCodeUsedUp)
	case inv.ContactID == "" || inv.ContactEmail == "":
		return nil, fmt.Errorf("resend invitation %s: %w", id, ErrNoEmail)
	}
	patch := map[string]any{}
	if !pc.viaSMTP() {
		patch["statuscode"] = invStatusSent
	}
	var code Code
	if c, ok := NormalizeCode(inv.Code); ok && pc.CodeStorage == CodePlain && !inv.expired(now) && Code(inv.Code) == c {
		code = c
	} else {
		if code, err = NewCode(); err != nil {
			return nil, err
		}
		patch["adx_invitationcode"] = storedCode(code, pc.CodeStorage)
	}
	expires := inv.ExpiresAt
	if inv.expired(now) {
		expires = now.Add(max(pc.ExpiresAfter, 24*time.Hour))
		patch["adx_expirydate"] = odataTime(expires)
	}
	link := actionLink(pc.BaseURL, InvitationPath, "code", string(code))
	rendered, err := pc.email.render(EmailData{
		FirstName: inv.ContactFirstName, LastName: inv.ContactLastName, FullName: inv.ContactName, Email: inv.ContactEmail,
		PortalName: pc.Name, BaseURL: pc.BaseURL, Link: link, Code: string(code), GroupedCode: code.Grouped(),
		ExpiresAt: expires, Expires: formatExpiry(expires), Roles: inv.Roles,
	})
	if err != nil {
		return nil, fmt.Errorf("render invitation email: %w", err)
	}
	emailID := dataverse.NewGUID()
	email := s.emailRecord(emailID, rendered, pc.sender, inv.OwnerID, inv.ContactID)
	email["regardingobjectid_adx_invitation_email@odata.bind"] = "/adx_invitations(" + id + ")"
	ops := []dataverse.BatchOp{{Method: http.MethodPost, Path: "emails", Body: email}}
	ops = append(ops, pc.sendOps(emailID)...)
	if len(patch) > 0 {
		ops = append(ops, dataverse.BatchOp{Method: http.MethodPatch, Path: "adx_invitations(" + id + ")", Body: patch, Headers: ifMatch("*")})
	}
	ops = append(ops, dataverse.BatchOp{Method: http.MethodPatch, Path: "contacts(" + inv.ContactID + ")", Body: s.sentColumns(pc, inv.Roles, now), Headers: ifMatch(contactETag)})
	if _, err := s.changeSet(ctx, "resend invitation", ops); err != nil {
		return nil, contactChanged(err, contactETag)
	}
	if patch["adx_invitationcode"] != nil {
		s.rememberSuperseded(ctx, inv.storedCode, inv.ExpiresAt)
	}
	if !pc.viaSMTP() {
		inv.StatusCode, inv.Status = invStatusSent, StatusSent
	}
	inv.ExpiresAt = expires
	if pc.CodeStorage == CodePlain {
		inv.Code = string(code)
	}
	s.log.InfoContext(ctx, "invitation resent", "invitation", id, "contact", inv.ContactID, "new_code", patch["adx_invitationcode"] != nil)
	return &InviteResult{Invitation: inv, Code: code, Link: link, EmailSent: true, EmailID: emailID, Channel: pc.Email.Channel}, nil
}

// Revoke deactivates an invitation (statecode Inactive, statuscode 2), so
// neither this site nor Power Pages accepts its code. Revoking an inactive
// invitation is a no-op. Errors: ErrNotFound.
func (s *Service) Revoke(ctx context.Context, invitationID string) error {
	id, ok := normalizeGUID(invitationID)
	if !ok {
		return fmt.Errorf("revoke invitation %q: %w", invitationID, ErrNotFound)
	}
	_, err := s.dv.Update(ctx, "adx_invitations", id, map[string]any{"statecode": invStateInactive, "statuscode": invStatusInactive},
		&dataverse.WriteOptions{IfMatch: "*"})
	if err != nil {
		if dataverse.IsNotFound(err) {
			return fmt.Errorf("revoke invitation %s: %w", id, ErrNotFound)
		}
		return fmt.Errorf("revoke invitation %s: %w", id, err)
	}
	s.log.InfoContext(ctx, "invitation revoked", "invitation", id)
	return nil
}

// Get reads one invitation with its contact and web roles. Errors: ErrNotFound.
func (s *Service) Get(ctx context.Context, invitationID string) (*Invitation, error) {
	id, ok := normalizeGUID(invitationID)
	if !ok {
		return nil, fmt.Errorf("get invitation %q: %w", invitationID, ErrNotFound)
	}
	r, err := s.dv.Retrieve(ctx, "adx_invitations", id, &dataverse.Query{Select: s.invitationSelect(), Expand: s.invitationExpand()})
	if err != nil {
		if dataverse.IsNotFound(err) {
			return nil, fmt.Errorf("get invitation %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("get invitation %s: %w", id, err)
	}
	return s.toInvitation(r), nil
}

// ListFilter selects invitations for List; zero fields do not filter.
type ListFilter struct {
	ContactID string
	// Status is StatusNew, StatusSent, StatusRedeemed, StatusInactive, or
	// "open" (active and not redeemed).
	Status string
}

// List returns invitations, newest first (at most 5000).
func (s *Service) List(ctx context.Context, f ListFilter) ([]Invitation, error) {
	var conds []string
	if f.ContactID != "" {
		id, ok := normalizeGUID(f.ContactID)
		if !ok {
			return nil, fmt.Errorf("list invitations: contact %q: %w", f.ContactID, ErrNotFound)
		}
		conds = append(conds, "_adx_invitecontact_value eq "+id)
	}
	switch f.Status {
	case "":
	case StatusNew:
		conds = append(conds, fmt.Sprintf("statecode eq 0 and statuscode eq %d", invStatusNew))
	case StatusSent:
		conds = append(conds, fmt.Sprintf("statecode eq 0 and statuscode eq %d", invStatusSent))
	case StatusRedeemed:
		conds = append(conds, fmt.Sprintf("statuscode eq %d", invStatusRedeemed))
	case StatusInactive:
		conds = append(conds, "statecode eq 1")
	case "open":
		conds = append(conds, fmt.Sprintf("statecode eq 0 and statuscode ne %d", invStatusRedeemed))
	default:
		return nil, fmt.Errorf("list invitations: unknown status %q", f.Status)
	}
	page, err := s.dv.QueryPage(ctx, "adx_invitations", &dataverse.Query{Select: s.invitationSelect(), Expand: s.invitationExpand(),
		Filter: strings.Join(conds, " and "), OrderBy: []string{"createdon desc"}, PageSize: 5000}, "")
	if err != nil {
		return nil, fmt.Errorf("list invitations: %w", err)
	}
	out := make([]Invitation, 0, len(page.Records))
	for _, r := range page.Records {
		out = append(out, *s.toInvitation(r))
	}
	return out, nil
}

// Lookup finds the invitation a code belongs to, for the redemption page;
// it never consumes the code. Errors: ErrCodeUnknown; ErrCodeRevoked,
// ErrCodeUsedUp and ErrCodeExpired come with the invitation as well, so the
// page can say more.
func (s *Service) Lookup(ctx context.Context, code string) (*Invitation, error) {
	inv, err := s.lookup(ctx, code)
	if err != nil {
		return inv, fmt.Errorf("lookup: %w", err)
	}
	return inv, nil
}

func (s *Service) lookup(ctx context.Context, raw string) (*Invitation, error) {
	cq, ok := s.codeQuery(raw)
	if !ok {
		return nil, ErrCodeUnknown
	}
	page, err := s.dv.QueryPage(ctx, "adx_invitations", s.invitationByCode(cq), "")
	if err != nil {
		return nil, fmt.Errorf("find invitation code: %w", err)
	}
	inv, err := s.pickInvitation(page.Records, cq)
	if errors.Is(err, ErrCodeUnknown) && s.supersededLookup(ctx, cq) {
		return nil, ErrCodeSuperseded
	}
	return inv, err
}

// codeQuery holds the values adx_invitationcode may hold for a presented
// code, per storage mode in use.
type codeQuery struct {
	byStorage map[string][]string
}

func (s *Service) codeQuery(raw string) (codeQuery, bool) {
	raw = strings.TrimSpace(raw)
	if raw == "" || len(raw) > 200 {
		return codeQuery{}, false
	}
	canon, canonOK := NormalizeCode(raw)
	cq := codeQuery{byStorage: map[string][]string{}}
	if canonOK && s.storages[CodeHashed] {
		cq.byStorage[CodeHashed] = []string{HashCode(canon)}
	}
	if s.storages[CodePlain] {
		if canonOK {
			cq.byStorage[CodePlain] = append(cq.byStorage[CodePlain], string(canon))
		}
		if !canonOK || raw != string(canon) {
			// A code Power Pages generated (Base64 with -), compared as is.
			cq.byStorage[CodePlain] = append(cq.byStorage[CodePlain], raw)
		}
	}
	return cq, len(cq.byStorage) > 0
}

// filter matches adx_invitationcode against every candidate; prefix is a
// lambda variable path ("i/") when used inside any().
func (cq codeQuery) filter(prefix string) string {
	var ors []string
	for _, st := range []string{CodeHashed, CodePlain} {
		for _, v := range cq.byStorage[st] {
			ors = append(ors, prefix+"adx_invitationcode eq "+dataverse.Quote(v))
		}
	}
	return strings.Join(ors, " or ")
}

func (s *Service) invitationByCode(cq codeQuery) *dataverse.Query {
	return &dataverse.Query{Select: s.invitationSelect(), Expand: s.invitationExpand(), Filter: cq.filter(""), Top: 5}
}

// pickInvitation finds the row whose stored code matches the candidates of
// its portal's storage mode, and classifies it.
func (s *Service) pickInvitation(recs []dataverse.Record, cq codeQuery) (*Invitation, error) {
	now := s.now()
	for _, r := range recs {
		inv := s.toInvitation(r)
		pc := s.portalForWebsite(inv.WebsiteID)
		if pc == nil || !codeMatches(inv.storedCode, cq.byStorage[pc.CodeStorage]...) {
			continue
		}
		switch {
		case inv.StateCode != invStateActive:
			return inv, ErrCodeRevoked
		case inv.usedUp():
			return inv, ErrCodeUsedUp
		case inv.expired(now):
			return inv, ErrCodeExpired
		}
		return inv, nil
	}
	return nil, ErrCodeUnknown
}
