package invite

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/google/uuid"
)

// External identities, stored as Power Pages stores them
// (../shared/reference/identity.md §a–c): one adx_externalidentity row per
// login, adx_identityprovidername = the ID token's iss, adx_username = the
// provider key claim, bound to the contact through the lookup's navigation
// property adx_contactid. A contact may hold several logins; a login belongs
// to one contact.

// Refusals of the external-login flows. The messages are safe to show.
var (
	// ErrLoginAlreadyAssociated: the login is linked to another contact
	// (Power Pages' LoginAlreadyAssociated), or to several.
	ErrLoginAlreadyAssociated = errors.New("this sign-in is already linked to another account")
	// ErrNoAccount: no contact is linked to the login and the portal does
	// not let it register.
	ErrNoAccount = errors.New("no account is linked to this sign-in")
	// ErrAccountDisabled: the linked contact is deactivated or its portal
	// sign-in is turned off (adx_identity_logonenabled false).
	ErrAccountDisabled = errors.New("this account cannot sign in")
	// ErrEmailMismatch: the portal requires the provider's verified email to
	// be the invited address, and it is not. See EmailMismatchError.
	ErrEmailMismatch = errors.New("the sign-in's email address is not the invited one")
	// ErrEmailInUse: registering would give a second active contact the
	// address of an existing one.
	ErrEmailInUse = errors.New("an account with this email address already exists")
	// ErrLastLogin: removing this login would leave no way to sign in.
	ErrLastLogin = errors.New("this is the only way to sign in to the account")
)

// EmailMismatchError says which address the invitation was for, masked so
// the page does not hand a stranger the whole address. It wraps
// ErrEmailMismatch.
type EmailMismatchError struct {
	Invited  string // masked, e.g. "a••@contoso.example"; "" for group invitations
	Verified bool   // whether the provider vouched for its address at all
}

func (e *EmailMismatchError) Error() string {
	if !e.Verified {
		return ErrEmailMismatch.Error() + " (the identity provider did not verify an email address)"
	}
	return ErrEmailMismatch.Error()
}

// Unwrap makes errors.Is(err, ErrEmailMismatch) true.
func (e *EmailMismatchError) Unwrap() error { return ErrEmailMismatch }

// ExternalLogin is a sign-in an identity provider vouched for, as plain
// values (the relying party verified the ID token).
type ExternalLogin struct {
	Provider string // configured provider name, for logs
	Issuer   string // the ID token's iss: adx_identityprovidername
	Key      string // the provider key claim (sub or oid): adx_username
	// Email is the provider's address; EmailVerified whether it vouches
	// for it (rules per provider type in internal/identity).
	Email         string
	EmailVerified bool
	FirstName     string
	LastName      string
	// Columns are contact column values from the provider's claims mapping,
	// written when an account is created or linked to a contact.
	Columns map[string]string
	// AllowEmailMapping is the provider's allow_contact_mapping_with_email.
	AllowEmailMapping bool
}

func (l ExternalLogin) check() error {
	if l.Issuer == "" || len([]rune(l.Issuer)) > 400 || l.Key == "" || len([]rune(l.Key)) > 100 || strings.Contains(l.Key, ",") {
		return fmt.Errorf("external login from %q: issuer or key missing or too long: %w", l.Provider, ErrNoAccount)
	}
	return nil
}

// lockKey serialises work on one login across replicas, so one login never
// ends up linked to two contacts by two concurrent first sign-ins.
func (l ExternalLogin) lockKey() string {
	sum := sha256.Sum256([]byte(l.Issuer + "\x00" + l.Key))
	return "extlogin:" + hex.EncodeToString(sum[:16])
}

// LinkedLogin is one active adx_externalidentity row of a contact.
type LinkedLogin struct {
	ID       string
	Issuer   string // adx_identityprovidername
	Key      string // adx_username
	LinkedOn time.Time
}

// ExternalRedeemRequest redeems an invitation with an external login.
type ExternalRedeemRequest struct {
	Code          string
	IPAddress     string
	AcceptedTerms bool
	Login         ExternalLogin
}

const externalIdentityNav = "adx_contact_externalidentity" // contact's collection of adx_externalidentity rows

// externalExpand reads a contact's login rows with it.
var externalExpand = externalIdentityNav + "($select=adx_externalidentityid,adx_identityprovidername,adx_username,statecode)"

