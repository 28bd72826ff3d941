package portalweb

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/d365portal/connector/internal/invite"
)

const sessStamp = "stamp" // security stamp at sign-in; a change ends the session

// LoginPage is the sign-in form.
type LoginPage struct {
	BasePage
	Portal          string
	Next            string // hidden: a checked local path to return to
	Login, Password *Field
	// External are the identity providers' buttons (nil without any);
	// LocalLogin says whether the password form is offered.
	External   *ExternalChoices
	LocalLogin bool
}

func (s *Server) loginForm(c *gin.Context, next string) *LoginPage {
	b := s.base(c, "login.title")
	b.CSRFToken = s.csrfToken(c)
	pg := &LoginPage{BasePage: b}
	if len(s.portals) > 1 {
		pg.Portal = s.portalFor(c).Name
	}
	if p, ok := localPath(next); ok {
		pg.Next = p
	}
	pg.Login = s.field(&pg.BasePage, "login", "text", "field.login")
	pg.Login.Autocomplete, pg.Login.Required, pg.Login.MaxLength = "username", true, 100
	pg.Password = s.field(&pg.BasePage, "password", "password", "field.password")
	pg.Password.Autocomplete, pg.Password.Required = "current-password", true
	pg.LocalLogin = !s.localLoginDisabled
	if pg.External = s.externalChoices(c, &pg.BasePage, intentSignIn, nil); pg.External != nil {
		pg.External.Next = pg.Next
	}
	return pg
}

func (s *Server) loginGet(c *gin.Context) {
	if s.contactID(c) != "" {
		s.redirect(c, s.afterSignIn(c.Query("next")))
		return
	}
	s.render(c, http.StatusOK, "login", s.loginForm(c, c.Query("next")))
}

// afterSignIn is where a successful sign-in goes: a local next path, or the
// profile. Nothing else is ever a redirect target.
func (s *Server) afterSignIn(next string) string {
	if p, ok := localPath(next); ok {
		return p
	}
	return "/profile"
}

// loginPost checks the password with the service, which applies Power
// Pages' lockout rules, and starts a new session on success.
func (s *Server) loginPost(c *gin.Context) {
	pg := s.loginForm(c, postValue(c, "next"))
	pg.Login.Value = postValue(c, "login")
	password := rawPostValue(c, "password")
	requireText(pg.Login, 100)
	if password == "" {
		pg.Password.Error = pg.T("validation.required", "field", pg.Password.Label)
	}
	if !hasErrors(pg.Login, pg.Password) {
		if err := s.allow(c, actSignIn, pg.Login.Value); err != nil {
			s.fail(c, err)
			return
		}
		portal := s.portalFor(c).Name
		acc, err := s.accounts.SignIn(c.Request.Context(), portal, pg.Login.Value, password)
		var locked *invite.LockedOutError
		switch {
		case err == nil:
			if acc.Portal != "" {
				portal = acc.Portal
			}
			if err := s.signIn(c, acc.ContactID, portal); err != nil {
				s.fail(c, err)
				return
			}
			s.sm.Put(c.Request.Context(), sessStamp, acc.SecurityStamp)
			s.redirect(c, s.afterSignIn(pg.Next))
			return
		case errors.As(err, &locked):
			pg.Problems = append(pg.Problems, Problem{Message: pg.T("login.locked", "when", humanDuration(pg.tr, locked.Until.Sub(s.now())))})
		case errors.Is(err, invite.ErrLockedOut):
			pg.Problems = append(pg.Problems, Problem{Message: pg.T("login.locked_unknown")})
		case errors.Is(err, invite.ErrBadCredentials):
			pg.Login.Error = pg.T("login.bad_credentials")
		default:
			s.fail(c, err)
			return
		}
	}
	pg.summarise(pg.Login, pg.Password)
	s.render(c, formStatus, "login", pg)
}

// logout ends the session everywhere it matters: in Redis and the cookie.
// After signing in with a provider that offers end_session_endpoint, the
// browser goes on to sign out there too (RP-initiated logout).
func (s *Server) logout(c *gin.Context) {
	ctx := c.Request.Context()
	provider, idToken := s.sm.GetString(ctx, sessProvider), s.sm.GetString(ctx, sessIDToken)
	if err := s.signOut(c); err != nil {
		s.fail(c, err)
		return
	}
	s.flash(c, "notice.signed_out")
	target := "/login"
	if provider != "" {
		target = s.endSession(c, provider, idToken)
	}
	s.redirect(c, target)
}
