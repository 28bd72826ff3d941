package main

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

// browser is one person on the redemption site: a cookie jar, no redirect
// following (the tests look at the redirects), and optionally a client
// address announced through X-Forwarded-For (the site trusts the loopback
// proxy in the parts that need several addresses).
type browser struct {
	c    *http.Client
	base string // http://host:port
	xff  string
}

func newBrowser(base, xff string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{
		c: &http.Client{Jar: jar, Timeout: 60 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		base: strings.TrimRight(base, "/"), xff: xff,
	}
}

// page is a response as the tests need it.
type page struct {
	Status   int
	Location string
	Body     string
}

func (b *browser) do(method, path string, form url.Values, hdr http.Header) (*page, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.base)
	}
	if b.xff != "" {
		req.Header.Set("X-Forwarded-For", b.xff)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &page{Status: resp.StatusCode, Location: resp.Header.Get("Location"), Body: string(raw)}, nil
}

func (b *browser) get(path string) (*page, error) { return b.do(http.MethodGet, path, nil, nil) }

var hiddenRe = regexp.MustCompile(`name="(csrf_token|code)" value="([^"]*)"`)

// hidden returns the form's hidden csrf_token and code fields.
func hidden(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(body, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

// redeem opens the invitation link and signs up with it. It returns the
// sign-up POST's answer (303 to /profile on success).
func (b *browser) redeem(code, username, password string) (*page, error) {
	p, err := b.get("/invitation?code=" + url.QueryEscape(code))
	if err != nil {
		return nil, err
	}
	if p.Status != http.StatusOK {
		return p, fmt.Errorf("invitation page: status %d", p.Status)
	}
	form := hidden(p.Body)
	if form.Get("csrf_token") == "" || form.Get("code") == "" {
		return p, fmt.Errorf("invitation page has no sign-up form")
	}
	form.Set("username", username)
	form.Set("password", password)
	form.Set("confirm_password", password)
	return b.do(http.MethodPost, "/invitation", form, nil)
}

var linkRe = regexp.MustCompile(`href="([^"]*/invitation\?code=[^"]+)"`)

// invitationCodes maps recipient address -> the code in the last email sent
// to it.
func invitationCodes(out []emulator.SentEmail) map[string]string {
	codes := map[string]string{}
	for _, e := range out {
		m := linkRe.FindStringSubmatch(e.HTML)
		if m == nil {
			continue
		}
		u, err := url.Parse(html.UnescapeString(m[1]))
		if err != nil {
			continue
		}
		for _, to := range e.To {
			codes[strings.ToLower(to)] = u.Query().Get("code")
		}
	}
	return codes
}

// benchPassword satisfies the default password policy.
const benchPassword = "Blue-Harbor-Lantern-42"
