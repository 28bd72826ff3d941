package portalweb

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/d365portal/connector/internal/invite"
)

const keyTranslator = "portalweb.translator"

// language picks the page language once per request: ?lang= (remembered in
// the session), then the session's earlier choice, then Accept-Language.
func (s *Server) language(c *gin.Context) {
	var tr *translator
	if q := c.Query("lang"); q != "" {
		if t, ok := s.cat.get(q); ok {
			tr = t
			if s.hasSession(c) && s.sm.GetString(c.Request.Context(), sessLang) != t.lang {
				s.sm.Put(c.Request.Context(), sessLang, t.lang)
			}
		}
	}
	if tr == nil && s.hasSession(c) {
		if l := s.sm.GetString(c.Request.Context(), sessLang); l != "" {
			tr, _ = s.cat.get(l)
		}
	}
	if tr == nil {
		tr = s.cat.match(c.GetHeader("Accept-Language"))
	}
	c.Set(keyTranslator, tr)
	c.Next()
}

// tr is the request's translator (the Accept-Language match when the
// language middleware has not run, e.g. on an early error).
func (s *Server) tr(c *gin.Context) *translator {
	if v, ok := c.Get(keyTranslator); ok {
		return v.(*translator)
	}
	t := s.cat.match(c.GetHeader("Accept-Language"))
	c.Set(keyTranslator, t)
	return t
}

const keyPortal = "portalweb.portal"

// portalFor is the portal a page is about: the signed-in user's portal, one
// named by ?portal= or a form field, the one whose base URL has this host,
// or else the first configured portal.
func (s *Server) portalFor(c *gin.Context) invite.Portal {
	if v, ok := c.Get(keyPortal); ok {
		return v.(invite.Portal)
	}
	p := s.pickPortal(c)
	c.Set(keyPortal, p)
	return p
}

func (s *Server) pickPortal(c *gin.Context) invite.Portal {
	if s.hasSession(c) {
		if name := s.sm.GetString(c.Request.Context(), sessPortal); name != "" {
			if p, ok := s.portalNamed(name); ok {
				return p
			}
		}
	}
	name := c.Query("portal")
	if name == "" && c.Request.PostForm != nil {
		name = c.Request.PostForm.Get("portal")
	}
	if name != "" {
		if p, ok := s.portalNamed(name); ok {
			return p
		}
	}
	host := strings.ToLower(c.Request.Host)
	for _, p := range s.portals {
		if u, err := url.Parse(p.BaseURL); err == nil && strings.ToLower(u.Host) == host {
			return p
		}
	}
	return s.portals[0]
}

func (s *Server) portalNamed(name string) (invite.Portal, bool) {
	for _, p := range s.portals {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return invite.Portal{}, false
}

// setPortal fixes the page's portal (the invitation's, on redemption pages).
func (s *Server) setPortal(c *gin.Context, name string) {
	if p, ok := s.portalNamed(name); ok {
		c.Set(keyPortal, p)
	}
}

// humanDuration says how long to wait in words, rounded up.
func humanDuration(tr *translator, d time.Duration) string {
	switch {
	case d <= time.Minute:
		secs := int((d + time.Second - 1) / time.Second)
		if secs <= 1 {
			return tr.T("time.one_second")
		}
		return tr.T("time.seconds", "n", secs)
	case d <= time.Hour:
		mins := int((d + time.Minute - 1) / time.Minute)
		if mins <= 1 {
			return tr.T("time.one_minute")
		}
		return tr.T("time.minutes", "n", mins)
	default:
		hours := int((d + time.Hour - 1) / time.Hour)
		if hours <= 1 {
			return tr.T("time.one_hour")
		}
		return tr.T("time.hours", "n", hours)
	}
}

// formatDate writes a date the way the page's language does.
func formatDate(tr *translator, t time.Time) string {
	t = t.UTC()
	return tr.T("date.format", "day", t.Day(), "month", tr.T("month."+strconv.Itoa(int(t.Month()))), "year", t.Year())
}
