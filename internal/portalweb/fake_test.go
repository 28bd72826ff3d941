package portalweb

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/d365portal/connector/internal/invite"
)

// fakeAccounts is an in-memory Accounts for fast tests of the site's own
// behaviour. Errors can be forced per method through failWith.
type fakeAccounts struct {
	mu          sync.Mutex
	portals     []invite.Portal
	invitations map[string]*invite.Invitation // by canonical code
	codeErrs    map[string]error              // Lookup/Redeem outcome per code
	accounts    map[string]*invite.Account    // by contact id
	passwords   map[string]string             // contact id -> password
	failWith    map[string]error              // method name -> error
	panicIn     string                        // method name that panics
	calls       []string
	registered  []invite.RegisterRequest
	resets      []string // emails
	redeemed    []invite.RedeemRequest
	confirmSent []string
	tokens      map[string]string // reset/confirm token -> contact id
}

func newFakeAccounts(portals ...invite.Portal) *fakeAccounts {
	return &fakeAccounts{portals: portals, invitations: map[string]*invite.Invitation{}, codeErrs: map[string]error{},
		accounts: map[string]*invite.Account{}, passwords: map[string]string{}, failWith: map[string]error{}, tokens: map[string]string{}}
}

var _ Accounts = (*fakeAccounts)(nil)

func fakeCode(code string) string {
	if c, ok := invite.NormalizeCode(code); ok {
		return string(c)
	}
	return strings.TrimSpace(code)
}

func (f *fakeAccounts) enter(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method)
	if f.panicIn == method {
		panic("fake: boom in " + method)
	}
	return f.failWith[method]
}

func (f *fakeAccounts) called(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == method {
			n++
		}
	}
	return n
}

