package invite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/google/uuid"
)

// identitySelect are the contact columns of a portal identity.
var identitySelect = []string{"contactid", "firstname", "lastname", "fullname", "emailaddress1", "mobilephone", "jobtitle",
	"statecode", "adx_identity_username", "adx_identity_passwordhash", "adx_identity_securitystamp",
	"adx_identity_logonenabled", "adx_identity_emailaddress1confirmed", "adx_identity_lockoutenabled",
	"adx_identity_lockoutenddate", "adx_identity_accessfailedcount", "adx_identity_locallogindisabled"}

// rolesExpand reads a contact's web roles for the given models.
func rolesExpand(ms ...*model) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.contactRoles+"($select="+m.roleID+","+m.roleName+","+m.roleWebsite+")")
	}
	return out
}

// toAccount maps a contact; with pc set only that website's roles count.
func (s *Service) toAccount(r dataverse.Record, pc *portalConf) *Account {
	acc := &Account{
		ContactID: strings.ToLower(r.Str("contactid")), Username: r.Str("adx_identity_username"),
		Email: r.Str("emailaddress1"), FirstName: r.Str("firstname"), LastName: r.Str("lastname"),
		FullName: r.Str("fullname"), MobilePhone: r.Str("mobilephone"), JobTitle: r.Str("jobtitle"),
		EmailConfirmed: r.Bool("adx_identity_emailaddress1confirmed"),
		SecurityStamp:  r.Str("adx_identity_securitystamp"),
		HasPassword:    r.Str("adx_identity_passwordhash") != "",
	}
	ms := s.models
	if pc != nil {
		acc.Portal = pc.Name
		ms = []*model{pc.model}
	}
	for _, m := range ms {
		list, _ := r[m.contactRoles].([]any)
		for _, x := range list {
			rr, ok := x.(map[string]any)
			if !ok {
				continue
			}
			role := dataverse.Record(rr)
			site := strings.ToLower(role.Str(m.roleWebsite))
			if pc != nil && site != pc.WebsiteID {
				continue
			}
			if pc == nil && s.portalForWebsite(site) == nil {
				continue
			}
			acc.Roles = append(acc.Roles, role.Str(m.roleName))
		}
	}
	return acc
}