// linkedFilter matches contacts with a login row for l (any state; rows
// are judged locally).
func linkedFilter(l ExternalLogin) string {
	return externalIdentityNav + "/any(x:x/adx_identityprovidername eq " + dataverse.Quote(l.Issuer) +
		" and x/adx_username eq " + dataverse.Quote(l.Key) + ")"
}

// holdsLogin reports whether contact c has an active login row for l.
func holdsLogin(c dataverse.Record, l ExternalLogin) bool {
	list, _ := c[externalIdentityNav].([]any)
	for _, x := range list {
		m, ok := x.(map[string]any)
		if !ok {
			continue
		}
		r := dataverse.Record(m)
		// Dataverse compares strings case-insensitively; so do we.
		if r.Int("statecode") == 0 && strings.EqualFold(r.Str("adx_identityprovidername"), l.Issuer) &&
			strings.EqualFold(r.Str("adx_username"), l.Key) {
			return true
		}
	}
	return false
}

// externalIdentityRow is the adx_externalidentity row Power Pages writes
// for a login (CrmUser.AddLogin: provider name and key only), bound to the
// contact through the lookup's navigation property.
func externalIdentityRow(l ExternalLogin, contactID string) map[string]any {
	return map[string]any{
		"adx_externalidentityid":   dataverse.NewGUID(),
		"adx_identityprovidername": l.Issuer,
		"adx_username":             l.Key,
		"adx_contactid@odata.bind": "/contacts(" + contactID + ")",
	}
}

// externalIdentityColumns are the contact's identity columns for an
// external registration (identity.md §b): the provider key as user name, a
// new security stamp, sign-in and lockout on, no password.
func (s *Service) externalIdentityColumns(l ExternalLogin, emailConfirmed bool) (map[string]any, string) {
	stamp := uuid.NewString()
	cols := map[string]any{}
	for col, v := range l.Columns {
		cols[col] = truncate(v, 400)
	}
	cols["adx_identity_username"] = l.Key
	cols["adx_identity_securitystamp"] = stamp
	cols["adx_identity_logonenabled"] = true
	cols["adx_identity_lockoutenabled"] = true
	cols["adx_identity_accessfailedcount"] = 0
	cols["adx_identity_emailaddress1confirmed"] = emailConfirmed
	return cols, stamp
}

// canSignIn applies the checks a local sign-in gets: an active contact with
// sign-in enabled, not locked out.
func (s *Service) canSignIn(c dataverse.Record) error {
	if c.Int("statecode") != contactStateActive || !c.Bool("adx_identity_logonenabled") {
		return ErrAccountDisabled
	}
	lockout := c.Bool("adx_identity_lockoutenabled") && s.cfg.Lockout.MaxFailed > 0
	if until := c.Time("adx_identity_lockoutenddate"); lockout && s.now().Before(until) {
		return &LockedOutError{Until: until}
	}
	return nil
}

// findLinked returns the contact holding login l: exactly one active
// contact, as Power Pages' EnforceSingle lookup. Several active holders are
// ErrLoginAlreadyAssociated; only deactivated holders ErrAccountDisabled;
// none (nil, nil).
func findLinked(recs []dataverse.Record, l ExternalLogin) (dataverse.Record, error) {
	var active []dataverse.Record
	inactive := 0
	for _, r := range recs {
		if !holdsLogin(r, l) {
			continue
		}
		if r.Int("statecode") == contactStateActive {
			active = append(active, r)
		} else {
			inactive++
		}
	}
	switch {
	case len(active) == 1:
		return active[0], nil
	case len(active) > 1:
		return nil, ErrLoginAlreadyAssociated
	case inactive > 0:
		return nil, ErrAccountDisabled
	}
	return nil, nil
}

// SignInExternal signs in a returning user: the contact is the one linked
// to the login through its adx_externalidentity row (provider + key, active
// rows, exactly one active contact), never found by email alone. With no
// linked contact, a provider with allow_contact_mapping_with_email maps the
// login to the one active contact with the same verified email, and a
// portal with OpenRegistration creates a contact; otherwise ErrNoAccount.
// Errors: ErrUnknownPortal, ErrNoAccount, ErrAccountDisabled,
// *LockedOutError, ErrLoginAlreadyAssociated, ErrEmailInUse, ErrNoEmail.
func (s *Service) SignInExternal(ctx context.Context, portal string, l ExternalLogin) (*Account, error) {
	pc, err := s.portal(portal)
	if err != nil {
		return nil, fmt.Errorf("sign in external: %w", err)
	}
	if err := l.check(); err != nil {
		return nil, fmt.Errorf("sign in external: %w", err)
	}
	acc, err := s.signInLinked(ctx, pc, l)
	if err == nil && acc == nil {
		acc, err = s.registerExternal(ctx, pc, l)
	}
	if err != nil {
		return nil, fmt.Errorf("sign in external: %w", err)
	}
	return acc, nil
}

