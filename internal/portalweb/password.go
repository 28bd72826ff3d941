package portalweb

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/d365portal/connector/internal/invite"
)

// ForgotPage asks for the email address to send a reset link to.
type ForgotPage struct {
	BasePage
	Portal string
	Email  *Field
}

func (s *Server) forgotForm(c *gin.Context) *ForgotPage {
	b := s.base(c, "forgot.title")
	b.CSRFToken = s.csrfToken(c)
	pg := &ForgotPage{BasePage: b}
	if len(s.portals) > 1 {
		pg.Portal = s.portalFor(c).Name
	}
	pg.Email = s.field(&pg.BasePage, "email", "email", "field.email")
	pg.Email.Autocomplete, pg.Email.Required, pg.Email.MaxLength = "email", true, 100
	return pg
}

func (s *Server) forgotGet(c *gin.Context) {
	s.render(c, http.StatusOK, "forgot_password", s.forgotForm(c))
}

// forgotPost asks for a reset email. The answer is the same whether or not
// an account has this address; only an outage shows.
func (s *Server) forgotPost(c *gin.Context) {
	pg := s.forgotForm(c)
	pg.Email.Value = postValue(c, "email")
	requireEmail(pg.Email)
	if pg.Email.Error != "" {
		pg.summarise(pg.Email)
		s.render(c, formStatus, "forgot_password", pg)
		return
	}
	if err := s.allow(c, actReset, pg.Email.Value); err != nil {
		s.fail(c, err)
		return
	}
	err := s.accounts.RequestPasswordReset(c.Request.Context(), s.portalFor(c).Name, pg.Email.Value)
	if err != nil {
		if errors.Is(err, invite.ErrNoEmail) || errors.Is(err, invite.ErrNotFound) {
			s.log.Info("password reset not sent", "request_id", requestID(c), "err", err)
		} else {
			s.fail(c, err)
			return
		}
	}
	s.redirect(c, "/forgot-password/sent")
}

func (s *Server) forgotSent(c *gin.Context) {
	b := s.base(c, "forgot.sent.title")
	s.render(c, http.StatusOK, "message", &MessagePage{BasePage: b, Heading: b.Title,
		Paragraphs: []string{b.T("forgot.sent.body"), b.T("register.sent.spam")},
		Actions:    []Action{{URL: "/login", Label: b.T("action.sign_in"), Primary: true}}})
}

// ResetPage sets a new password with the emailed token.
type ResetPage struct {
	BasePage
	Token             string
	Password, Confirm *Field
}

func (s *Server) resetForm(c *gin.Context, token string) *ResetPage {
	b := s.base(c, "reset.title")
	b.CSRFToken = s.csrfToken(c)
	pg := &ResetPage{BasePage: b, Token: token}
	pg.Password = s.field(&pg.BasePage, "password", "password", "field.new_password")
	pg.Password.Autocomplete, pg.Password.Required, pg.Password.Hint = "new-password", true, b.T("field.password_hint")
	pg.Confirm = s.field(&pg.BasePage, "confirm_password", "password", "field.confirm_password")
	pg.Confirm.Autocomplete, pg.Confirm.Required = "new-password", true
	return pg
}

// resetGet shows the form; the token is checked when it is used.
func (s *Server) resetGet(c *gin.Context) {
	noReferrer(c)
	token := strings.TrimSpace(c.Query("token"))
	if token == "" || len(token) > 512 {
		s.fail(c, invite.ErrTokenInvalid)
		return
	}
	s.render(c, http.StatusOK, "reset_password", s.resetForm(c, token))
}

func (s *Server) resetPost(c *gin.Context) {
	noReferrer(c)
	token := postValue(c, "token")
	if token == "" || len(token) > 512 {
		s.fail(c, invite.ErrTokenInvalid)
		return
	}
	pg := s.resetForm(c, token)
	pg.Password.Value, pg.Confirm.Value = rawPostValue(c, "password"), rawPostValue(c, "confirm_password")
	password := pg.Password.Value
	newPassword(pg.Password, pg.Confirm)
	if !hasErrors(pg.Password, pg.Confirm) {
		if err := s.allow(c, actReset, token); err != nil {
			s.fail(c, err)
			return
		}
		err := s.accounts.ResetPassword(c.Request.Context(), token, password)
		switch {
		case err == nil:
			// The service changed the security stamp; whoever is signed in
			// here signs in again with the new password.
			if err := s.signOut(c); err != nil {
				s.fail(c, err)
				return
			}
			s.flash(c, "notice.password_changed")
			s.redirect(c, "/login")
			return
		case policyError(err, pg.Password):
		default:
			s.fail(c, err)
			return
		}
	}
	pg.summarise(pg.Password, pg.Confirm)
	s.render(c, formStatus, "reset_password", pg)
}