// SignIn checks a user name (or email address) and password for a portal.
// It enforces lockout (adx_identity_accessfailedcount and
// adx_identity_lockoutenddate, Config.Lockout) and rehashes the stored hash
// when it is weaker than Config.PasswordHash. Errors: ErrUnknownPortal,
// ErrBadCredentials (unknown user, wrong password, sign-in disabled),
// *LockedOutError (errors.Is ErrLockedOut).
func (s *Service) SignIn(ctx context.Context, portal, login, password string) (*Account, error) {
	pc, err := s.portal(portal)
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	login = strings.TrimSpace(login)
	if login == "" || len(login) > 320 {
		return nil, fmt.Errorf("sign in: %w", ErrBadCredentials)
	}
	filter := "adx_identity_username eq " + dataverse.Quote(login)
	if strings.Contains(login, "@") {
		filter += " or (emailaddress1 eq " + dataverse.Quote(login) + " and adx_identity_logonenabled eq true)"
	}
	page, err := s.dv.QueryPage(ctx, "contacts", &dataverse.Query{Select: identitySelect, Filter: filter,
		Expand: rolesExpand(pc.model), Top: 5}, "")
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	c := pickLogin(page.Records, login)
	if c == nil || !c.Bool("adx_identity_logonenabled") || c.Bool("adx_identity_locallogindisabled") ||
		c.Int("statecode") != contactStateActive || c.Str("adx_identity_passwordhash") == "" {
		s.hasher.Verify(s.dummyHash(), password) // same work as a real check, so timing does not reveal users
		return nil, fmt.Errorf("sign in: %w", ErrBadCredentials)
	}
	id := strings.ToLower(c.Str("contactid"))
	now := s.now()
	lockout := c.Bool("adx_identity_lockoutenabled") && s.cfg.Lockout.MaxFailed > 0
	if until := c.Time("adx_identity_lockoutenddate"); lockout && now.Before(until) {
		return nil, fmt.Errorf("sign in: %w", &LockedOutError{Until: until})
	}
	ok, rehash := s.hasher.Verify(c.Str("adx_identity_passwordhash"), password)
	if !ok {
		if !lockout {
			return nil, fmt.Errorf("sign in: %w", ErrBadCredentials)
		}
		failed := c.Int("adx_identity_accessfailedcount") + 1
		patch := map[string]any{"adx_identity_accessfailedcount": failed}
		var locked *LockedOutError
		if failed >= s.cfg.Lockout.MaxFailed {
			until := now.Add(s.cfg.Lockout.Duration)
			patch = map[string]any{"adx_identity_accessfailedcount": 0, "adx_identity_lockoutenddate": odataTime(until)}
			locked = &LockedOutError{Until: until}
		}
		// If-Match: concurrent failures must not overwrite each other's count.
		if _, err := s.dv.Update(ctx, "contacts", id, patch, &dataverse.WriteOptions{IfMatch: etagOr(c)}); err != nil {
			s.log.WarnContext(ctx, "record failed sign-in", "contact", id, "err", err)
		}
		if locked != nil {
			s.log.WarnContext(ctx, "account locked out", "contact", id, "until", locked.Until)
			return nil, fmt.Errorf("sign in: %w", locked)
		}
		return nil, fmt.Errorf("sign in: %w", ErrBadCredentials)
	}
	patch := map[string]any{"adx_identity_lastsuccessfullogin": odataTime(now)}
	if c.Int("adx_identity_accessfailedcount") != 0 {
		patch["adx_identity_accessfailedcount"] = 0
	}
	if c.Str("adx_identity_lockoutenddate") != "" {
		patch["adx_identity_lockoutenddate"] = nil
	}
	if rehash {
		if h, err := s.hasher.Hash(password); err == nil {
			patch["adx_identity_passwordhash"] = h
		}
	}
	if _, err := s.dv.Update(ctx, "contacts", id, patch, &dataverse.WriteOptions{IfMatch: "*"}); err != nil {
		// The password was right; failing to record the sign-in must not lock the user out.
		s.log.WarnContext(ctx, "record sign-in", "contact", id, "err", err)
	}
	return s.toAccount(c, pc), nil
}

// pickLogin prefers an exact user name match, then a single email match.
func pickLogin(recs []dataverse.Record, login string) dataverse.Record {
	var byEmail []dataverse.Record
	for _, r := range recs {
		if strings.EqualFold(strings.TrimSpace(r.Str("adx_identity_username")), login) {
			return r
		}
		if strings.EqualFold(r.Str("emailaddress1"), login) {
			byEmail = append(byEmail, r)
		}
	}
	if len(byEmail) == 1 {
		return byEmail[0]
	}
	return nil // unknown, or an email shared by several accounts
}

// Account reads a portal account. Errors: ErrNotFound (no such contact or
// no portal identity).
func (s *Service) Account(ctx context.Context, contactID string) (*Account, error) {
	c, err := s.identity(ctx, contactID)
	if err != nil {
		return nil, fmt.Errorf("account: %w", err)
	}
	return s.toAccount(c, nil), nil
}