// signInLinked signs in through an existing link; (nil, nil) when none.
func (s *Service) signInLinked(ctx context.Context, pc *portalConf, l ExternalLogin) (*Account, error) {
	page, err := s.dv.QueryPage(ctx, "contacts", &dataverse.Query{Select: identitySelect, Filter: linkedFilter(l),
		Expand: append(rolesExpand(pc.model), externalExpand), Top: 5}, "")
	if err != nil {
		return nil, fmt.Errorf("find linked contact: %w", err)
	}
	c, err := findLinked(page.Records, l)
	if err != nil || c == nil {
		return nil, err
	}
	if err := s.canSignIn(c); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "external sign-in", "contact", strings.ToLower(c.Str("contactid")), "provider", l.Provider)
	return s.toAccount(c, pc), nil
}

// registerExternal handles a login linked to no contact: mapping by
// verified email when the provider allows it, else open registration.
func (s *Service) registerExternal(ctx context.Context, pc *portalConf, l ExternalLogin) (*Account, error) {
	unlock, err := s.locker.Lock(ctx, l.lockKey(), s.cfg.LockTTL)
	if err != nil {
		return nil, fmt.Errorf("lock login: %w", err)
	}
	defer unlock()
	// Another replica may have linked it while we waited.
	if acc, err := s.signInLinked(ctx, pc, l); err != nil || acc != nil {
		return acc, err
	}
	email := strings.TrimSpace(l.Email)
	var sameEmail []dataverse.Record
	if plausibleEmail(email) {
		page, err := s.dv.QueryPage(ctx, "contacts", &dataverse.Query{Select: identitySelect,
			Filter: "emailaddress1 eq " + dataverse.Quote(email) + " and statecode eq 0", Expand: rolesExpand(pc.model), Top: 2}, "")
		if err != nil {
			return nil, fmt.Errorf("find contact by email: %w", err)
		}
		sameEmail = page.Records
	}
	if l.AllowEmailMapping && l.EmailVerified && len(sameEmail) == 1 {
		return s.mapByEmail(ctx, pc, l, sameEmail[0])
	}
	if !pc.OpenRegistration {
		return nil, ErrNoAccount
	}
	if !plausibleEmail(email) {
		return nil, ErrNoEmail
	}
	if len(sameEmail) > 0 {
		// Power Pages' RequireUniqueEmail: the person should sign in to that
		// account and link this provider from the profile.
		return nil, ErrEmailInUse
	}
	contactID := dataverse.NewGUID()
	body, stamp := s.externalIdentityColumns(l, l.EmailVerified)
	body["contactid"] = contactID
	body["firstname"] = truncate(strings.TrimSpace(l.FirstName), 50)
	body["lastname"] = truncate(strings.TrimSpace(l.LastName), 50)
	body["emailaddress1"] = email
	body[s.cols.Portal] = pc.Name
	if _, err := s.changeSet(ctx, "register external login", []dataverse.BatchOp{
		{Method: http.MethodPost, Path: "contacts", Body: body},
		{Method: http.MethodPost, Path: "adx_externalidentities", Body: externalIdentityRow(l, contactID)},
	}); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "external registration", "contact", contactID, "provider", l.Provider, "portal", pc.Name)
	return &Account{ContactID: contactID, Username: l.Key, Email: email, FirstName: body["firstname"].(string),
		LastName: body["lastname"].(string), FullName: strings.TrimSpace(body["firstname"].(string) + " " + body["lastname"].(string)),
		EmailConfirmed: l.EmailVerified, SecurityStamp: stamp, Portal: pc.Name}, nil
}

