package portalweb

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/identity"
	"github.com/d365portal/connector/internal/invite"
)

// Sign-in with an external identity provider (OpenID Connect, authorization
// code with PKCE). The start route begins a sign-in and binds it to the
// browser session; the callback consumes it exactly once, then signs in,
// redeems the invitation or links the login, depending on what was started.
//
// What must survive between the two requests (state, nonce, PKCE verifier,
// and what the sign-in is for) lives in Redis under a random flow id that
// only this browser's session holds. The callback takes the id out of the
// session and the record out of Redis with GETDEL before anything else, so
// a replayed or concurrent callback finds nothing, on any replica.

const (
	sessFlow       = "ext_flow"      // id of the sign-in in progress
	sessInviteCode = "invite_code"   // code of the invitation page shown last
	sessProvider   = "ext_provider"  // provider the session signed in with
	sessIDToken    = "ext_id_token"  // its ID token, the id_token_hint for sign-out
	callbackPrefix = "/signin-oidc/" // + provider name: the redirect URI path
	startPrefix    = "/login/external/"
)

// What a started sign-in is for.
const (
	intentSignIn = "signin"
	intentRedeem = "redeem"
	intentLink   = "link"
)

// flowState is the server-side record of a sign-in in progress.
type flowState struct {
	Pending identity.Pending `json:"pending"`
	Intent  string           `json:"intent"`
	Portal  string           `json:"portal"`
	Code    string           `json:"code,omitempty"`    // redeem
	Terms   bool             `json:"terms,omitempty"`   // redeem: terms accepted
	Next    string           `json:"next,omitempty"`    // signin: local path to return to
	Contact string           `json:"contact,omitempty"` // link: the signed-in contact
}

func (s *Server) flowKey(id string) string { return s.prefix + "signin:" + hashToken(id) }

// CallbackPath is the path of a provider's redirect URI on this site.
func CallbackPath(provider string) string { return callbackPrefix + provider }

// ProviderButton is one "Continue with …" button.
type ProviderButton struct {
	Name, Label string
}

// ExternalChoices are the provider buttons of a page: one form whose
// buttons post to each provider's start route.
type ExternalChoices struct {
	Buttons   []ProviderButton
	CSRFToken string
	Intent    string
	Next      string
	Terms     *Field // redeem with portal terms: the checkbox, in this form
}

// providersFor returns the providers portal offers, in configuration order.
func (s *Server) providersFor(portal string) []*identity.Provider {
	if s.providers == nil {
		return nil
	}
	names, restricted := s.portalProviders[strings.ToLower(portal)]
	var out []*identity.Provider
	for _, p := range s.providers.Providers() {
		if !restricted || slices.Contains(names, p.Name()) {
			out = append(out, p)
		}
	}
	return out
}

// provider returns the named provider if the current portal offers it.
func (s *Server) provider(c *gin.Context, name string) (*identity.Provider, bool) {
	for _, p := range s.providersFor(s.portalFor(c).Name) {
		if p.Name() == name {
			return p, true
		}
	}
	return nil, false
}

// externalChoices builds the buttons for the current portal, or nil.
func (s *Server) externalChoices(c *gin.Context, b *BasePage, intent string, skip func(*identity.Provider) bool) *ExternalChoices {
	ps := s.providersFor(s.portalFor(c).Name)
	if len(ps) == 0 {
		return nil
	}
	ec := &ExternalChoices{CSRFToken: s.csrfToken(c), Intent: intent}
	for _, p := range ps {
		if skip != nil && skip(p) {
			continue
		}
		label := b.T("external.continue_with", "provider", p.DisplayName())
		if intent == intentLink {
			label = b.T("external.link_with", "provider", p.DisplayName())
		}
		ec.Buttons = append(ec.Buttons, ProviderButton{Name: p.Name(), Label: label})
	}
	if len(ec.Buttons) == 0 {
		return nil
	}
	return ec
}