// identity reads a contact that has a portal identity, with its roles.
func (s *Service) identity(ctx context.Context, contactID string) (dataverse.Record, error) {
	id, ok := normalizeGUID(contactID)
	if !ok {
		return nil, fmt.Errorf("contact %q: %w", contactID, ErrNotFound)
	}
	c, err := s.dv.Retrieve(ctx, "contacts", id, &dataverse.Query{Select: identitySelect, Expand: rolesExpand(s.models...)})
	if err != nil {
		if dataverse.IsNotFound(err) {
			return nil, fmt.Errorf("contact %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("read contact %s: %w", id, err)
	}
	if !hasIdentity(c) {
		return nil, fmt.Errorf("contact %s has no portal identity: %w", id, ErrNotFound)
	}
	return c, nil
}

// Profile is what a portal user may change about themselves.
type Profile struct {
	FirstName, LastName, Email, MobilePhone, JobTitle string
}

// UpdateProfile writes every field of the profile to the contact (an empty
// field clears the column). A changed email address is no longer confirmed. Errors: ErrNotFound, ErrNoEmail (empty or
// malformed email).
func (s *Service) UpdateProfile(ctx context.Context, contactID string, p Profile) error {
	email := strings.TrimSpace(p.Email)
	if !plausibleEmail(email) {
		return fmt.Errorf("update profile: %w", ErrNoEmail)
	}
	c, err := s.identity(ctx, contactID)
	if err != nil {
		return fmt.Errorf("update profile: %w", err)
	}
	patch := map[string]any{
		"firstname": truncate(strings.TrimSpace(p.FirstName), 50), "lastname": truncate(strings.TrimSpace(p.LastName), 50),
		"mobilephone": truncate(strings.TrimSpace(p.MobilePhone), 50), "jobtitle": truncate(strings.TrimSpace(p.JobTitle), 100),
		"adx_profilemodifiedon": odataTime(s.now()),
	}
	if !strings.EqualFold(email, c.Str("emailaddress1")) {
		patch["emailaddress1"] = email
		patch["adx_identity_emailaddress1confirmed"] = false
	}
	id := strings.ToLower(c.Str("contactid"))
	if _, err := s.dv.Update(ctx, "contacts", id, patch, &dataverse.WriteOptions{IfMatch: "*"}); err != nil {
		return fmt.Errorf("update profile %s: %w", id, err)
	}
	return nil
}

func plausibleEmail(e string) bool {
	at := strings.LastIndexByte(e, '@')
	return at > 0 && at < len(e)-1 && len(e) <= 100 && !strings.ContainsAny(e, " \t\r\n<>,;\"'")
}

func confirmBinding(c dataverse.Record) string {
	confirmed := "0"
	if c.Bool("adx_identity_emailaddress1confirmed") {
		confirmed = "1"
	}
	return "confirm\x00" + c.Str("adx_identity_securitystamp") + "\x00" + strings.ToLower(c.Str("emailaddress1")) + "\x00" + confirmed
}

func resetBinding(c dataverse.Record) string {
	return "reset\x00" + c.Str("adx_identity_securitystamp") + "\x00" + c.Str("adx_identity_passwordhash")
}

// SendEmailConfirmation emails the account a link that confirms its email
// address (nothing is sent when it is confirmed already). Errors:
// ErrUnknownPortal, ErrNotFound, ErrNoEmail, ErrNotConfigured (no TokenSecret).
func (s *Service) SendEmailConfirmation(ctx context.Context, portal, contactID string) error {
	pc, err := s.portal(portal)
	if err != nil {
		return fmt.Errorf("send email confirmation: %w", err)
	}
	c, err := s.identity(ctx, contactID)
	if err != nil {
		return fmt.Errorf("send email confirmation: %w", err)
	}
	if c.Bool("adx_identity_emailaddress1confirmed") {
		return nil
	}
	if c.Str("emailaddress1") == "" {
		return fmt.Errorf("send email confirmation: %w", ErrNoEmail)
	}
	exp := s.now().Add(s.cfg.ConfirmEmailTTL)
	tok, err := s.tokens.issue(purposeConfirmEmail, c.Str("contactid"), exp, confirmBinding(c))
	if err != nil {
		return fmt.Errorf("send email confirmation: %w", err)
	}
	if err := s.sendAccountEmail(ctx, pc, s.confirm, c, actionLink(pc.BaseURL, ConfirmEmailPath, "token", tok), exp); err != nil {
		return fmt.Errorf("send email confirmation: %w", err)
	}
	return nil
}

// ConfirmEmail marks the email address of the token's contact confirmed.
// The token works once: confirming changes what it is bound to. Errors:
// ErrTokenInvalid, ErrNotConfigured.
func (s *Service) ConfirmEmail(ctx context.Context, token string) (*Account, error) {
	claims, err := s.tokens.open(token, purposeConfirmEmail, s.now())
	if err != nil {
		return nil, fmt.Errorf("confirm email: %w", err)
	}
	c, err := s.identity(ctx, claims.contactID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("confirm email: %w", ErrTokenInvalid)
		}
		return nil, fmt.Errorf("confirm email: %w", err)
	}
	if !s.tokens.valid(claims, confirmBinding(c)) {
		return nil, fmt.Errorf("confirm email: %w", ErrTokenInvalid)
	}
	id := strings.ToLower(c.Str("contactid"))
	if _, err := s.dv.Update(ctx, "contacts", id, map[string]any{"adx_identity_emailaddress1confirmed": true},
		&dataverse.WriteOptions{IfMatch: etagOr(c)}); err != nil {
		if dataverse.IsPreconditionFailed(err) {
			return nil, fmt.Errorf("confirm email: %w", ErrTokenInvalid)
		}
		return nil, fmt.Errorf("confirm email %s: %w", id, err)
	}
	acc := s.toAccount(c, nil)
	acc.EmailConfirmed = true
	return acc, nil
}

// RequestPasswordReset emails a reset link to the portal account with this
// email address. It says nothing about whether there is one: unknown or
// ambiguous addresses return nil and send nothing. Errors: ErrUnknownPortal,
// ErrNotConfigured, Dataverse failures.
func (s *Service) RequestPasswordReset(ctx context.Context, portal, email string) error {
	pc, err := s.portal(portal)
	if err != nil {
		return fmt.Errorf("request password reset: %w", err)
	}
	if len(s.tokens.key) == 0 {
		return fmt.Errorf("request password reset: %w: token secret", ErrNotConfigured)
	}
	email = strings.TrimSpace(email)
	if !plausibleEmail(email) {
		return nil
	}
	page, err := s.dv.QueryPage(ctx, "contacts", &dataverse.Query{Select: identitySelect,
		Filter: "emailaddress1 eq " + dataverse.Quote(email) + " and adx_identity_logonenabled eq true and statecode eq 0", Top: 2}, "")
	if err != nil {
		return fmt.Errorf("request password reset: %w", err)
	}
	if len(page.Records) != 1 {
		s.log.InfoContext(ctx, "password reset requested for an unknown or shared address", "matches", len(page.Records))
		return nil
	}
	return s.sendReset(ctx, pc, page.Records[0])
}

func (s *Service) sendReset(ctx context.Context, pc *portalConf, c dataverse.Record) error {
	exp := s.now().Add(s.cfg.ResetPasswordTTL)
	tok, err := s.tokens.issue(purposeResetPassword, c.Str("contactid"), exp, resetBinding(c))
	if err != nil {
		return fmt.Errorf("password reset: %w", err)
	}
	if err := s.sendAccountEmail(ctx, pc, s.reset, c, actionLink(pc.BaseURL, ResetPasswordPath, "token", tok), exp); err != nil {
		return fmt.Errorf("password reset: %w", err)
	}
	return nil
}

// ResetPassword sets a new password with a token from RequestPasswordReset.
// It writes a new security stamp (which ends other sessions and the token),
// clears any lockout, and confirms the email address the link was sent to.
// Errors: ErrTokenInvalid, *PolicyError, ErrNotConfigured.
func (s *Service) ResetPassword(ctx context.Context, token, newPassword string) error {
	claims, err := s.tokens.open(token, purposeResetPassword, s.now())
	if err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	c, err := s.identity(ctx, claims.contactID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("reset password: %w", ErrTokenInvalid)
		}
		return fmt.Errorf("reset password: %w", err)
	}
	if !s.tokens.valid(claims, resetBinding(c)) {
		return fmt.Errorf("reset password: %w", ErrTokenInvalid)
	}
	if err := s.cfg.PasswordPolicy.Check(newPassword, c.Str("adx_identity_username"), c.Str("emailaddress1"),
		c.Str("firstname"), c.Str("lastname")); err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	hash, err := s.hasher.Hash(newPassword)
	if err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	id := strings.ToLower(c.Str("contactid"))
	_, err = s.dv.Update(ctx, "contacts", id, map[string]any{
		"adx_identity_passwordhash": hash, "adx_identity_securitystamp": uuid.NewString(),
		"adx_identity_accessfailedcount": 0, "adx_identity_lockoutenddate": nil,
		"adx_identity_emailaddress1confirmed": true,
	}, &dataverse.WriteOptions{IfMatch: etagOr(c)})
	if err != nil {
		if dataverse.IsPreconditionFailed(err) { // a concurrent use of the same token won
			return fmt.Errorf("reset password: %w", ErrTokenInvalid)
		}
		return fmt.Errorf("reset password %s: %w", id, err)
	}
	s.log.InfoContext(ctx, "password reset", "contact", id)
	return nil
}