// mapByEmail links the login to the one active contact with its verified
// email (AllowContactMappingWithEmail), initialising the identity columns
// when the contact has none yet.
func (s *Service) mapByEmail(ctx context.Context, pc *portalConf, l ExternalLogin, c dataverse.Record) (*Account, error) {
	id := strings.ToLower(c.Str("contactid"))
	ops := []dataverse.BatchOp{{Method: http.MethodPost, Path: "adx_externalidentities", Body: externalIdentityRow(l, id)}}
	if hasIdentity(c) {
		if err := s.canSignIn(c); err != nil {
			return nil, err
		}
	} else {
		cols, stamp := s.externalIdentityColumns(l, true)
		ops = append(ops, dataverse.BatchOp{Method: http.MethodPatch, Path: "contacts(" + id + ")", Body: cols, Headers: ifMatch(etagOr(c))})
		c["adx_identity_username"], c["adx_identity_securitystamp"], c["adx_identity_logonenabled"] = l.Key, stamp, true
		c["adx_identity_emailaddress1confirmed"] = true
	}
	if _, err := s.changeSet(ctx, "map external login by email", ops); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "external login mapped by email", "contact", id, "provider", l.Provider)
	return s.toAccount(c, pc), nil
}

// RedeemExternal redeems an invitation with an external login, as Power
// Pages' ExternalLoginConfirmation does (identity.md §c): the login is
// linked to the invited contact (an adx_externalidentity row), the
// contact's identity columns are set as for an external registration (the
// provider key as user name, no password, the invited email kept and
// confirmed), the web roles granted and the redemption recorded, in one
// change set with If-Match on the invitation and the contact: of concurrent
// redemptions of a single-use code exactly one succeeds.
//
// With the portal's RequireEmailMatch the provider must vouch for an email
// equal (case-insensitive) to the invited contact's emailaddress1, or
// nothing is written (*EmailMismatchError).
//
// Errors: the code errors of Redeem, ErrExistingUser (the login is already
// the invited contact's, or the contact has an identity),
// ErrLoginAlreadyAssociated (the login belongs to another contact),
// *EmailMismatchError, ErrUsernameTaken, ErrTermsRequired, ErrNoEmail.
func (s *Service) RedeemExternal(ctx context.Context, req ExternalRedeemRequest) (*Account, error) {
	if err := req.Login.check(); err != nil {
		return nil, fmt.Errorf("redeem external: %w", err)
	}
	unlock, err := s.locker.Lock(ctx, req.Login.lockKey(), s.cfg.LockTTL)
	if err != nil {
		return nil, fmt.Errorf("redeem external: lock login: %w", err)
	}
	defer unlock()
	for range redeemAttempts {
		var acc *Account
		acc, err = s.redeemExternal(ctx, req)
		if err == nil {
			s.log.InfoContext(ctx, "invitation redeemed with external login", "invitation", acc.InvitationID,
				"contact", acc.ContactID, "portal", acc.Portal, "provider", req.Login.Provider)
			return acc, nil
		}
		if !dataverse.IsPreconditionFailed(err) {
			return acc, fmt.Errorf("redeem external: %w", err)
		}
	}
	return nil, fmt.Errorf("redeem external: %w (%v)", ErrCodeUsedUp, err)
}