// externalStart begins a sign-in (GET or POST /login/external/:provider).
// intent "redeem" takes the invitation code from the session, never from
// the URL; "link" needs a signed-in session and a POST.
func (s *Server) externalStart(c *gin.Context) {
	p, ok := s.provider(c, c.Param("provider"))
	if !ok {
		s.fail(c, errNotFound)
		return
	}
	ctx := c.Request.Context()
	intent := c.Query("intent")
	next := c.Query("next")
	terms := false
	if c.Request.Method == http.MethodPost {
		intent, next = postValue(c, "intent"), postValue(c, "next")
		terms = c.Request.PostForm.Get("terms") == "on"
	}
	flow := flowState{Intent: intent, Portal: s.portalFor(c).Name}
	switch intent {
	case "", intentSignIn:
		flow.Intent = intentSignIn
		if p, ok := localPath(next); ok {
			flow.Next = p
		}
		if err := s.allow(c, actSignIn, "external:"+p.Name()); err != nil {
			s.fail(c, err)
			return
		}
	case intentRedeem:
		flow.Code = s.sm.GetString(ctx, sessInviteCode)
		if flow.Code == "" {
			s.fail(c, &Error{Status: http.StatusBadRequest, Key: "signin_expired", ShowID: true, Err: errors.New("no invitation code in the session")})
			return
		}
		if err := s.allow(c, actRedeem, flow.Code); err != nil {
			s.fail(c, err)
			return
		}
		if s.portalFor(c).Terms != "" && !terms {
			s.showInvitationTermsError(c, flow.Code)
			return
		}
		flow.Terms = terms
	case intentLink:
		flow.Contact = s.contactID(c)
		if flow.Contact == "" || c.Request.Method != http.MethodPost {
			s.redirect(c, "/login?next=%2Fprofile")
			return
		}
	default:
		s.fail(c, &Error{Status: http.StatusBadRequest, Key: "bad_request", Err: fmt.Errorf("intent %q", intent)})
		return
	}
	si, err := p.Begin(ctx, s.publicURL+CallbackPath(p.Name()), nil)
	if err != nil {
		s.fail(c, err)
		return
	}
	flow.Pending = si.Pending
	raw, err := json.Marshal(flow)
	if err != nil {
		s.fail(c, err)
		return
	}
	id := newToken()
	ttl := time.Until(si.Pending.Expires) + time.Minute
	if err := s.rdb.Set(ctx, s.flowKey(id), raw, ttl).Err(); err != nil {
		s.fail(c, unavailable(fmt.Errorf("store sign-in: %w", err)))
		return
	}
	s.sm.Put(ctx, sessFlow, id)
	s.redirect(c, si.URL)
}

// showInvitationTermsError shows the invitation page again with the terms
// checkbox of the provider form marked.
func (s *Server) showInvitationTermsError(c *gin.Context, code string) {
	inv, err := s.accounts.Lookup(c.Request.Context(), code)
	if inv != nil {
		s.setPortal(c, inv.Portal)
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	pg := s.invitationPage(c, inv, code)
	if pg.External != nil && pg.External.Terms != nil {
		pg.External.Terms.Error = pg.T("validation.terms")
		pg.summarise(pg.External.Terms)
	}
	s.render(c, formStatus, "invitation", pg)
}

// takeFlow removes the sign-in in progress from the session and from Redis,
// returning it if there was one.
func (s *Server) takeFlow(c *gin.Context) (*flowState, error) {
	ctx := c.Request.Context()
	id := s.sm.GetString(ctx, sessFlow)
	if id == "" {
		return nil, fmt.Errorf("callback: %w", identity.ErrNoPendingSignIn)
	}
	s.sm.Remove(ctx, sessFlow)
	raw, err := s.rdb.GetDel(ctx, s.flowKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("callback: %w", identity.ErrNoPendingSignIn)
	}
	if err != nil {
		return nil, unavailable(fmt.Errorf("take sign-in: %w", err))
	}
	var f flowState
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("callback: stored sign-in: %v: %w", err, identity.ErrNoPendingSignIn)
	}
	return &f, nil
}

