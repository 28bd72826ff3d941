package invite

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/lifecycle"
)

// DefaultExpiredStatus is the contact status choice value for an
// invitation that expired unredeemed (intake.contact.status.expired).
const DefaultExpiredStatus = 100000008

// reminderMarker is written to a reminder email's subcategory, so a replica
// that crashed after sending and before the scheduler recorded it finds
// the email and does not send it again.
const reminderMarker = "pinv:reminder:"

// LifecycleConfig configures the Lifecycle adapter.
type LifecycleConfig struct {
	// ExpiredStatus is the contact status value written by Expire.
	// Default DefaultExpiredStatus.
	ExpiredStatus int
	// SubmitSMTP hands a reminder created as a draft to the SMTP channel;
	// required when a portal's email channel is ChannelSMTP.
	SubmitSMTP func(ctx context.Context, res *InviteResult) error
	PageSize   int // Due's page size; default 500
}

// Lifecycle implements lifecycle.Invitations, lifecycle.Reminder and
// lifecycle.Expirer over the Service.
type Lifecycle struct {
	s   *Service
	cfg LifecycleConfig
}

var (
	_ lifecycle.Invitations = (*Lifecycle)(nil)
	_ lifecycle.Reminder    = (*Lifecycle)(nil)
	_ lifecycle.Expirer     = (*Lifecycle)(nil)
)

// Lifecycle returns the reminder and expiry adapter of s.
func (s *Service) Lifecycle(cfg LifecycleConfig) *Lifecycle {
	if cfg.ExpiredStatus == 0 {
		cfg.ExpiredStatus = DefaultExpiredStatus
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 500
	}
	return &Lifecycle{s: s, cfg: cfg}
}

// Due lists portal's open, unredeemed invitations expiring at or before
// before, with a contact: one query, followed page by page.
func (l *Lifecycle) Due(ctx context.Context, portal string, before time.Time) ([]lifecycle.Invitation, error) {
	pc, err := l.s.portal(portal)
	if err != nil {
		return nil, fmt.Errorf("due invitations: %w", err)
	}
	q := &dataverse.Query{
		Select: []string{"adx_invitationid", "adx_expirydate", "_adx_invitecontact_value", "adx_maximumredemptions", "adx_redemptions"},
		Filter: fmt.Sprintf("statecode eq %d and statuscode ne %d and %s eq %s and adx_expirydate le %s and _adx_invitecontact_value ne null",
			invStateActive, invStatusRedeemed, pc.model.websiteValue, pc.WebsiteID, odataTime(before)),
		OrderBy:  []string{"adx_expirydate asc"},
		PageSize: l.cfg.PageSize,
	}
	var out []lifecycle.Invitation
	next := ""
	for {
		page, err := l.s.dv.QueryPage(ctx, "adx_invitations", q, next)
		if err != nil {
			return out, fmt.Errorf("due invitations %s: %w", portal, err)
		}
		for _, r := range page.Records {
			limit, n := r.Int("adx_maximumredemptions"), r.Int("adx_redemptions")
			exp := r.Time("adx_expirydate")
			if exp.IsZero() || (limit > 0 && n >= limit) {
				continue
			}
			out = append(out, lifecycle.Invitation{ID: strings.ToLower(r.Str("adx_invitationid")), Portal: pc.Name,
				ContactID: strings.ToLower(r.Str("_adx_invitecontact_value")), ExpiresAt: exp})
		}
		if page.NextLink == "" {
			return out, nil
		}
		next = page.NextLink
	}
}