func (s *Service) redeemExternal(ctx context.Context, req ExternalRedeemRequest) (*Account, error) {
	l := req.Login
	cq, ok := s.codeQuery(req.Code)
	if !ok {
		return nil, ErrCodeUnknown
	}
	email := strings.TrimSpace(l.Email)
	conds := []string{"adx_invitation_invitecontact/any(i:" + cq.filter("i/") + ")", linkedFilter(l),
		"adx_identity_username eq " + dataverse.Quote(l.Key)}
	if plausibleEmail(email) {
		conds = append(conds, "emailaddress1 eq "+dataverse.Quote(email))
	}
	var expand []string
	for _, m := range s.models {
		expand = append(expand, m.contactRoles+"($select="+m.roleID+")")
	}
	contactsQ := &dataverse.Query{Select: identitySelect, Filter: strings.Join(conds, " or "),
		Expand: append(expand, externalExpand), Top: 20}
	res, err := s.dv.Batch(ctx, &dataverse.BatchRequest{ContinueOnError: true, Parts: []dataverse.BatchPart{
		{Op: &dataverse.BatchOp{Method: http.MethodGet, Path: queryPath("adx_invitations", s.invitationByCode(cq))}},
		{Op: &dataverse.BatchOp{Method: http.MethodGet, Path: queryPath("contacts", contactsQ)}},
	}})
	if err == nil {
		err = dataverse.FirstError(res)
	}
	if err != nil {
		return nil, fmt.Errorf("read invitation and contacts: %w", err)
	}
	invRecs, err := decodeCollection(res[0].Body)
	if err != nil {
		return nil, err
	}
	contacts, err := decodeCollection(res[1].Body)
	if err != nil {
		return nil, err
	}
	inv, err := s.pickInvitation(invRecs, cq)
	if err != nil {
		return nil, err
	}
	pc := s.portalForWebsite(inv.WebsiteID)
	if pc == nil {
		return nil, ErrCodeUnknown
	}
	if pc.Terms != "" && !req.AcceptedTerms {
		return nil, ErrTermsRequired
	}
	group := inv.Type == TypeGroup

	// The login already belongs to someone: the invitee (an account
	// already), or another contact. Power Pages signs that contact in and
	// redeems the invitation for it, leaving the invited contact untouched;
	// a holder that cannot sign in is LoginAlreadyAssociated.
	holder, herr := findLinked(contacts, l)
	switch {
	case holder != nil && !group && strings.EqualFold(holder.Str("contactid"), inv.ContactID):
		return inv.existingUser(), ErrExistingUser
	case herr != nil:
		return nil, ErrLoginAlreadyAssociated
	case holder != nil && s.canSignIn(holder) != nil:
		return nil, ErrLoginAlreadyAssociated
	}

	if err := s.checkEmailMatch(pc, inv, l); err != nil {
		return nil, err
	}
	if holder != nil {
		return s.redeemForHolder(ctx, pc, inv, holder, req)
	}

	var target dataverse.Record
	if group {
		if !plausibleEmail(email) {
			return nil, ErrNoEmail
		}
		for _, r := range contacts {
			// An existing contact is taken by email only when the provider
			// vouches for the address.
			if l.EmailVerified && strings.EqualFold(r.Str("emailaddress1"), email) && r.Int("statecode") == contactStateActive {
				if hasIdentity(r) {
					return &Account{ContactID: strings.ToLower(r.Str("contactid")), Email: r.Str("emailaddress1"), Portal: pc.Name}, ErrExistingUser
				}
				target = r
				break
			}
		}
	} else {
		if inv.ContactID == "" {
			return nil, ErrCodeUnknown
		}
		for _, r := range contacts {
			if strings.EqualFold(r.Str("contactid"), inv.ContactID) {
				target = r
			}
		}
		if target == nil {
			return nil, ErrCodeUnknown // the invited contact was deleted
		}
		if hasIdentity(target) {
			return inv.existingUser(), ErrExistingUser
		}
	}
	for _, r := range contacts {
		if strings.EqualFold(strings.TrimSpace(r.Str("adx_identity_username")), l.Key) &&
			(target == nil || !strings.EqualFold(r.Str("contactid"), target.Str("contactid"))) {
			return nil, ErrUsernameTaken
		}
	}

	// The invited address is kept and counts as confirmed (the emailed link
	// and the provider both vouch); a group redeemer's only when verified.
	confirmed := !group || l.EmailVerified
	identity, stamp := s.externalIdentityColumns(l, confirmed)
	identity[s.cols.Status] = s.cols.Redeemed
	identity[s.cols.Portal] = pc.Name
	identity[s.cols.Error] = nil
	if inv.AssignToAccountID != "" {
		identity["parentcustomerid_account@odata.bind"] = "/accounts(" + inv.AssignToAccountID + ")"
	}
	if req.IPAddress != "" {
		identity["adx_createdbyipaddress"] = truncate(req.IPAddress, 100)
	}
	invPatch := map[string]any{"adx_redemptions": inv.Redemptions + 1}
	if inv.MaxRedemptions > 0 && inv.Redemptions+1 >= inv.MaxRedemptions {
		invPatch["statuscode"] = invStatusRedeemed
	}
	m := pc.model
	acc := &Account{Username: l.Key, EmailConfirmed: confirmed, SecurityStamp: stamp, Portal: pc.Name, InvitationID: inv.ID}
	var contactID string
	ops := []dataverse.BatchOp{{Method: http.MethodPatch, Path: "adx_invitations(" + inv.ID + ")", Body: invPatch, Headers: ifMatch(inv.ETag)}}
	if target == nil {
		contactID = dataverse.NewGUID()
		identity["contactid"] = contactID
		identity["firstname"] = truncate(strings.TrimSpace(l.FirstName), 50)
		identity["lastname"] = truncate(strings.TrimSpace(l.LastName), 50)
		identity["emailaddress1"] = email
		if len(inv.RoleIDs) > 0 {
			binds := make([]string, len(inv.RoleIDs))
			for i, id := range inv.RoleIDs {
				binds[i] = "/" + m.roleSet + "(" + id + ")"
			}
			identity[m.contactRoles+"@odata.bind"] = binds
		}
		identity["adx_invitation_redeemedcontacts@odata.bind"] = []string{"/adx_invitations(" + inv.ID + ")"}
		ops = append(ops, dataverse.BatchOp{Method: http.MethodPost, Path: "contacts", Body: identity})
		acc.FirstName, acc.LastName = identity["firstname"].(string), identity["lastname"].(string)
		acc.FullName, acc.Email = strings.TrimSpace(acc.FirstName+" "+acc.LastName), email
	} else {
		contactID = strings.ToLower(target.Str("contactid"))
		if !group {
			invPatch["adx_redeemedContact@odata.bind"] = "/contacts(" + contactID + ")"
		}
		ops = append(ops, dataverse.BatchOp{Method: http.MethodPatch, Path: "contacts(" + contactID + ")", Body: identity, Headers: ifMatch(etagOr(target))})
		ops = append(ops, s.grantOps(m, inv, target, contactID)...)
		acc.FirstName, acc.LastName, acc.FullName = target.Str("firstname"), target.Str("lastname"), target.Str("fullname")
		acc.Email = target.Str("emailaddress1")
	}
	ops = append(ops,
		dataverse.BatchOp{Method: http.MethodPost, Path: "adx_externalidentities", Body: externalIdentityRow(l, contactID)},
		dataverse.BatchOp{Method: http.MethodPost, Path: "adx_inviteredemptions", Body: map[string]any{
			"activityid":    dataverse.NewGUID(),
			"subject":       truncate(l.Key, 200), // user.UserName, the provider key for external users
			"adx_ipaddress": truncate(req.IPAddress, 128),
			"regardingobjectid_adx_invitation_adx_inviteredemption@odata.bind": "/adx_invitations(" + inv.ID + ")",
			"adx_inviteredemption_activity_parties": []any{map[string]any{
				"participationtypemask": partyCustomer, "partyid_contact@odata.bind": "/contacts(" + contactID + ")"}},
		}})
	if _, err := s.changeSet(ctx, "redeem invitation with external login", ops); err != nil {
		return nil, err
	}
	acc.ContactID = contactID
	acc.Roles = slices.Clone(inv.Roles)
	return acc, nil
}

