package portalweb

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/d365portal/connector/internal/invite"
)

// RegisterPage is the self-registration form.
type RegisterPage struct {
	BasePage
	Portal                     string // hidden, when several portals share the site
	FirstName, LastName, Email *Field
}

// MessagePage is a page of text and next steps (check your inbox, done).
type MessagePage struct {
	BasePage
	Heading    string
	Paragraphs []string
	Actions    []Action
}

func (s *Server) registerForm(c *gin.Context) *RegisterPage {
	b := s.base(c, "register.title")
	b.CSRFToken = s.csrfToken(c)
	pg := &RegisterPage{BasePage: b}
	if len(s.portals) > 1 {
		pg.Portal = s.portalFor(c).Name
	}
	pg.FirstName = s.field(&pg.BasePage, "first_name", "text", "field.first_name")
	pg.FirstName.Autocomplete, pg.FirstName.Required, pg.FirstName.MaxLength = "given-name", true, 50
	pg.LastName = s.field(&pg.BasePage, "last_name", "text", "field.last_name")
	pg.LastName.Autocomplete, pg.LastName.Required, pg.LastName.MaxLength = "family-name", true, 50
	pg.Email = s.field(&pg.BasePage, "email", "email", "field.email")
	pg.Email.Autocomplete, pg.Email.Required, pg.Email.MaxLength = "email", true, 100
	pg.Email.Hint = b.T("register.email_hint")
	return pg
}

// registerGet is the self-registration form, or, with ?invitation=…, Power
// Pages' redemption link shape, which goes to redemption.
func (s *Server) registerGet(c *gin.Context) {
	if c.Query("invitation") != "" || strings.HasPrefix(c.Request.URL.Path, "/Register") {
		s.invitationGet(c)
		return
	}
	s.render(c, http.StatusOK, "register", s.registerForm(c))
}

// registerPost asks the service to invite the person. The answer is the
// same "check your inbox" whether or not the address is known.
func (s *Server) registerPost(c *gin.Context) {
	pg := s.registerForm(c)
	pg.FirstName.Value, pg.LastName.Value, pg.Email.Value = postValue(c, "first_name"), postValue(c, "last_name"), postValue(c, "email")
	requireText(pg.FirstName, 50)
	requireText(pg.LastName, 50)
	requireEmail(pg.Email)
	if !hasErrors(pg.FirstName, pg.LastName, pg.Email) {
		if err := s.allow(c, actRegister, pg.Email.Value); err != nil {
			s.fail(c, err)
			return
		}
		err := s.accounts.Register(c.Request.Context(), invite.RegisterRequest{Portal: s.portalFor(c).Name,
			FirstName: pg.FirstName.Value, LastName: pg.LastName.Value, Email: pg.Email.Value, IPAddress: clientIP(c)})
		switch {
		case err == nil:
			s.redirect(c, "/register/sent")
			return
		case errors.Is(err, invite.ErrNoEmail):
			pg.Email.Error = pg.T("validation.email")
		default:
			s.fail(c, err)
			return
		}
	}
	pg.summarise(pg.FirstName, pg.LastName, pg.Email)
	s.render(c, formStatus, "register", pg)
}

func (s *Server) registerSent(c *gin.Context) {
	b := s.base(c, "register.sent.title")
	s.render(c, http.StatusOK, "message", &MessagePage{BasePage: b, Heading: b.Title,
		Paragraphs: []string{b.T("register.sent.body"), b.T("register.sent.spam")},
		Actions:    []Action{{URL: "/invitation", Label: b.T("action.enter_code"), Primary: true}, {URL: "/login", Label: b.T("action.sign_in")}}})
}