// Send sends reminder index for the invitation when it is still open: a
// new email regarding it, from the portal's sender and through its
// channel, with a link that works (a new code when codes are stored
// hashed, as Resend does). An earlier reminder email with the same index
// and expiry (found by its subcategory) means it went out already. Nothing
// sent: lifecycle.ErrNothingToDo.
func (l *Lifecycle) Send(ctx context.Context, li lifecycle.Invitation, index int) error {
	s := l.s
	inv, err := s.Get(ctx, li.ID)
	if err != nil {
		return fmt.Errorf("reminder %d for %s: %w", index, li.ID, err)
	}
	pc := s.portalForWebsite(inv.WebsiteID)
	if pc == nil {
		return fmt.Errorf("reminder %d for %s: website %s: %w", index, li.ID, inv.WebsiteID, ErrUnknownPortal)
	}
	if pc.viaSMTP() && l.cfg.SubmitSMTP == nil {
		return fmt.Errorf("reminder %d for %s: portal %s sends through SMTP and no SMTP channel is set", index, li.ID, pc.Name)
	}
	if inv.ContactID == "" {
		return lifecycle.ErrNothingToDo
	}
	unlock, err := s.locker.Lock(ctx, "invite:"+inv.ContactID+":"+strings.ToLower(pc.Name), s.cfg.LockTTL)
	if err != nil {
		return fmt.Errorf("reminder %d for %s: lock: %w", index, li.ID, err)
	}
	defer unlock()
	if inv, err = s.Get(ctx, li.ID); err != nil { // state may have moved while we waited
		return fmt.Errorf("reminder %d for %s: %w", index, li.ID, err)
	}
	now := s.now()
	if !inv.Open(now) || inv.ContactHasIdentity || inv.ContactEmail == "" {
		return lifecycle.ErrNothingToDo
	}
	marker := reminderMarker + strconv.Itoa(index) + ":" + strconv.FormatInt(inv.ExpiresAt.Unix(), 10)
	page, err := s.dv.QueryPage(ctx, "emails", &dataverse.Query{Select: []string{"activityid"},
		Filter: "_regardingobjectid_value eq " + inv.ID + " and subcategory eq " + dataverse.Quote(marker), Top: 1}, "")
	if err != nil {
		return fmt.Errorf("reminder %d for %s: earlier reminder: %w", index, li.ID, err)
	}
	if len(page.Records) > 0 {
		return lifecycle.ErrNothingToDo // sent before a crash kept it from being recorded
	}
	patch := map[string]any{}
	var code Code
	if c, ok := NormalizeCode(inv.Code); ok && pc.CodeStorage == CodePlain && Code(inv.Code) == c {
		code = c
	} else {
		if code, err = NewCode(); err != nil {
			return err
		}
		patch["adx_invitationcode"] = storedCode(code, pc.CodeStorage)
	}
	link := actionLink(pc.BaseURL, InvitationPath, "code", string(code))
	rendered, err := pc.email.render(EmailData{
		FirstName: inv.ContactFirstName, LastName: inv.ContactLastName, FullName: inv.ContactName, Email: inv.ContactEmail,
		PortalName: pc.Name, BaseURL: pc.BaseURL, Link: link, Code: string(code), GroupedCode: code.Grouped(),
		ExpiresAt: inv.ExpiresAt, Expires: formatExpiry(inv.ExpiresAt), Roles: inv.Roles,
	})
	if err != nil {
		return fmt.Errorf("render reminder email: %w", err)
	}
	rendered.Subject = "Reminder: " + rendered.Subject
	emailID := dataverse.NewGUID()
	email := s.emailRecord(emailID, rendered, pc.sender, inv.OwnerID, inv.ContactID)
	email["regardingobjectid_adx_invitation_email@odata.bind"] = "/adx_invitations(" + inv.ID + ")"
	email["subcategory"] = marker
	ops := []dataverse.BatchOp{{Method: http.MethodPost, Path: "emails", Body: email}}
	ops = append(ops, pc.sendOps(emailID)...)
	if len(patch) > 0 {
		ops = append(ops, dataverse.BatchOp{Method: http.MethodPatch, Path: "adx_invitations(" + inv.ID + ")", Body: patch, Headers: ifMatch("*")})
	}
	if _, err := s.changeSet(ctx, "send reminder", ops); err != nil {
		return fmt.Errorf("reminder %d for %s: %w", index, li.ID, err)
	}
	if pc.CodeStorage == CodePlain {
		inv.Code = string(code)
	}
	res := &InviteResult{Invitation: inv, Code: code, Link: link, EmailSent: true, EmailID: emailID, Channel: pc.Email.Channel}
	if pc.viaSMTP() {
		if err := l.cfg.SubmitSMTP(ctx, res); err != nil {
			return fmt.Errorf("reminder %d for %s: submit: %w", index, li.ID, err)
		}
	}
	s.log.InfoContext(ctx, "reminder sent", "invitation", inv.ID, "contact", inv.ContactID, "reminder", index,
		"code_replaced", patch["adx_invitationcode"] != nil)
	return nil
}

// Expire turns the contact of an invitation that expired unredeemed to
// Expired. It does nothing when the invitation is no longer active, was
// redeemed, or has not expired (a resend moved it), or when the contact is
// a portal user, is already Expired, or has another open invitation
// (lifecycle.ErrNothingToDo).
func (l *Lifecycle) Expire(ctx context.Context, li lifecycle.Invitation) error {
	s := l.s
	inv, err := s.Get(ctx, li.ID)
	if err != nil {
		return fmt.Errorf("expire %s: %w", li.ID, err)
	}
	now := s.now()
	if inv.StateCode != invStateActive || inv.usedUp() || !inv.expired(now) || inv.ContactID == "" || inv.ContactHasIdentity {
		return lifecycle.ErrNothingToDo
	}
	c, err := s.dv.Retrieve(ctx, "contacts", inv.ContactID, &dataverse.Query{Select: []string{s.cols.Status}})
	if err != nil {
		if dataverse.IsNotFound(err) {
			return lifecycle.ErrNothingToDo
		}
		return fmt.Errorf("expire %s: contact %s: %w", li.ID, inv.ContactID, err)
	}
	if c.Int(s.cols.Status) == l.cfg.ExpiredStatus || c.Int(s.cols.Status) == s.cols.Redeemed {
		return lifecycle.ErrNothingToDo
	}
	if open, err := s.List(ctx, ListFilter{ContactID: inv.ContactID, Status: "open"}); err != nil {
		return fmt.Errorf("expire %s: %w", li.ID, err)
	} else {
		for i := range open {
			if open[i].ID != inv.ID && open[i].Open(now) {
				return lifecycle.ErrNothingToDo
			}
		}
	}
	msg := "The invitation expired on " + formatExpiry(inv.ExpiresAt) + " without being redeemed."
	if _, err := s.dv.Update(ctx, "contacts", inv.ContactID, map[string]any{s.cols.Status: l.cfg.ExpiredStatus,
		s.cols.Error: msg}, &dataverse.WriteOptions{IfMatch: "*"}); err != nil {
		return fmt.Errorf("expire %s: contact %s: %w", li.ID, inv.ContactID, err)
	}
	s.log.InfoContext(ctx, "invitation expired", "invitation", inv.ID, "contact", inv.ContactID)
	return nil
}