// ExternalLogins lists the contact's active external logins, oldest first.
func (s *Service) ExternalLogins(ctx context.Context, contactID string) ([]LinkedLogin, error) {
	id, ok := normalizeGUID(contactID)
	if !ok {
		return nil, fmt.Errorf("external logins: contact %q: %w", contactID, ErrNotFound)
	}
	page, err := s.dv.QueryPage(ctx, "adx_externalidentities", &dataverse.Query{
		Select:  []string{"adx_externalidentityid", "adx_identityprovidername", "adx_username", "createdon"},
		Filter:  "_adx_contactid_value eq " + id + " and statecode eq 0",
		OrderBy: []string{"createdon asc"}, Top: 50}, "")
	if err != nil {
		return nil, fmt.Errorf("external logins of %s: %w", id, err)
	}
	out := make([]LinkedLogin, 0, len(page.Records))
	for _, r := range page.Records {
		out = append(out, LinkedLogin{ID: strings.ToLower(r.Str("adx_externalidentityid")), Issuer: r.Str("adx_identityprovidername"),
			Key: r.Str("adx_username"), LinkedOn: r.Time("createdon")})
	}
	return out, nil
}

// LinkExternal links another login to a signed-in account (Power Pages'
// LinkLogin). Linking a login the account already holds does nothing.
// Errors: ErrNotFound (no such account), ErrLoginAlreadyAssociated.
func (s *Service) LinkExternal(ctx context.Context, contactID string, l ExternalLogin) error {
	if err := l.check(); err != nil {
		return fmt.Errorf("link external: %w", err)
	}
	c, err := s.identity(ctx, contactID)
	if err != nil {
		return fmt.Errorf("link external: %w", err)
	}
	id := strings.ToLower(c.Str("contactid"))
	unlock, err := s.locker.Lock(ctx, l.lockKey(), s.cfg.LockTTL)
	if err != nil {
		return fmt.Errorf("link external: lock login: %w", err)
	}
	defer unlock()
	page, err := s.dv.QueryPage(ctx, "contacts", &dataverse.Query{Select: []string{"contactid", "statecode"}, Filter: linkedFilter(l),
		Expand: []string{externalExpand}, Top: 5}, "")
	if err != nil {
		return fmt.Errorf("link external: %w", err)
	}
	for _, r := range page.Records {
		if !holdsLogin(r, l) {
			continue
		}
		if strings.EqualFold(r.Str("contactid"), id) {
			return nil
		}
		return fmt.Errorf("link external: %w", ErrLoginAlreadyAssociated)
	}
	if _, _, err := s.dv.Create(ctx, "adx_externalidentities", externalIdentityRow(l, id), nil); err != nil {
		return fmt.Errorf("link external: %w", err)
	}
	s.log.InfoContext(ctx, "external login linked", "contact", id, "provider", l.Provider)
	return nil
}

