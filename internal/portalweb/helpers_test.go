package portalweb

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/redistest"
)

const (
	testPortal   = "Contoso Partner Portal"
	goodPassword = "Blue-Kettle-42"
)

func testPortals() []invite.Portal {
	return []invite.Portal{{Name: testPortal, BaseURL: "https://partners.contoso.example", AfterRedeemPage: "/profile",
		ExistingUserPage: "/login"}}
}

// syncBuffer collects logs from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness is a running site over TLS (so Secure cookies and HSTS behave as
// in production) with a real redis-server.
type harness struct {
	t     testing.TB
	srv   *Server
	ts    *httptest.Server
	redis *redistest.Server
	rdb   redis.UniversalClient
	logs  *syncBuffer
	cfg   Config
}

type harnessOpts struct {
	plainHTTP bool // serve over plain HTTP with SecureCookies off (dev mode)
	// accounts builds the service once the site's URL is known (the real
	// service puts it in email links); it replaces newHarness's accounts.
	accounts func(baseURL string) Accounts
}

func newHarness(t testing.TB, accounts Accounts, mutate func(*Config), opts ...harnessOpts) *harness {
	t.Helper()
	var o harnessOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	// The listener exists before the handler, so the URL is known to the
	// service that builds links to it.
	ts := httptest.NewUnstartedServer(nil)
	scheme := "https://"
	if o.plainHTTP {
		scheme = "http://"
	}
	if o.accounts != nil {
		accounts = o.accounts(scheme + ts.Listener.Addr().String())
	}
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &syncBuffer{}
	cfg := Config{
		Accounts: accounts, Redis: rdb, KeyPrefix: "test:", SecureCookies: !o.plainHTTP,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RateLimits: RateLimits{CodeLookups: 1000, Redemptions: 1000, SignIns: 1000, Registrations: 1000, PasswordResets: 1000},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts.Config.Handler = srv.Handler()
	if o.plainHTTP {
		ts.Start()
	} else {
		ts.StartTLS()
	}
	t.Cleanup(ts.Close)
	return &harness{t: t, srv: srv, ts: ts, redis: rs, rdb: rdb, logs: logs, cfg: cfg}
}

// browser is one visitor: its own cookie jar, redirects not followed so
// tests see every hop.
type browser struct {
	h      *harness
	c      *http.Client
	header http.Header // sent with every request
}

func (h *harness) browser() *browser {
	jar, _ := cookiejar.New(nil)
	base := h.ts.Client()
	c := &http.Client{Jar: jar, Transport: base.Transport, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return &browser{h: h, c: c, header: http.Header{}}
}

// resp is a fetched page.
type resp struct {
	t      testing.TB
	status int
	header http.Header
	body   string
	doc    *goquery.Document
	url    string
}

func (b *browser) do(req *http.Request) *resp {
	b.h.t.Helper()
	for k, v := range b.header {
		req.Header[k] = v
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	doc, err := goquery.NewDocumentFromReader(bytes.NewReader(body))
	if err != nil {
		b.h.t.Fatalf("parse %s: %v", req.URL, err)
	}
	return &resp{t: b.h.t, status: res.StatusCode, header: res.Header, body: string(body), doc: doc, url: req.URL.String()}
}

func (b *browser) get(path string, hdr ...string) *resp {
	b.h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.h.ts.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

func (b *browser) post(path string, form url.Values, hdr ...string) *resp {
	b.h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.h.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

// submit posts the form matched by sel on page p with its hidden and
// pre-filled inputs plus values, like a browser would.
func (b *browser) submit(p *resp, sel string, values map[string]string) *resp {
	b.h.t.Helper()
	form := p.doc.Find(sel).First()
	if form.Length() == 0 {
		b.h.t.Fatalf("no form %q on %s:\n%s", sel, p.url, p.body)
	}
	v := url.Values{}
	form.Find("input").Each(func(_ int, in *goquery.Selection) {
		name, _ := in.Attr("name")
		typ, _ := in.Attr("type")
		if name == "" || typ == "password" || (typ == "checkbox" && in.AttrOr("checked", "-") == "-") {
			return
		}
		v.Set(name, in.AttrOr("value", ""))
	})
	for k, val := range values {
		if val == "\x00" {
			v.Del(k)
			continue
		}
		v.Set(k, val)
	}
	action := form.AttrOr("action", "")
	if strings.EqualFold(form.AttrOr("method", "get"), "get") {
		return b.get(action + "?" + v.Encode())
	}
	return b.post(action, v)
}

func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.h.ts.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (h *harness) sessionCookieName() string { return h.srv.sm.Cookie.Name }

// text is the page's visible text with whitespace collapsed.
func (r *resp) text(sel string) string {
	return strings.Join(strings.Fields(r.doc.Find(sel).Text()), " ")
}

func (r *resp) wantStatus(code int) *resp {
	r.t.Helper()
	if r.status != code {
		r.t.Fatalf("%s: status %d, want %d\n%s", r.url, r.status, code, r.body)
	}
	return r
}

func (r *resp) wantRedirect(loc string) *resp {
	r.t.Helper()
	if r.status != http.StatusSeeOther && r.status != http.StatusFound && r.status != http.StatusMovedPermanently {
		r.t.Fatalf("%s: status %d, want a redirect to %s\n%s", r.url, r.status, loc, r.body)
	}
	if got := r.header.Get("Location"); got != loc {
		r.t.Fatalf("%s: redirect to %q, want %q", r.url, got, loc)
	}
	return r
}

func (r *resp) wantText(sel, substr string) *resp {
	r.t.Helper()
	if got := r.text(sel); !strings.Contains(got, substr) {
		r.t.Fatalf("%s: %s text %q does not contain %q", r.url, sel, got, substr)
	}
	return r
}

func (r *resp) heading() string { return r.text("h1") }
