package portalweb

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/d365portal/connector/internal/invite"
)

// CodeEntry is the box for typing a code by hand. It submits with GET to
// /invitation, the same URL the email links to.
type CodeEntry struct {
	Code *Field
}

// CodeEntryPage is GET /invitation without a code.
type CodeEntryPage struct {
	BasePage
	Form *CodeEntry
}

// InvitationPage shows a valid invitation and the sign-up form.
type InvitationPage struct {
	BasePage
	Code        string // hidden field, as the link or the person gave it
	InviteeName string
	Email       string
	Roles       []string
	ExpiresOn   string // formatted, "" when it never expires
	// Group invitations do not name a contact; the person gives their own.
	Group                        bool
	FirstName, LastName, EmailIn *Field
	Username, Password, Confirm  *Field
	Terms                        *Field // nil unless the portal has terms
	// External are the identity providers' buttons (nil without any);
	// LocalLogin says whether the password form is offered.
	External   *ExternalChoices
	LocalLogin bool
}

func (s *Server) codeEntry(b *BasePage, value string) *CodeEntry {
	f := s.field(b, "code", "text", "code.label")
	f.Hint = b.T("code.hint")
	f.Value = value
	f.Autocomplete = "off"
	f.Required = true
	f.MaxLength = 200
	return &CodeEntry{Code: f}
}