// UnlinkExternal removes one of the account's logins by deleting its row,
// as Power Pages does, unless it is the last way to sign in: a password
// counts only while local sign-in is enabled (Config.LocalLoginDisabled).
// Errors: ErrNotFound (no such account or login), ErrLastLogin.
func (s *Service) UnlinkExternal(ctx context.Context, contactID, loginID string) error {
	c, err := s.identity(ctx, contactID)
	if err != nil {
		return fmt.Errorf("unlink external: %w", err)
	}
	id := strings.ToLower(c.Str("contactid"))
	rowID, ok := normalizeGUID(loginID)
	if !ok {
		return fmt.Errorf("unlink external: login %q: %w", loginID, ErrNotFound)
	}
	// Two removals at once must not each see the other's login remaining.
	unlock, err := s.locker.Lock(ctx, "unlink:"+id, s.cfg.LockTTL)
	if err != nil {
		return fmt.Errorf("unlink external: lock: %w", err)
	}
	defer unlock()
	logins, err := s.ExternalLogins(ctx, id)
	if err != nil {
		return fmt.Errorf("unlink external: %w", err)
	}
	found := slices.IndexFunc(logins, func(x LinkedLogin) bool { return x.ID == rowID })
	if found < 0 {
		return fmt.Errorf("unlink external: login %s of contact %s: %w", rowID, id, ErrNotFound)
	}
	remaining := len(logins) - 1
	if c.Str("adx_identity_passwordhash") != "" && !c.Bool("adx_identity_locallogindisabled") && !s.cfg.LocalLoginDisabled {
		remaining++
	}
	if remaining == 0 {
		return fmt.Errorf("unlink external: %w", ErrLastLogin)
	}
	if _, err := s.changeSet(ctx, "unlink external login", []dataverse.BatchOp{
		{Method: http.MethodDelete, Path: "adx_externalidentities(" + rowID + ")"},
	}); err != nil {
		return fmt.Errorf("unlink external: %w", err)
	}
	s.log.InfoContext(ctx, "external login removed", "contact", id, "login", rowID)
	return nil
}

// MaskEmail shows enough of an address to recognise it: the first letter
// of the local part and the domain ("a••@contoso.example").
func MaskEmail(email string) string {
	email = strings.TrimSpace(email)
	at := strings.LastIndexByte(email, '@')
	if at <= 0 {
		return ""
	}
	local := []rune(email[:at])
	return string(local[0]) + strings.Repeat("•", min(max(len(local)-1, 2), 6)) + email[at:]
}

// checkEmailMatch applies the portal's require_email_match: the provider
// must vouch for the invited contact's address (any plausible address for a
// group invitation), or nothing is written.
func (s *Service) checkEmailMatch(pc *portalConf, inv *Invitation, l ExternalLogin) error {
	if !pc.RequireEmailMatch {
		return nil
	}
	email := strings.TrimSpace(l.Email)
	want := ""
	if inv.Type != TypeGroup {
		want = inv.ContactEmail
	}
	if !l.EmailVerified || (want != "" && !strings.EqualFold(email, strings.TrimSpace(want))) || (want == "" && !plausibleEmail(email)) {
		return &EmailMismatchError{Invited: MaskEmail(want), Verified: l.EmailVerified}
	}
	return nil
}

