package portalweb

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/d365portal/connector/internal/identity"
	"github.com/d365portal/connector/internal/invite"
)

// ProfilePage shows and edits the signed-in person's details.
type ProfilePage struct {
	BasePage
	Account                              *invite.Account
	Username, Email                      string
	EmailConfirmed                       bool
	Roles                                []string
	FirstName, LastName, Phone, JobTitle *Field
	// Logins are the linked external identities; Link the buttons for the
	// portal's providers not linked yet.
	Logins []LoginView
	Link   *ExternalChoices
}

func (s *Server) profileForm(c *gin.Context, acc *invite.Account) *ProfilePage {
	b := s.base(c, "profile.title")
	b.CSRFToken = s.csrfToken(c)
	pg := &ProfilePage{BasePage: b, Account: acc, Username: acc.Username, Email: acc.Email, EmailConfirmed: acc.EmailConfirmed, Roles: acc.Roles}
	pg.FirstName = s.field(&pg.BasePage, "first_name", "text", "field.first_name")
	pg.FirstName.Autocomplete, pg.FirstName.Required, pg.FirstName.MaxLength, pg.FirstName.Value = "given-name", true, 50, acc.FirstName
	pg.LastName = s.field(&pg.BasePage, "last_name", "text", "field.last_name")
	pg.LastName.Autocomplete, pg.LastName.Required, pg.LastName.MaxLength, pg.LastName.Value = "family-name", true, 50, acc.LastName
	pg.Phone = s.field(&pg.BasePage, "phone", "tel", "field.phone")
	pg.Phone.Autocomplete, pg.Phone.MaxLength, pg.Phone.Value = "tel", 50, acc.MobilePhone
	pg.JobTitle = s.field(&pg.BasePage, "job_title", "text", "field.job_title")
	pg.JobTitle.Autocomplete, pg.JobTitle.MaxLength, pg.JobTitle.Value = "organization-title", 100, acc.JobTitle
	return pg
}

// account loads the signed-in account. A contact that lost its portal
// identity, or whose credentials changed since sign-in (a password reset
// elsewhere), ends the session. ok is false when a response was written.
func (s *Server) account(c *gin.Context) (*invite.Account, bool) {
	ctx := c.Request.Context()
	acc, err := s.accounts.Account(ctx, s.contactID(c))
	if err != nil && !errors.Is(err, invite.ErrNotFound) {
		s.fail(c, err)
		return nil, false
	}
	if err != nil || (acc.SecurityStamp != "" && acc.SecurityStamp != s.sm.GetString(ctx, sessStamp)) {
		if err := s.signOut(c); err != nil {
			s.fail(c, err)
			return nil, false
		}
		s.flash(c, "notice.session_ended")
		s.redirect(c, "/login")
		return nil, false
	}
	return acc, true
}

func (s *Server) profileGet(c *gin.Context) {
	acc, ok := s.account(c)
	if !ok {
		return
	}
	pg := s.profileForm(c, acc)
	if err := s.addLogins(c, pg, acc); err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "profile", pg)
}

// addLogins fills the linked identities and the link buttons.
func (s *Server) addLogins(c *gin.Context, pg *ProfilePage, acc *invite.Account) error {
	if s.providers == nil {
		return nil
	}
	logins, linked, err := s.profileLogins(c, &pg.BasePage, acc)
	if err != nil {
		return err
	}
	pg.Logins = logins
	pg.Link = s.externalChoices(c, &pg.BasePage, intentLink, func(p *identity.Provider) bool { return linked[p.Name()] })
	return nil
}

func (s *Server) profilePost(c *gin.Context) {
	acc, ok := s.account(c)
	if !ok {
		return
	}
	pg := s.profileForm(c, acc)
	pg.FirstName.Value, pg.LastName.Value = postValue(c, "first_name"), postValue(c, "last_name")
	pg.Phone.Value, pg.JobTitle.Value = postValue(c, "phone"), postValue(c, "job_title")
	requireText(pg.FirstName, 50)
	requireText(pg.LastName, 50)
	requirePhone(pg.Phone)
	optionalText(pg.JobTitle, 100)
	if !hasErrors(pg.FirstName, pg.LastName, pg.Phone, pg.JobTitle) {
		err := s.accounts.UpdateProfile(c.Request.Context(), acc.ContactID, invite.Profile{FirstName: pg.FirstName.Value,
			LastName: pg.LastName.Value, Email: acc.Email, MobilePhone: pg.Phone.Value, JobTitle: pg.JobTitle.Value})
		switch {
		case err == nil:
			s.flash(c, "notice.profile_saved")
			s.redirect(c, "/profile")
			return
		case errors.Is(err, invite.ErrNoEmail):
			pg.Problems = append(pg.Problems, Problem{Message: pg.T("profile.no_email")})
		default:
			s.fail(c, err)
			return
		}
	}
	pg.summarise(pg.FirstName, pg.LastName, pg.Phone, pg.JobTitle)
	if err := s.addLogins(c, pg, acc); err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, formStatus, "profile", pg)
}

// profileSendConfirmation emails a link to /confirm-email?token=….
func (s *Server) profileSendConfirmation(c *gin.Context) {
	acc, ok := s.account(c)
	if !ok {
		return
	}
	if err := s.allow(c, actConfirm, acc.ContactID); err != nil {
		s.fail(c, err)
		return
	}
	err := s.accounts.SendEmailConfirmation(c.Request.Context(), s.portalFor(c).Name, acc.ContactID)
	switch {
	case err == nil:
		s.flash(c, "notice.confirmation_sent")
	case errors.Is(err, invite.ErrNoEmail):
		s.flash(c, "profile.no_email")
	default:
		s.fail(c, err)
		return
	}
	s.redirect(c, "/profile")
}