func (f *fakeAccounts) Lookup(ctx context.Context, code string) (*invite.Invitation, error) {
	if err := f.enter("Lookup"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fakeCode(code)
	inv, ok := f.invitations[k]
	if !ok {
		return nil, invite.ErrCodeUnknown
	}
	cp := *inv
	return &cp, f.codeErrs[k]
}

func (f *fakeAccounts) Redeem(ctx context.Context, req invite.RedeemRequest) (*invite.Account, error) {
	if err := f.enter("Redeem"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fakeCode(req.Code)
	inv, ok := f.invitations[k]
	if !ok {
		return nil, invite.ErrCodeUnknown
	}
	if err := f.codeErrs[k]; err != nil {
		return nil, err
	}
	if inv.ContactHasIdentity {
		return nil, invite.ErrExistingUser
	}
	if p, _ := f.portal(inv.Portal); p.Terms != "" && !req.AcceptedTerms {
		return nil, invite.ErrTermsRequired
	}
	if err := (invite.PasswordPolicy{}).Check(req.Password); err != nil {
		return nil, err
	}
	username := req.Username
	if username == "" {
		username = inv.ContactEmail
	}
	for _, a := range f.accounts {
		if strings.EqualFold(a.Username, username) {
			return nil, invite.ErrUsernameTaken
		}
	}
	f.redeemed = append(f.redeemed, req)
	acc := &invite.Account{ContactID: inv.ContactID, Username: username, Email: inv.ContactEmail, FirstName: inv.ContactFirstName,
		LastName: inv.ContactLastName, Portal: inv.Portal, SecurityStamp: "stamp-1", Roles: inv.Roles, InvitationID: inv.ID}
	if inv.ContactID == "" { // group invitation: the redeemer says who they are
		if req.Email == "" {
			return nil, invite.ErrNoEmail
		}
		acc.ContactID, acc.Email, acc.FirstName, acc.LastName = "g-"+req.Email, req.Email, req.FirstName, req.LastName
		if req.Username == "" {
			acc.Username = req.Email
		}
	}
	f.accounts[acc.ContactID] = acc
	f.passwords[acc.ContactID] = req.Password
	if inv.Type == invite.TypeSingle {
		f.codeErrs[k] = invite.ErrCodeUsedUp
	}
	cp := *acc
	return &cp, nil
}

func (f *fakeAccounts) Register(ctx context.Context, req invite.RegisterRequest) error {
	if err := f.enter("Register"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registered = append(f.registered, req)
	return nil
}

func (f *fakeAccounts) SignIn(ctx context.Context, portal, login, password string) (*invite.Account, error) {
	if err := f.enter("SignIn"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, a := range f.accounts {
		if strings.EqualFold(a.Username, login) || strings.EqualFold(a.Email, login) {
			if f.passwords[id] != password {
				return nil, invite.ErrBadCredentials
			}
			cp := *a
			cp.Portal = portal
			return &cp, nil
		}
	}
	return nil, invite.ErrBadCredentials
}

func (f *fakeAccounts) Account(ctx context.Context, contactID string) (*invite.Account, error) {
	if err := f.enter("Account"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.accounts[contactID]
	if !ok {
		return nil, invite.ErrNotFound
	}
	cp := *a
	return &cp, nil
}

func (f *fakeAccounts) UpdateProfile(ctx context.Context, contactID string, p invite.Profile) error {
	if err := f.enter("UpdateProfile"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.accounts[contactID]
	if !ok {
		return invite.ErrNotFound
	}
	a.FirstName, a.LastName, a.MobilePhone, a.JobTitle = p.FirstName, p.LastName, p.MobilePhone, p.JobTitle
	return nil
}

func (f *fakeAccounts) SendEmailConfirmation(ctx context.Context, portal, contactID string) error {
	if err := f.enter("SendEmailConfirmation"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.confirmSent = append(f.confirmSent, contactID)
	f.tokens["confirm-"+contactID] = contactID
	return nil
}

func (f *fakeAccounts) ConfirmEmail(ctx context.Context, token string) (*invite.Account, error) {
	if err := f.enter("ConfirmEmail"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.tokens[token]
	if !ok || !strings.HasPrefix(token, "confirm-") {
		return nil, invite.ErrTokenInvalid
	}
	delete(f.tokens, token)
	a := f.accounts[id]
	a.EmailConfirmed = true
	cp := *a
	return &cp, nil
}

func (f *fakeAccounts) RequestPasswordReset(ctx context.Context, portal, email string) error {
	if err := f.enter("RequestPasswordReset"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets = append(f.resets, email)
	for id, a := range f.accounts {
		if strings.EqualFold(a.Email, email) {
			f.tokens["reset-"+id] = id
		}
	}
	return nil
}

func (f *fakeAccounts) ResetPassword(ctx context.Context, token, newPassword string) error {
	if err := f.enter("ResetPassword"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.tokens[token]
	if !ok || !strings.HasPrefix(token, "reset-") {
		return invite.ErrTokenInvalid
	}
	if err := (invite.PasswordPolicy{}).Check(newPassword); err != nil {
		return err
	}
	delete(f.tokens, token)
	f.passwords[id] = newPassword
	f.accounts[id].SecurityStamp = "stamp-" + time.Now().Format("150405.000000000")
	return nil
}

func (f *fakeAccounts) portal(name string) (invite.Portal, bool) {
	for _, p := range f.portals {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return invite.Portal{}, false
}

func (f *fakeAccounts) Portal(name string) (invite.Portal, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.portal(name)
}

func (f *fakeAccounts) Portals() []invite.Portal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]invite.Portal(nil), f.portals...)
}

// addInvitation registers an open single invitation and returns its code.
func (f *fakeAccounts) addInvitation(portal, contactID, first, last, email string) string {
	code, _ := invite.NewCode()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invitations[string(code)] = &invite.Invitation{ID: "inv-" + contactID, Portal: portal, Type: invite.TypeSingle,
		ContactID: contactID, ContactFirstName: first, ContactLastName: last, ContactName: first + " " + last, ContactEmail: email,
		Roles: []string{"Partners"}, ExpiresAt: time.Now().Add(30 * 24 * time.Hour), MaxRedemptions: 1}
	return string(code)
}

func (f *fakeAccounts) setCodeErr(code string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.codeErrs[fakeCode(code)] = err
}

func (f *fakeAccounts) setFail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failWith[method] = err
}
