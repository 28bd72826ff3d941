package invite

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dvtest"
)

const (
	partnerPortal  = "Contoso Partner Portal"  // enhanced data model, hashed codes
	customerPortal = "Contoso Customer Portal" // standard data model, plain codes
	goodPassword   = "Blue-Kettle-42"
)

type env struct {
	t     *testing.T
	em    *emulator.Running
	dv    *dataverse.Client
	svc   *Service
	demo  *emulator.Demo
	clock *dvtest.Clock
	ctx   context.Context
}

func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	org := dvtest.Start(t, dataverse.Config{})
	em, demo, dv := org.Emu, org.Demo, org.DV
	clk := dvtest.NewClock()
	cfg := Config{
		Portals: []Portal{
			{Name: partnerPortal, WebsiteID: emulator.DemoSiteID, BaseURL: "https://partners.contoso.example/",
				DefaultRoles: []string{"Partners"}, Email: EmailSettings{Sender: "systemuser:" + emulator.DemoMailerUserID}},
			{Name: customerPortal, DataModel: ModelStandard, WebsiteID: emulator.DemoWebsiteID, BaseURL: "https://customers.contoso.example",
				DefaultRoles: []string{"Customers"}, CodeStorage: CodePlain, Email: EmailSettings{Sender: "initiating_user",
					Subject: "{{.PortalName}}: your invitation"}},
		},
		PasswordHash: HashAspNetV2, // fast in tests; V3 is covered by the sign-in rehash test
		TokenSecret:  []byte("test-token-secret-test-token-secret"),
		Now:          clk.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	svc, err := New(dv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, em: em, dv: dv, svc: svc, demo: demo, clock: clk, ctx: context.Background()}
}

// contact returns the i-th demo contact id (0-based; 10 has no email, 11 is inactive).
func (e *env) contact(i int) string { return e.demo.ContactIDs[i] }

func (e *env) row(table, id string) map[string]any {
	e.t.Helper()
	r, ok := e.em.Row(table, id)
	if !ok {
		e.t.Fatalf("%s %s not found", table, id)
	}
	return r
}

func (e *env) invite(contact, portal string, roles ...string) *InviteResult {
	e.t.Helper()
	res, err := e.svc.Invite(e.ctx, InviteRequest{ContactID: contact, Portal: portal, Roles: roles, Source: "test"})
	if err != nil {
		e.t.Fatalf("Invite: %v", err)
	}
	return res
}

func (e *env) invitationsOf(contact string) []map[string]any {
	var out []map[string]any
	for _, r := range e.em.Rows("adx_invitation") {
		if strings.EqualFold(str(r["adx_invitecontact"]), contact) {
			out = append(out, r)
		}
	}
	return out
}

func (e *env) emailsTo(addr string) []emulator.SentEmail {
	var out []emulator.SentEmail
	for _, m := range e.em.Outbox() {
		for _, to := range m.To {
			if strings.EqualFold(to, addr) {
				out = append(out, m)
			}
		}
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }

func num(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		return int(n)
	}
	return -1
}

var tokenRE = regexp.MustCompile(`\?token=([A-Za-z0-9_-]+)`)

func tokenFrom(t *testing.T, m emulator.SentEmail) string {
	t.Helper()
	mm := tokenRE.FindStringSubmatch(m.HTML)
	if mm == nil {
		t.Fatalf("no token link in %q", m.HTML)
	}
	return mm[1]
}