// invitationGet serves the email link (GET /invitation?code=…, or Power
// Pages' /Register?invitation=…) and the manual entry form. It never
// consumes the code.
func (s *Server) invitationGet(c *gin.Context) {
	noReferrer(c)
	code := strings.TrimSpace(c.Query("code"))
	if code == "" {
		code = strings.TrimSpace(c.Query("invitation"))
	}
	if code == "" {
		b := s.base(c, "code.title")
		s.render(c, http.StatusOK, "code_entry", &CodeEntryPage{BasePage: b, Form: s.codeEntry(&b, "")})
		return
	}
	if len(code) > 200 {
		s.fail(c, invite.ErrCodeUnknown)
		return
	}
	if err := s.allow(c, actLookup, code); err != nil {
		s.fail(c, err)
		return
	}
	inv, err := s.accounts.Lookup(c.Request.Context(), code)
	if inv != nil {
		s.setPortal(c, inv.Portal)
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if inv.ContactHasIdentity {
		s.redirect(c, pageTarget(s.portalFor(c).ExistingUserPage, "/login"))
		return
	}
	pg := s.invitationPage(c, inv, code)
	pg.Username.Value = inv.ContactEmail
	if pg.External != nil {
		// A provider button redeems this code: it travels in the session,
		// never through the provider's URLs.
		s.sm.Put(c.Request.Context(), sessInviteCode, code)
	}
	s.render(c, http.StatusOK, "invitation", pg)
}

func (s *Server) invitationPage(c *gin.Context, inv *invite.Invitation, code string) *InvitationPage {
	b := s.base(c, "invitation.title")
	b.CSRFToken = s.csrfToken(c)
	pg := &InvitationPage{BasePage: b, Code: code, InviteeName: inv.ContactName, Email: inv.ContactEmail, Roles: inv.Roles,
		Group: inv.ContactID == "", LocalLogin: !s.localLoginDisabled}
	if !inv.ExpiresAt.IsZero() {
		pg.ExpiresOn = formatDate(b.tr, inv.ExpiresAt)
	}
	if pg.Group {
		pg.FirstName = s.field(&pg.BasePage, "first_name", "text", "field.first_name")
		pg.FirstName.Autocomplete, pg.FirstName.Required, pg.FirstName.MaxLength = "given-name", true, 50
		pg.LastName = s.field(&pg.BasePage, "last_name", "text", "field.last_name")
		pg.LastName.Autocomplete, pg.LastName.Required, pg.LastName.MaxLength = "family-name", true, 50
		pg.EmailIn = s.field(&pg.BasePage, "email", "email", "field.email")
		pg.EmailIn.Autocomplete, pg.EmailIn.Required, pg.EmailIn.MaxLength = "email", true, 100
	}
	pg.Username = s.field(&pg.BasePage, "username", "text", "field.username")
	pg.Username.Hint = b.T("invitation.username_hint")
	pg.Username.Autocomplete, pg.Username.Required, pg.Username.MaxLength = "username", true, 100
	pg.Password = s.field(&pg.BasePage, "password", "password", "field.password")
	pg.Password.Autocomplete, pg.Password.Required = "new-password", true
	pg.Password.Hint = b.T("field.password_hint")
	pg.Confirm = s.field(&pg.BasePage, "confirm_password", "password", "field.confirm_password")
	pg.Confirm.Autocomplete, pg.Confirm.Required = "new-password", true
	if terms := s.portalFor(c).Terms; terms != "" {
		pg.Terms = s.field(&pg.BasePage, "terms", "checkbox", "invitation.terms")
		pg.Terms.Required = true
		pg.Terms.LinkURL, pg.Terms.LinkText = terms, b.T("invitation.terms_link")
	}
	pg.External = s.externalChoices(c, &pg.BasePage, intentRedeem, nil)
	if pg.External != nil && pg.Terms != nil {
		t := *pg.Terms
		t.ID, t.Error = "external-terms", ""
		pg.External.Terms = &t
	}
	return pg
}

// invitationPost redeems the code: on success the visitor gets a new,
// signed-in session and goes to the portal's after-redeem page.
func (s *Server) invitationPost(c *gin.Context) {
	noReferrer(c)
	code := postValue(c, "code")
	if code == "" || len(code) > 200 {
		s.fail(c, invite.ErrCodeUnknown)
		return
	}
	if err := s.allow(c, actRedeem, code); err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	// Fields are checked first against a form built without the
	// invitation; only a form that must be shown again needs Lookup.
	b := s.base(c, "invitation.title")
	probe := &InvitationPage{BasePage: b}
	username := s.field(&probe.BasePage, "username", "text", "field.username")
	username.Value = postValue(c, "username")
	optionalText(username, 100)
	pw := s.field(&probe.BasePage, "password", "password", "field.password")
	pw.Value = rawPostValue(c, "password")
	confirm := s.field(&probe.BasePage, "confirm_password", "password", "field.confirm_password")
	confirm.Value = rawPostValue(c, "confirm_password")
	password := pw.Value
	newPassword(pw, confirm)
	accepted := c.Request.PostForm.Get("terms") == "on"
	first := s.field(&probe.BasePage, "first_name", "text", "field.first_name")
	last := s.field(&probe.BasePage, "last_name", "text", "field.last_name")
	email := s.field(&probe.BasePage, "email", "email", "field.email")
	first.Value, last.Value, email.Value = postValue(c, "first_name"), postValue(c, "last_name"), postValue(c, "email")
	if c.Request.PostForm.Get("group") == "1" {
		requireText(first, 50)
		requireText(last, 50)
		requireEmail(email)
	}

	var acc *invite.Account
	var redeemErr error
	if !hasErrors(first, last, email, username, pw, confirm) {
		acc, redeemErr = s.accounts.Redeem(ctx, invite.RedeemRequest{Code: code, Username: username.Value, Password: password,
			IPAddress: clientIP(c), AcceptedTerms: accepted, Email: email.Value, FirstName: first.Value, LastName: last.Value})
		if redeemErr == nil {
			s.setPortal(c, acc.Portal)
			if err := s.signIn(c, acc.ContactID, acc.Portal); err != nil {
				s.fail(c, err)
				return
			}
			s.sm.Put(ctx, sessStamp, acc.SecurityStamp)
			s.flash(c, "notice.welcome")
			s.redirect(c, pageTarget(s.portalFor(c).AfterRedeemPage, "/profile"))
			return
		}
		if errors.Is(redeemErr, invite.ErrExistingUser) {
			s.redirect(c, pageTarget(s.portalFor(c).ExistingUserPage, "/login"))
			return
		}
	}

	// Show the form again with the problems next to their fields.
	inv, err := s.accounts.Lookup(ctx, code)
	if inv != nil {
		s.setPortal(c, inv.Portal)
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	pg := s.invitationPage(c, inv, code)
	pg.Username.Value, pg.Username.Error = username.Value, username.Error
	pg.Password.Error, pg.Confirm.Error = pw.Error, confirm.Error
	if pg.Group {
		pg.FirstName.Value, pg.LastName.Value, pg.EmailIn.Value = first.Value, last.Value, email.Value
		pg.FirstName.Error, pg.LastName.Error, pg.EmailIn.Error = first.Error, last.Error, email.Error
	}
	if pg.Terms != nil {
		pg.Terms.Checked = accepted
	}
	switch {
	case redeemErr == nil:
	case errors.Is(redeemErr, invite.ErrUsernameTaken):
		pg.Username.Error = pg.T("validation.username_taken")
	case errors.Is(redeemErr, invite.ErrTermsRequired) && pg.Terms != nil:
		pg.Terms.Error = pg.T("validation.terms")
	case errors.Is(redeemErr, invite.ErrNoEmail) && pg.Group:
		pg.EmailIn.Error = pg.T("validation.email")
	case policyError(redeemErr, pg.Password):
	default:
		s.fail(c, redeemErr)
		return
	}
	pg.summarise(pg.FirstName, pg.LastName, pg.EmailIn, pg.Username, pg.Password, pg.Confirm, pg.Terms)
	s.render(c, formStatus, "invitation", pg)
}