// externalCallback is the redirect URI (GET /signin-oidc/:provider).
func (s *Server) externalCallback(c *gin.Context) {
	noReferrer(c) // the URL carries the authorization code
	p, ok := s.providerByName(c.Param("provider"))
	if !ok {
		s.fail(c, errNotFound)
		return
	}
	flow, err := s.takeFlow(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.setPortal(c, flow.Portal)
	ctx := c.Request.Context()
	id, err := p.Finish(ctx, flow.Pending, c.Request.URL.Query())
	if err != nil {
		s.fail(c, err)
		return
	}
	login := externalLogin(p, id)
	portal := s.portalFor(c)
	switch flow.Intent {
	case intentSignIn:
		acc, err := s.accounts.SignInExternal(ctx, portal.Name, login)
		if err != nil {
			s.fail(c, err)
			return
		}
		s.finishSignIn(c, acc, p, id, s.afterSignIn(flow.Next), "")
	case intentRedeem:
		acc, err := s.accounts.RedeemExternal(ctx, invite.ExternalRedeemRequest{Code: flow.Code, IPAddress: clientIP(c),
			AcceptedTerms: flow.Terms, Login: login})
		switch {
		case err == nil:
			s.sm.Remove(ctx, sessInviteCode)
			notice := "notice.welcome"
			if acc.LinkedAccount { // redeemed for the account this login already had
				notice = "notice.redeemed_linked"
			}
			s.finishSignIn(c, acc, p, id, pageTarget(portal.AfterRedeemPage, "/profile"), notice)
		case errors.Is(err, invite.ErrExistingUser):
			// The invitee already has an account. If this login is linked to
			// it, that is simply a sign-in; otherwise send them to sign in.
			if acc, serr := s.accounts.SignInExternal(ctx, portal.Name, login); serr == nil {
				s.sm.Remove(ctx, sessInviteCode)
				s.finishSignIn(c, acc, p, id, "/profile", "")
				return
			}
			s.flash(c, "notice.existing_account")
			s.redirect(c, pageTarget(portal.ExistingUserPage, "/login"))
		default:
			s.fail(c, err)
		}
	case intentLink:
		if flow.Contact == "" || flow.Contact != s.contactID(c) {
			s.fail(c, &Error{Status: http.StatusBadRequest, Key: "signin_expired", ShowID: true, Err: errors.New("link started by another session")})
			return
		}
		if err := s.accounts.LinkExternal(ctx, flow.Contact, login); err != nil {
			s.fail(c, err)
			return
		}
		s.flash(c, "notice.login_linked")
		s.redirect(c, "/profile")
	default:
		s.fail(c, &Error{Status: http.StatusBadRequest, Key: "signin_expired", ShowID: true, Err: fmt.Errorf("intent %q", flow.Intent)})
	}
}

// finishSignIn starts the signed-in session (a new session id) and keeps
// what RP-initiated sign-out needs.
func (s *Server) finishSignIn(c *gin.Context, acc *invite.Account, p *identity.Provider, id *identity.Identity, target, notice string) {
	portal := acc.Portal
	if portal == "" {
		portal = s.portalFor(c).Name
	}
	if err := s.signIn(c, acc.ContactID, portal); err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	s.sm.Put(ctx, sessStamp, acc.SecurityStamp)
	s.sm.Put(ctx, sessProvider, p.Name())
	s.sm.Put(ctx, sessIDToken, id.IDToken)
	if notice != "" {
		s.flash(c, notice)
	}
	s.redirect(c, target)
}

func (s *Server) providerByName(name string) (*identity.Provider, bool) {
	if s.providers == nil {
		return nil, false
	}
	return s.providers.Get(name)
}

// externalLogin is the verified identity in the domain's terms.
func externalLogin(p *identity.Provider, id *identity.Identity) invite.ExternalLogin {
	cfg := p.Config()
	first, last := id.GivenName, id.FamilyName
	if first == "" && last == "" && id.Name != "" {
		// Entra sends given_name/family_name only as optional claims.
		if f, l, ok := strings.Cut(strings.TrimSpace(id.Name), " "); ok {
			first, last = f, strings.TrimSpace(l)
		} else {
			last = id.Name
		}
	}
	return invite.ExternalLogin{
		Provider: p.Name(), Issuer: id.Issuer, Key: id.ProviderKey, Email: id.Email, EmailVerified: id.EmailVerified,
		FirstName: first, LastName: last, Columns: id.Mapped, AllowEmailMapping: cfg.AllowContactMappingWithEmail,
	}
}

// endSession is where sign-out sends the browser: the provider's
// end_session_endpoint when the session signed in with one that offers it,
// else the sign-in page. A provider that is down only costs the
// provider-side sign-out.
func (s *Server) endSession(c *gin.Context, providerName, idToken string) string {
	p, ok := s.providerByName(providerName)
	if !ok {
		return "/login"
	}
	u, err := p.EndSessionURL(c.Request.Context(), idToken, s.publicURL+"/login", "")
	if err != nil {
		if !errors.Is(err, identity.ErrNoEndSession) {
			s.log.Warn("provider sign-out unavailable", "request_id", requestID(c), "provider", providerName, "err", err)
		}
		return "/login"
	}
	return u
}

// LoginView is one linked login on the profile page.
type LoginView struct {
	ID, Provider string
	LinkedOn     string
	CanRemove    bool
}

// profileLogins lists the account's logins with the providers' names.
func (s *Server) profileLogins(c *gin.Context, b *BasePage, acc *invite.Account) ([]LoginView, map[string]bool, error) {
	logins, err := s.accounts.ExternalLogins(c.Request.Context(), acc.ContactID)
	if err != nil {
		return nil, nil, err
	}
	ways := len(logins)
	if acc.HasPassword && !s.localLoginDisabled {
		ways++
	}
	linked := map[string]bool{}
	out := make([]LoginView, 0, len(logins))
	for _, l := range logins {
		name := l.Issuer
		if s.providers != nil {
			for _, p := range s.providers.Providers() {
				if p.Config().Issuer == l.Issuer {
					name = p.DisplayName()
					linked[p.Name()] = true
					break
				}
			}
		}
		v := LoginView{ID: l.ID, Provider: name, CanRemove: ways > 1}
		if !l.LinkedOn.IsZero() {
			v.LinkedOn = formatDate(b.tr, l.LinkedOn)
		}
		out = append(out, v)
	}
	return out, linked, nil
}

// profileUnlink removes one login (POST /profile/logins/remove).
func (s *Server) profileUnlink(c *gin.Context) {
	acc, ok := s.account(c)
	if !ok {
		return
	}
	err := s.accounts.UnlinkExternal(c.Request.Context(), acc.ContactID, postValue(c, "login_id"))
	switch {
	case err == nil:
		s.flash(c, "notice.login_removed")
	case errors.Is(err, invite.ErrLastLogin):
		s.flash(c, "profile.last_login")
	case errors.Is(err, invite.ErrNotFound):
		s.flash(c, "profile.login_gone")
	default:
		s.fail(c, err)
		return
	}
	s.redirect(c, "/profile")
}

// localOnly answers 404 on password routes when local sign-in is disabled,
// as Power Pages' [LocalLogin] actions do.
func (s *Server) localOnly(c *gin.Context) {
	if s.localLoginDisabled {
		s.fail(c, errNotFound)
		c.Abort()
		return
	}
	c.Next()
}

// providerOrigins are the origins sign-in and sign-out forms may redirect
// to (CSP form-action covers the redirects that follow a form).
func providerOrigins(reg *identity.Registry) []string {
	if reg == nil {
		return nil
	}
	var out []string
	for _, p := range reg.Providers() {
		cfg := p.Config()
		for _, raw := range []string{cfg.Issuer, cfg.Authority} {
			if u, err := url.Parse(raw); err == nil && u.Host != "" {
				if o := u.Scheme + "://" + u.Host; !slices.Contains(out, o) {
					out = append(out, o)
				}
			}
		}
	}
	return out
}

// externalErrorActions offer the way back after a refused sign-in: the
// invitation when one was being redeemed, the profile when signed in, and
// sign-in otherwise (where local sign-in keeps working while a provider is
// down).
func (s *Server) externalErrorActions(c *gin.Context, b *BasePage) []Action {
	if s.contactID(c) != "" {
		return []Action{{URL: "/profile", Label: b.T("action.profile"), Primary: true}}
	}
	var out []Action
	if s.hasSession(c) {
		if code := s.sm.GetString(c.Request.Context(), sessInviteCode); code != "" {
			out = append(out, Action{URL: "/invitation?code=" + url.QueryEscape(code), Label: b.T("action.back_to_invitation"), Primary: true})
		}
	}
	out = append(out, Action{URL: "/login", Label: b.T("action.sign_in"), Primary: len(out) == 0})
	return out
}