func TestInviteBothDataModels(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name, portal, contact, initiator string
		roles                            []string
		model                            string
		wantRoles                        []string
		wantFrom                         string
	}{
		{"enhanced default roles", partnerPortal, e.contact(0), "", nil, ModelEnhanced,
			[]string{emulator.DemoRolePartnersID}, "portal-mailer@contoso.example"},
		{"enhanced two roles by initiating user", partnerPortal, e.contact(1), emulator.DemoAdminUserID, []string{"partners", "Customers"},
			ModelEnhanced, []string{emulator.DemoRolePartnersID, emulator.DemoRoleCustomersID}, "portal-mailer@contoso.example"},
		{"standard from initiating user", customerPortal, e.contact(2), emulator.DemoAdminUserID, []string{"Customers", "Administrators"},
			ModelStandard, []string{emulator.DemoWebRoleCustomersID, emulator.DemoWebRoleAdministratorsID}, "avery.admin@contoso.example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			res, err := e.svc.Invite(e.ctx, InviteRequest{ContactID: tc.contact, Portal: tc.portal, Roles: tc.roles,
				InitiatingUserID: tc.initiator, Source: "test"})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Created || !res.EmailSent || res.Reused || res.Code == "" {
				t.Fatalf("result %+v", res)
			}
			inv := e.row("adx_invitation", res.Invitation.ID)
			pc := e.svc.portals[strings.ToLower(tc.portal)]
			m := models[tc.model]
			if num(inv["adx_type"]) != invTypeSingle || num(inv["statuscode"]) != invStatusSent || num(inv["statecode"]) != 0 ||
				num(inv["adx_maximumredemptions"]) != 1 || num(inv["adx_redemptions"]) != 0 {
				t.Errorf("invitation row %v", inv)
			}
			if str(inv["adx_invitecontact"]) != tc.contact {
				t.Errorf("invitee %v", inv["adx_invitecontact"])
			}
			site := str(inv[strings.TrimSuffix(strings.TrimPrefix(m.websiteValue, "_"), "_value")])
			if site != pc.WebsiteID {
				t.Errorf("website lookup %q, want %q", site, pc.WebsiteID)
			}
			wantCode := HashCode(res.Code)
			if pc.CodeStorage == CodePlain {
				wantCode = string(res.Code)
			}
			if str(inv["adx_invitationcode"]) != wantCode {
				t.Errorf("stored code %q, want %q (%s)", inv["adx_invitationcode"], wantCode, pc.CodeStorage)
			}
			if exp, ok := inv["adx_expirydate"].(time.Time); !ok || exp.Sub(e.clock.Now()) < 29*24*time.Hour {
				t.Errorf("expiry %v", inv["adx_expirydate"])
			}
			if tc.initiator != "" && str(inv["ownerid"]) != tc.initiator {
				t.Errorf("owner %v, want the initiating user", inv["ownerid"])
			}
			got := e.em.Associated(m.invRoles, res.Invitation.ID)
			if !sameSet(got, tc.wantRoles) {
				t.Errorf("invitation roles %v, want %v", got, tc.wantRoles)
			}
			c := e.row("contact", tc.contact)
			mails := e.emailsTo(str(c["emailaddress1"]))
			if len(mails) != 1 {
				t.Fatalf("%d emails", len(mails))
			}
			mail := mails[0]
			if mail.RegardingID != res.Invitation.ID || !strings.EqualFold(mail.From, tc.wantFrom) {
				t.Errorf("email regarding %s from %s", mail.RegardingID, mail.From)
			}
			link := pc.BaseURL + "/invitation?" + url.Values{"code": {string(res.Code)}}.Encode()
			if res.Link != link || !strings.Contains(mail.HTML, link) || !strings.Contains(mail.HTML, res.Code.Grouped()) ||
				!strings.Contains(mail.HTML, str(c["firstname"])) || !strings.Contains(mail.Subject, tc.portal) {
				t.Errorf("email %q / %q lacks link %s, grouped code or name", mail.Subject, mail.HTML, link)
			}
			email := e.row("email", res.EmailID)
			if num(email["statecode"]) != 1 {
				t.Errorf("email not sent: %v", email["statuscode"])
			}
			if tc.initiator != "" {
				if owner := e.emailOwner(res.EmailID); owner != tc.initiator {
					t.Errorf("email _ownerid_value %q, want the initiating user %s", owner, tc.initiator)
				}
			}
			if num(c[emulator.ColInviteStatus]) != emulator.InviteSent || str(c[emulator.ColInvitePortal]) != tc.portal ||
				c[emulator.ColInvitedOn] == nil || c[emulator.ColInviteError] != nil {
				t.Errorf("contact write-back %v %v %v %v", c[emulator.ColInviteStatus], c[emulator.ColInvitePortal], c[emulator.ColInvitedOn], c[emulator.ColInviteError])
			}
			if !strings.Contains(str(c[emulator.ColInviteRoles]), res.Invitation.Roles[0]) {
				t.Errorf("roles column %q", c[emulator.ColInviteRoles])
			}
		})
	}
}

// emailOwner reads an email's owner through the Web API, as Dynamics shows it.
func (e *env) emailOwner(id string) string {
	e.t.Helper()
	r, err := e.dv.Retrieve(e.ctx, "emails", id, &dataverse.Query{Select: []string{"_ownerid_value"}})
	if err != nil {
		e.t.Fatalf("read email %s: %v", id, err)
	}
	return strings.ToLower(r.Str("_ownerid_value"))
}

