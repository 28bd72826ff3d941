package portalweb

import (
	"context"
	"html"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dvtest"
	"github.com/d365portal/connector/internal/invite"
)

// live is the site over the real invitation service, the real Dataverse
// client and the Dataverse emulator, with a real redis-server.
type live struct {
	*harness
	em    *emulator.Running
	dv    *dataverse.Client
	svc   *invite.Service
	demo  *emulator.Demo
	clock *dvtest.Clock
	ctx   context.Context
}

type liveOpts struct {
	plainHTTP bool
	site      func(*Config)
	service   func(*invite.Config)
}

func newLive(t testing.TB, o liveOpts) *live {
	t.Helper()
	org := dvtest.Start(t, dataverse.Config{MaxRetries: 1})
	l := &live{em: org.Emu, dv: org.DV, demo: org.Demo, clock: dvtest.NewClock(), ctx: context.Background()}
	build := func(baseURL string) Accounts {
		cfg := invite.Config{
			Portals: []invite.Portal{{Name: testPortal, WebsiteID: emulator.DemoSiteID, BaseURL: baseURL,
				DefaultRoles: []string{"Partners"}, ExistingUserPage: "/login", AfterRedeemPage: "/profile",
				Email: invite.EmailSettings{Sender: "systemuser:" + emulator.DemoMailerUserID}}},
			PasswordHash: invite.HashAspNetV2,
			TokenSecret:  []byte("portalweb-test-token-secret-0123456789"),
			Lockout:      invite.Lockout{MaxFailed: 3, Duration: 10 * time.Minute},
			Now:          l.clock.Now,
		}
		if o.service != nil {
			o.service(&cfg)
		}
		svc, err := invite.New(l.dv, cfg)
		if err != nil {
			t.Fatal(err)
		}
		l.svc = svc
		return svc
	}
	l.harness = newHarness(t, nil, o.site, harnessOpts{plainHTTP: o.plainHTTP, accounts: build})
	return l
}

// contact returns demo contact i (0-based) and its email address.
func (l *live) contact(i int) (id, email string) {
	id = l.demo.ContactIDs[i]
	row, _ := l.em.Row("contact", id)
	email, _ = row["emailaddress1"].(string)
	return id, email
}

func (l *live) invite(t testing.TB, contactID string) *invite.InviteResult {
	t.Helper()
	res, err := l.svc.Invite(l.ctx, invite.InviteRequest{ContactID: contactID, Portal: testPortal, Source: "test"})
	if err != nil {
		t.Fatalf("Invite: %v", err)
	}
	return res
}

var linkRE = regexp.MustCompile(`https?://[^\s"'<>]+`)

// emailLink returns the last link to path in an email sent to addr.
func (l *live) emailLink(t testing.TB, addr, path string) string {
	t.Helper()
	found := l.findEmailLink(addr, path)
	if found == "" {
		t.Fatalf("no email to %s with a %s link; outbox has %d emails", addr, path, len(l.em.Outbox()))
	}
	return found
}

// findEmailLink is emailLink without failing: "" when there is none yet.
func (l *live) findEmailLink(addr, path string) string {
	var found string
	for _, m := range l.em.Outbox() {
		to := strings.Join(m.To, ",")
		if !strings.Contains(strings.ToLower(to), strings.ToLower(addr)) {
			continue
		}
		for _, body := range []string{m.Text, m.HTML} {
			for _, u := range linkRE.FindAllString(html.UnescapeString(body), -1) {
				if pu, err := url.Parse(u); err == nil && pu.Path == path && pu.RawQuery != "" {
					found = u
				}
			}
		}
	}
	return found
}

// local strips the site's origin from a link.
func local(link string) string {
	u, _ := url.Parse(link)
	return u.RequestURI()
}

func (l *live) contactRow(t testing.TB, id string) map[string]any {
	t.Helper()
	row, ok := l.em.Row("contact", id)
	if !ok {
		t.Fatalf("contact %s missing", id)
	}
	return row
}