// grantOps are the change-set operations that give an existing contact the
// invitation's web roles it lacks and, for a group invitation, record it
// among the redeemers.
func (s *Service) grantOps(m *model, inv *Invitation, c dataverse.Record, contactID string) []dataverse.BatchOp {
	var ops []dataverse.BatchOp
	have := map[string]bool{}
	if list, ok := c[m.contactRoles].([]any); ok {
		for _, x := range list {
			if r, ok := x.(map[string]any); ok {
				have[strings.ToLower(dataverse.Record(r).Str(m.roleID))] = true
			}
		}
	}
	for _, id := range inv.RoleIDs {
		if !have[id] {
			ops = append(ops, dataverse.BatchOp{Method: http.MethodPost, Path: "contacts(" + contactID + ")/" + m.contactRoles + "/$ref",
				Body: map[string]any{"@odata.id": s.dv.APIURL() + m.roleSet + "(" + id + ")"}})
		}
	}
	if inv.Type == TypeGroup {
		ops = append(ops, dataverse.BatchOp{Method: http.MethodPost, Path: "adx_invitations(" + inv.ID + ")/adx_invitation_redeemedcontacts/$ref",
			Body: map[string]any{"@odata.id": s.dv.APIURL() + "contacts(" + contactID + ")"}})
	}
	return ops
}

// redeemForHolder redeems the invitation for the contact the login already
// belongs to, as Power Pages does when an invitee signs in with a login
// linked elsewhere: that contact is signed in, gets the web roles and is
// recorded as the redeemer; its identity columns and the invited contact
// stay as they are. The same If-Match on the invitation keeps the code
// single-use.
func (s *Service) redeemForHolder(ctx context.Context, pc *portalConf, inv *Invitation, holder dataverse.Record, req ExternalRedeemRequest) (*Account, error) {
	contactID := strings.ToLower(holder.Str("contactid"))
	invPatch := map[string]any{"adx_redemptions": inv.Redemptions + 1}
	if inv.MaxRedemptions > 0 && inv.Redemptions+1 >= inv.MaxRedemptions {
		invPatch["statuscode"] = invStatusRedeemed
	}
	if inv.Type != TypeGroup {
		invPatch["adx_redeemedContact@odata.bind"] = "/contacts(" + contactID + ")"
	}
	username := strings.TrimSpace(holder.Str("adx_identity_username"))
	if username == "" {
		username = req.Login.Key
	}
	ops := []dataverse.BatchOp{{Method: http.MethodPatch, Path: "adx_invitations(" + inv.ID + ")", Body: invPatch, Headers: ifMatch(inv.ETag)}}
	ops = append(ops, s.grantOps(pc.model, inv, holder, contactID)...)
	ops = append(ops, dataverse.BatchOp{Method: http.MethodPost, Path: "adx_inviteredemptions", Body: map[string]any{
		"activityid":    dataverse.NewGUID(),
		"subject":       truncate(username, 200),
		"adx_ipaddress": truncate(req.IPAddress, 128),
		"regardingobjectid_adx_invitation_adx_inviteredemption@odata.bind": "/adx_invitations(" + inv.ID + ")",
		"adx_inviteredemption_activity_parties": []any{map[string]any{
			"participationtypemask": partyCustomer, "partyid_contact@odata.bind": "/contacts(" + contactID + ")"}},
	}})
	if _, err := s.changeSet(ctx, "redeem invitation for the login's account", ops); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "invitation redeemed for the account the login belongs to", "invitation", inv.ID,
		"invited_contact", inv.ContactID, "contact", contactID)
	return &Account{ContactID: contactID, Username: username, Email: holder.Str("emailaddress1"),
		FirstName: holder.Str("firstname"), LastName: holder.Str("lastname"), FullName: holder.Str("fullname"),
		EmailConfirmed: holder.Bool("adx_identity_emailaddress1confirmed"), HasPassword: holder.Str("adx_identity_passwordhash") != "",
		SecurityStamp: holder.Str("adx_identity_securitystamp"), Portal: pc.Name, InvitationID: inv.ID,
		Roles: slices.Clone(inv.Roles), LinkedAccount: true}, nil
}