// sendAccountEmail creates an email regarding the contact and sends it, in
// one change set.
func (s *Service) sendAccountEmail(ctx context.Context, pc *portalConf, t *emailTemplates, c dataverse.Record, link string, exp time.Time) error {
	r, err := t.render(EmailData{FirstName: c.Str("firstname"), LastName: c.Str("lastname"), FullName: c.Str("fullname"),
		Email: c.Str("emailaddress1"), PortalName: pc.Name, BaseURL: pc.BaseURL, Link: link, ExpiresAt: exp, Expires: formatExpiry(exp)})
	if err != nil {
		return err
	}
	id := strings.ToLower(c.Str("contactid"))
	emailID := dataverse.NewGUID()
	body := s.emailRecord(emailID, r, pc.sender, "", id)
	body["regardingobjectid_contact_email@odata.bind"] = "/contacts(" + id + ")"
	_, err = s.changeSet(ctx, "send email", []dataverse.BatchOp{
		{Method: http.MethodPost, Path: "emails", Body: body},
		sendEmailOp(emailID),
	})
	return err
}

// RegisterRequest is the self-registration form.
type RegisterRequest struct {
	Portal, FirstName, LastName, Email, IPAddress string
}

// Register lets a visitor ask for an account: it finds the active contact
// with this email address or creates one, and invites it. It never reveals
// whether the address was known: an existing portal user gets a password
// reset email instead, and a contact that cannot be invited is logged.
// Errors: ErrUnknownPortal, ErrNoEmail (empty or malformed address), and
// Dataverse failures.
func (s *Service) Register(ctx context.Context, req RegisterRequest) error {
	pc, err := s.portal(req.Portal)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	email := strings.TrimSpace(req.Email)
	if !plausibleEmail(email) {
		return fmt.Errorf("register: %w", ErrNoEmail)
	}
	page, err := s.dv.QueryPage(ctx, "contacts", &dataverse.Query{Select: identitySelect,
		Filter: "emailaddress1 eq " + dataverse.Quote(email) + " and statecode eq 0", OrderBy: []string{"createdon asc"}, Top: 5}, "")
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	var contactID string
	for _, c := range page.Records {
		if hasIdentity(c) {
			s.log.InfoContext(ctx, "registration for an existing portal user", "contact", c.Str("contactid"))
			if len(s.tokens.key) == 0 {
				return nil
			}
			return s.sendReset(ctx, pc, c)
		}
		if contactID == "" {
			contactID = strings.ToLower(c.Str("contactid"))
		}
	}
	if contactID == "" {
		body := map[string]any{
			"firstname": truncate(strings.TrimSpace(req.FirstName), 50), "lastname": truncate(strings.TrimSpace(req.LastName), 50),
			"emailaddress1": email, s.cols.Status: s.cols.Requested, s.cols.Portal: pc.Name,
		}
		if req.IPAddress != "" {
			body["adx_createdbyipaddress"] = truncate(req.IPAddress, 100)
		}
		id, _, err := s.dv.Create(ctx, "contacts", body, &dataverse.WriteOptions{IDColumn: "contactid"})
		if err != nil {
			return fmt.Errorf("register: create contact: %w", err)
		}
		contactID = strings.ToLower(id)
	}
	_, err = s.Invite(ctx, InviteRequest{ContactID: contactID, Portal: pc.Name, Source: "register"})
	if err != nil && !IsPermanent(err) {
		return fmt.Errorf("register: %w", err)
	}
	if err != nil {
		s.log.InfoContext(ctx, "registration not invited", "contact", contactID, "err", err)
	}
	return nil
}
