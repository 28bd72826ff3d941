package portalweb

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/gin-gonic/gin/render"
)

//go:embed templates
var templateFiles embed.FS

// viewNames are the pages; each is parsed into its own template set with the
// layout and partials, so views can all define "content" without
// overwriting each other. parseViews fails if a view file exists that is
// not listed here or the other way round.
var viewNames = []string{
	"code_entry", "invitation", "register", "login", "profile",
	"forgot_password", "reset_password", "confirm_email", "message", "error",
}

// views is the site's gin HTML renderer: one template set per page.
type views struct {
	sets map[string]*template.Template
}

var _ render.HTMLRender = (*views)(nil)

func parseViews() (*views, error) {
	files, err := fs.Glob(templateFiles, "templates/views/*.html")
	if err != nil {
		return nil, fmt.Errorf("list views: %w", err)
	}
	var onDisk []string
	for _, f := range files {
		onDisk = append(onDisk, strings.TrimSuffix(strings.TrimPrefix(f, "templates/views/"), ".html"))
	}
	want := slices.Clone(viewNames)
	slices.Sort(want)
	slices.Sort(onDisk)
	if !slices.Equal(want, onDisk) {
		return nil, fmt.Errorf("views on disk %v do not match the registered views %v", onDisk, want)
	}
	v := &views{sets: map[string]*template.Template{}}
	for _, name := range viewNames {
		t, err := template.New("layout.html").Option("missingkey=error").ParseFS(templateFiles,
			"templates/layout.html", "templates/partials/*.html", "templates/views/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse view %s: %w", name, err)
		}
		if t.Lookup("content") == nil || t.Lookup("title") == nil {
			return nil, fmt.Errorf("view %s must define \"title\" and \"content\"", name)
		}
		v.sets[name] = t
	}
	return v, nil
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Instance executes the view into a buffer at once, so a template error is
// known before any byte or header is written.
func (v *views) Instance(name string, data any) render.Render {
	t, ok := v.sets[name]
	if !ok {
		return &page{err: fmt.Errorf("unknown view %q", name)}
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	if err := t.ExecuteTemplate(buf, "layout", data); err != nil {
		bufPool.Put(buf)
		return &page{err: fmt.Errorf("render view %s: %w", name, err)}
	}
	return &page{buf: buf}
}

// page is an executed view waiting to be written.
type page struct {
	buf *bytes.Buffer
	err error
}

func (p *page) Render(w http.ResponseWriter) error {
	if p.err != nil {
		return p.err
	}
	defer bufPool.Put(p.buf)
	_, err := w.Write(p.buf.Bytes())
	return err
}

func (p *page) WriteContentType(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
}

// BasePage is what the layout needs; every page struct embeds it.
type BasePage struct {
	tr         *translator
	Lang       string
	Title      string
	PortalName string
	CSS, Icon  string
	CSRFToken  string
	SignedIn   bool
	Notice     string    // a one-time confirmation ("Your profile was saved")
	Problems   []Problem // error summary at the top of the page
	Languages  []LanguageLink
	RequestID  string
}

// T translates key for the page's language; {name} placeholders take the
// name/value pairs in args.
func (b *BasePage) T(key string, args ...any) string { return b.tr.T(key, args...) }

// Problem is one line of the error summary, linking to its field.
type Problem struct {
	Field   string // input id, "" for page-level problems
	Message string
}

// LanguageLink switches the page to another shipped language.
type LanguageLink struct {
	Lang, Name, URL string
	Current         bool
}

// Field is one form input with its label, hint and error, rendered by the
// "field" partial so every input is labelled and described the same way.
type Field struct {
	tr           *translator
	ID, Name     string
	Type         string // text, email, password, tel, checkbox, hidden
	Label, Hint  string
	Value        string
	Error        string
	Autocomplete string
	InputMode    string
	Required     bool
	Checked      bool
	MaxLength    int
	// LinkURL and LinkText put a link inside a checkbox label (terms).
	LinkURL, LinkText string
}

// T translates for the partial, whose dot is the field.
func (f *Field) T(key string, args ...any) string { return f.tr.T(key, args...) }

// DescribedBy is the aria-describedby value: hint then error.
func (f *Field) DescribedBy() string {
	var ids []string
	if f.Hint != "" {
		ids = append(ids, f.ID+"-hint")
	}
	if f.Error != "" {
		ids = append(ids, f.ID+"-error")
	}
	return strings.Join(ids, " ")
}

// base fills the layout fields for the current request.
func (s *Server) base(c *gin.Context, titleKey string) BasePage {
	tr := s.tr(c)
	b := BasePage{
		tr: tr, Lang: tr.lang, Title: tr.T(titleKey), PortalName: s.portalFor(c).Name,
		CSS: s.assets.urls["app.css"], Icon: s.assets.urls["icon.svg"], RequestID: requestID(c),
	}
	if s.contactID(c) != "" {
		b.SignedIn = true
		b.CSRFToken = s.csrfToken(c) // the sign-out button is on every page
	}
	if key := s.popFlash(c); key != "" && tr.has(key) {
		b.Notice = tr.T(key)
	}
	for _, t := range s.cat.languages() {
		u := *c.Request.URL
		if strings.HasPrefix(u.Path, callbackPrefix) {
			// The callback's query is an authorization code: never repeat it.
			u.Path, u.RawQuery = "/login", ""
		}
		q := u.Query()
		q.Set("lang", t.lang)
		u.RawQuery = q.Encode()
		b.Languages = append(b.Languages, LanguageLink{Lang: t.lang, Name: t.name, URL: u.RequestURI(), Current: t == tr})
	}
	return b
}

// field builds a form field with its label from the catalogue.
func (s *Server) field(b *BasePage, name, typ, labelKey string) *Field {
	return &Field{tr: b.tr, ID: strings.ReplaceAll(name, "_", "-"), Name: name, Type: typ, Label: b.T(labelKey)}
}

// summarise fills the error summary from the fields that have errors, in
// page order, after any page-level problems already present.
func (b *BasePage) summarise(fields ...*Field) {
	for _, f := range fields {
		if f != nil && f.Error != "" {
			b.Problems = append(b.Problems, Problem{Field: f.ID, Message: f.Error})
		}
	}
}

// render writes a page: session first (so its failure can still become the
// outage page), then the executed template.
func (s *Server) render(c *gin.Context, status int, view string, data any) {
	p := s.views.Instance(view, data).(*page)
	if p.err != nil {
		s.log.Error("render page", "request_id", requestID(c), "view", view, "err", p.err)
		s.fail(c, &Error{Status: http.StatusInternalServerError, Key: "internal", Err: p.err})
		return
	}
	if err := s.saveSession(c); err != nil {
		bufPool.Put(p.buf)
		s.fail(c, err)
		return
	}
	c.Render(status, p)
}

// ErrorPage is the page for every failure.
type ErrorPage struct {
	BasePage
	Key        string
	Heading    string
	Body       string
	RetryAfter string   // "in about 2 minutes"; empty when not applicable
	Actions    []Action // what to do next
	Status     int
	ShowID     bool       // show the request id (server errors)
	CodeForm   *CodeEntry // the code box again, on the unknown-code page
}

// Action is a next step offered on a page.
type Action struct {
	URL, Label string
	Primary    bool
}

// renderError draws the page for e. It never writes the session unless the
// session itself is fine, and falls back to plain text if even the error
// view fails, so a failure can never loop.
func (s *Server) renderError(c *gin.Context, e *Error) {
	b := s.base(c, "error."+e.Key+".title")
	pg := &ErrorPage{BasePage: b, Key: e.Key, Heading: b.Title, Body: b.T("error."+e.Key+".body", e.Args...), Status: e.Status,
		ShowID: e.Status >= 500 || e.ShowID}
	if e.RetryAfter > 0 {
		pg.RetryAfter = humanDuration(b.tr, e.RetryAfter)
	}
	pg.Actions = s.errorActions(c, &b, e)
	if e.Key == "code_unknown" {
		// The box again, with what was tried so a typo can be fixed.
		typed := c.Query("code")
		if typed == "" {
			typed = c.Query("invitation")
		}
		if len(typed) > 200 {
			typed = ""
		}
		pg.CodeForm = s.codeEntry(&pg.BasePage, typed)
	}
	p := s.views.Instance("error", pg).(*page)
	if p.err != nil {
		s.log.Error("render error page", "request_id", requestID(c), "err", p.err)
		c.Data(http.StatusInternalServerError, "text/plain; charset=utf-8", []byte("Internal error. Request "+requestID(c)))
		return
	}
	if e.Status < 500 && e.Key != "unavailable" {
		if err := s.saveSession(c); err != nil {
			bufPool.Put(p.buf)
			s.renderError(c, classify(err))
			return
		}
	} else {
		c.Set(keySessionSaved, true) // never retry Redis on the way to an error page
	}
	c.Render(e.Status, p)
}

func (s *Server) errorActions(c *gin.Context, b *BasePage, e *Error) []Action {
	here := c.Request.URL.RequestURI()
	switch e.Key {
	case "code_unknown":
		return nil // the page shows the code box
	case "code_expired", "code_revoked":
		return []Action{{URL: "/register", Label: b.T("action.request_invitation"), Primary: true}, {URL: "/login", Label: b.T("action.sign_in")}}
	case "code_superseded":
		return []Action{{URL: "/login", Label: b.T("action.sign_in")}}
	case "code_used":
		return []Action{{URL: "/login", Label: b.T("action.sign_in"), Primary: true}, {URL: "/forgot-password", Label: b.T("action.forgot_password")}}
	case "token_invalid":
		if strings.HasPrefix(c.Request.URL.Path, "/confirm-email") {
			return []Action{{URL: "/profile", Label: b.T("action.profile"), Primary: true}}
		}
		return []Action{{URL: "/forgot-password", Label: b.T("action.new_reset_link"), Primary: true}}
	case "form_expired", "cross_site":
		return []Action{{URL: c.Request.URL.Path, Label: b.T("action.try_again"), Primary: true}}
	case "signin_denied", "signin_expired", "signin_failed", "provider_unavailable", "no_account", "account_disabled",
		"account_locked", "login_taken", "email_mismatch", "email_unverified", "email_in_use", "no_email":
		return s.externalErrorActions(c, b)
	case "rate_limited", "unavailable":
		if c.Request.Method == http.MethodGet {
			return []Action{{URL: here, Label: b.T("action.try_again"), Primary: true}}
		}
		return []Action{{URL: c.Request.URL.Path, Label: b.T("action.try_again"), Primary: true}}
	}
	return []Action{{URL: "/", Label: b.T("action.home"), Primary: true}}
}

// redirect sends a 303 (so a POST is followed by a GET) after saving the
// session. target must already be a checked redirect target.
func (s *Server) redirect(c *gin.Context, target string) {
	if err := s.saveSession(c); err != nil {
		s.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, target)
}

// withQuery appends query parameters to a local path.
func withQuery(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return path + "?" + q.Encode()
}
