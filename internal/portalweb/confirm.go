package portalweb

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/d365portal/connector/internal/invite"
)

// ConfirmPage asks the person to press a button to confirm their address:
// a GET never changes anything, so link scanners in mail systems cannot
// use the token up.
type ConfirmPage struct {
	BasePage
	Token string
}

func (s *Server) confirmGet(c *gin.Context) {
	noReferrer(c)
	token := strings.TrimSpace(c.Query("token"))
	if token == "" || len(token) > 512 {
		s.fail(c, invite.ErrTokenInvalid)
		return
	}
	b := s.base(c, "confirm.title")
	b.CSRFToken = s.csrfToken(c)
	s.render(c, http.StatusOK, "confirm_email", &ConfirmPage{BasePage: b, Token: token})
}

func (s *Server) confirmPost(c *gin.Context) {
	noReferrer(c)
	token := postValue(c, "token")
	if token == "" || len(token) > 512 {
		s.fail(c, invite.ErrTokenInvalid)
		return
	}
	if err := s.allow(c, actConfirm, token); err != nil {
		s.fail(c, err)
		return
	}
	if _, err := s.accounts.ConfirmEmail(c.Request.Context(), token); err != nil {
		s.fail(c, err)
		return
	}
	if s.contactID(c) != "" {
		s.flash(c, "notice.email_confirmed")
		s.redirect(c, "/profile")
		return
	}
	b := s.base(c, "confirm.done.title")
	s.render(c, http.StatusOK, "message", &MessagePage{BasePage: b, Heading: b.Title,
		Paragraphs: []string{b.T("confirm.done.body")},
		Actions:    []Action{{URL: "/login", Label: b.T("action.sign_in"), Primary: true}}})
}