// TestLifecycleBothDataModels runs invite (started by a CRM user, so the
// owner is bound), resend, redeem and revoke on each data model against the
// emulator, which refuses any name the table reference does not have.
func TestLifecycleBothDataModels(t *testing.T) {
	e := newEnv(t, nil)
	for i, tc := range []struct {
		portal, contactRel, invRel string
	}{
		{partnerPortal, "powerpagecomponent_mspp_webrole_contact", "adx_invitation_mspp_webrole_powerpagecomponent"},
		{customerPortal, "adx_webrole_contact", "adx_invitation_webrole"},
	} {
		t.Run(tc.portal, func(t *testing.T) {
			e.t = t
			first, second := e.contact(3+2*i), e.contact(4+2*i)
			res, err := e.svc.Invite(e.ctx, InviteRequest{ContactID: first, Portal: tc.portal, InitiatingUserID: emulator.DemoAdminUserID, Source: "test"})
			if err != nil {
				t.Fatalf("invite: %v", err)
			}
			if inv := e.row("adx_invitation", res.Invitation.ID); str(inv["ownerid"]) != emulator.DemoAdminUserID {
				t.Fatalf("invitation owner %v", inv["ownerid"])
			}
			if len(e.em.Associated(tc.invRel, res.Invitation.ID)) != 1 {
				t.Fatalf("invitation roles through %s: %v", tc.invRel, e.em.Associated(tc.invRel, res.Invitation.ID))
			}
			re, err := e.svc.Resend(e.ctx, res.Invitation.ID)
			if err != nil {
				t.Fatalf("resend: %v", err)
			}
			for _, id := range []string{res.EmailID, re.EmailID} {
				if owner := e.emailOwner(id); owner != emulator.DemoAdminUserID {
					t.Fatalf("email %s owner %q, want the initiating user", id, owner)
				}
			}
			acc, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(re.Code), Username: "life-" + first[len(first)-3:], Password: goodPassword, IPAddress: "192.0.2.1"})
			if err != nil {
				t.Fatalf("redeem: %v", err)
			}
			if roles := e.em.Associated(tc.contactRel, first); len(roles) != 1 || acc.ContactID != first {
				t.Fatalf("redeemed roles through %s: %v (%+v)", tc.contactRel, roles, acc)
			}
			other := e.invite(second, tc.portal)
			if err := e.svc.Revoke(e.ctx, other.Invitation.ID); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			if row := e.row("adx_invitation", other.Invitation.ID); num(row["statecode"]) != 1 || num(row["statuscode"]) != invStatusInactive {
				t.Fatalf("revoked row %v/%v", row["statecode"], row["statuscode"])
			}
			if _, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(other.Code), Username: "revoked-" + second[len(second)-3:], Password: goodPassword}); !errors.Is(err, ErrCodeRevoked) {
				t.Fatalf("redeeming a revoked invitation: %v", err)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[strings.ToLower(x)] = true
	}
	for _, x := range b {
		if !m[strings.ToLower(x)] {
			return false
		}
	}
	return true
}

// TestRequestCounts prints (and bounds) the Dataverse requests one
// invitation and one redemption take.
func TestRequestCounts(t *testing.T) {
	e := newEnv(t, nil)
	for _, portal := range []string{partnerPortal, customerPortal} {
		e.invite(e.contact(5), portal) // warms the role cache for the website
	}
	for i, portal := range []string{partnerPortal, customerPortal} {
		e.em.ResetStats()
		res := e.invite(e.contact(i), portal)
		inviteStats := e.em.Stats()
		e.em.ResetStats()
		_, err := e.svc.Redeem(e.ctx, RedeemRequest{Code: string(res.Code), Username: "user" + string(rune('a'+i)), Password: goodPassword, IPAddress: "198.51.100.7"})
		if err != nil {
			t.Fatal(err)
		}
		redeemStats := e.em.Stats()
		t.Logf("%s: invitation = %d HTTP requests (%v); redemption = %d HTTP requests (%v)",
			portal, inviteStats.Total, inviteStats.ByRoute, redeemStats.Total, redeemStats.ByRoute)
		if inviteStats.Total != 2 || redeemStats.Total != 2 {
			t.Errorf("invitation %d, redemption %d requests; want 2 and 2", inviteStats.Total, redeemStats.Total)
		}
	}
	// Cold role cache: one more request, once per website and TTL.
	e2 := newEnv(t, nil)
	e2.em.ResetStats()
	e2.invite(e2.contact(0), partnerPortal)
	e2.invite(e2.contact(1), partnerPortal)
	t.Logf("two invitations with a cold role cache: %d HTTP requests", e2.em.Stats().Total)
	if n := e2.em.Stats().Count("GET", "powerpagecomponents"); n != 1 {
		t.Errorf("role queries %d, want 1 (cached)", n)
	}
	e2.clock.Add(6 * time.Minute) // past RoleCacheTTL
	e2.invite(e2.contact(2), partnerPortal)
	if n := e2.em.Stats().Count("GET", "powerpagecomponents"); n != 2 {
		t.Errorf("role queries %d after the TTL, want 2", n)
	}
}
