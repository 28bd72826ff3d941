package invite

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/google/uuid"
)

// RedeemRequest is the redemption form.
type RedeemRequest struct {
	Code      string // as typed or from the link; normalised here
	Username  string // the portal user name; "" means the email address
	Password  string
	IPAddress string // recorded on the adx_inviteredemption activity
	// AcceptedTerms must be true when the portal has Terms.
	AcceptedTerms bool
	// Email, FirstName and LastName identify the redeemer of a group
	// invitation (ignored for single invitations, whose contact is known):
	// an existing contact with this email is linked, otherwise one is created.
	Email, FirstName, LastName string
}

// Account is a contact with a portal identity.
type Account struct {
	ContactID      string
	Username       string
	Email          string
	FirstName      string
	LastName       string
	FullName       string
	MobilePhone    string
	JobTitle       string
	EmailConfirmed bool
	// SecurityStamp changes whenever credentials change; sessions compare
	// it to log out everywhere after a password reset.
	SecurityStamp string
	Portal        string   // the portal the account was redeemed for or signed in to ("" from Account)
	Roles         []string // web role names (of Portal's website when Portal is set, else of every configured website)
	InvitationID  string   // set by Redeem
}

// redeemAttempts bounds retries after losing an optimistic-concurrency race
// on a group invitation that still has room.
const redeemAttempts = 3

// Redeem turns a code into a portal account: it checks the code, sets the
// identity on the invited contact (or, for group invitations, a linked or
// new contact), grants the invitation's web roles, sets the parent account,
// counts the redemption with If-Match on the invitation's ETag, and records
// the adx_inviteredemption activity, all in one atomic change set. Of two
// concurrent redemptions of a single-use code exactly one succeeds; the
// other gets ErrCodeUsedUp.
//
// Errors: ErrCodeUnknown, ErrCodeExpired, ErrCodeRevoked, ErrCodeUsedUp,
// ErrExistingUser (the contact already has an identity: send them to the
// portal's ExistingUserPage), ErrUsernameTaken, ErrTermsRequired, ErrNoEmail
// (group invitation without an email), *PolicyError.
func (s *Service) Redeem(ctx context.Context, req RedeemRequest) (*Account, error) {
	var err error
	for range redeemAttempts {
		var acc *Account
		acc, err = s.redeem(ctx, req)
		if err == nil {
			s.log.InfoContext(ctx, "invitation redeemed", "invitation", acc.InvitationID, "contact", acc.ContactID, "portal", acc.Portal)
			return acc, nil
		}
		if !dataverse.IsPreconditionFailed(err) {
			return acc, fmt.Errorf("redeem: %w", err) // acc is set with ErrExistingUser
		}
		// Someone redeemed (or changed) the invitation or contact between our
		// read and write; read again: a single-use code now reports used up.
	}
	return nil, fmt.Errorf("redeem: %w (%v)", ErrCodeUsedUp, err)
}

func (s *Service) redeem(ctx context.Context, req RedeemRequest) (*Account, error) {
	inv, err := s.lookup(ctx, req.Code)
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
	email := inv.ContactEmail
	if group {
		email = strings.TrimSpace(req.Email)
		if email == "" && strings.Contains(req.Username, "@") {
			email = strings.TrimSpace(req.Username)
		}
		if email == "" {
			return nil, ErrNoEmail
		}
	} else {
		if inv.ContactID == "" {
			return nil, ErrCodeUnknown
		}
		if inv.ContactHasIdentity {
			return inv.existingUser(), ErrExistingUser
		}
	}
	username := strings.TrimSpace(req.Username)
	if username == "" {
		username = email
	}
	if username == "" || len([]rune(username)) > 100 {
		return nil, &PolicyError{Problems: []string{"choose a user name of at most 100 characters"}}
	}
	if err := s.cfg.PasswordPolicy.Check(req.Password, username, email, req.FirstName, req.LastName, inv.ContactFirstName, inv.ContactLastName); err != nil {
		return nil, err
	}
	m := pc.model

	// One read: who holds the user name, the redeeming contact's current
	// roles and ETag, and (group) a contact with the redeemer's email.
	conds := []string{"adx_identity_username eq " + dataverse.Quote(username)}
	if !group {
		conds = append(conds, "contactid eq "+inv.ContactID)
	} else {
		conds = append(conds, "emailaddress1 eq "+dataverse.Quote(email))
	}
	page, err := s.dv.QueryPage(ctx, "contacts", &dataverse.Query{
		Select: []string{"contactid", "firstname", "lastname", "fullname", "emailaddress1", "statecode",
			"adx_identity_username", "adx_identity_logonenabled"},
		Filter: strings.Join(conds, " or "),
		Expand: []string{m.contactRoles + "($select=" + m.roleID + ")"},
		Top:    20,
	}, "")
	if err != nil {
		return nil, fmt.Errorf("read contacts: %w", err)
	}
	var target dataverse.Record
	for _, r := range page.Records {
		id := strings.ToLower(r.Str("contactid"))
		switch {
		case !group && id == inv.ContactID:
			target = r
		case group && target == nil && strings.EqualFold(r.Str("emailaddress1"), email) && r.Int("statecode") == contactStateActive:
			if hasIdentity(r) {
				return &Account{ContactID: id, Email: r.Str("emailaddress1"), Portal: pc.Name}, ErrExistingUser
			}
			target = r
		}
	}
	for _, r := range page.Records {
		if strings.EqualFold(strings.TrimSpace(r.Str("adx_identity_username")), username) &&
			(target == nil || !strings.EqualFold(r.Str("contactid"), target.Str("contactid"))) {
			return nil, ErrUsernameTaken
		}
	}
	if !group {
		if target == nil {
			return nil, ErrCodeUnknown // the invited contact was deleted
		}
		if hasIdentity(target) {
			return inv.existingUser(), ErrExistingUser
		}
	}

	hash, err := s.hasher.Hash(req.Password)
	if err != nil {
		return nil, err
	}
	stamp := uuid.NewString()
	identity := map[string]any{
		"adx_identity_username":               username,
		"adx_identity_passwordhash":           hash,
		"adx_identity_securitystamp":          stamp,
		"adx_identity_logonenabled":           true,
		"adx_identity_emailaddress1confirmed": !group, // the emailed link proves the address
		"adx_identity_lockoutenabled":         true,
		"adx_identity_accessfailedcount":      0,
		s.cols.Status:                         s.cols.Redeemed,
		s.cols.Portal:                         pc.Name,
		s.cols.Error:                          nil,
	}
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
	var contactID string
	var ops []dataverse.BatchOp
	acc := &Account{Username: username, Email: email, EmailConfirmed: !group, SecurityStamp: stamp,
		Portal: pc.Name, Roles: inv.Roles, InvitationID: inv.ID}
	if target == nil {
		// Group redeemer without a contact: create one, with roles and the
		// redeemed-contacts link bound on create.
		contactID = dataverse.NewGUID()
		body := identity
		body["contactid"] = contactID
		body["firstname"] = strings.TrimSpace(req.FirstName)
		body["lastname"] = strings.TrimSpace(req.LastName)
		body["emailaddress1"] = email
		if len(inv.RoleIDs) > 0 {
			binds := make([]string, len(inv.RoleIDs))
			for i, id := range inv.RoleIDs {
				binds[i] = "/" + m.roleSet + "(" + id + ")"
			}
			body[m.contactRoles+"@odata.bind"] = binds
		}
		body["adx_invitation_redeemedcontacts@odata.bind"] = []string{"/adx_invitations(" + inv.ID + ")"}
		ops = append(ops,
			dataverse.BatchOp{Method: http.MethodPatch, Path: "adx_invitations(" + inv.ID + ")", Body: invPatch, Headers: ifMatch(inv.ETag)},
			dataverse.BatchOp{Method: http.MethodPost, Path: "contacts", Body: body})
		acc.FirstName, acc.LastName = body["firstname"].(string), body["lastname"].(string)
		acc.FullName = strings.TrimSpace(acc.FirstName + " " + acc.LastName)
	} else {
		contactID = strings.ToLower(target.Str("contactid"))
		if !group {
			invPatch["adx_redeemedContact@odata.bind"] = "/contacts(" + contactID + ")"
		}
		ops = append(ops,
			dataverse.BatchOp{Method: http.MethodPatch, Path: "adx_invitations(" + inv.ID + ")", Body: invPatch, Headers: ifMatch(inv.ETag)},
			dataverse.BatchOp{Method: http.MethodPatch, Path: "contacts(" + contactID + ")", Body: identity, Headers: ifMatch(etagOr(target))})
		have := map[string]bool{}
		if list, ok := target[m.contactRoles].([]any); ok {
			for _, x := range list {
				if r, ok := x.(map[string]any); ok {
					have[strings.ToLower(dataverse.Record(r).Str(m.roleID))] = true
				}
			}
		}
		for _, id := range inv.RoleIDs {
			if have[id] {
				continue // associating an existing pair fails the change set
			}
			ops = append(ops, dataverse.BatchOp{Method: http.MethodPost, Path: "contacts(" + contactID + ")/" + m.contactRoles + "/$ref",
				Body: map[string]any{"@odata.id": s.dv.APIURL() + m.roleSet + "(" + id + ")"}})
		}
		if group {
			ops = append(ops, dataverse.BatchOp{Method: http.MethodPost, Path: "adx_invitations(" + inv.ID + ")/adx_invitation_redeemedcontacts/$ref",
				Body: map[string]any{"@odata.id": s.dv.APIURL() + "contacts(" + contactID + ")"}})
		}
		acc.FirstName, acc.LastName, acc.FullName = target.Str("firstname"), target.Str("lastname"), target.Str("fullname")
		acc.Email = target.Str("emailaddress1")
	}
	ops = append(ops, dataverse.BatchOp{Method: http.MethodPost, Path: "adx_inviteredemptions", Body: map[string]any{
		"activityid":    dataverse.NewGUID(),
		"subject":       truncate(username, 200),
		"adx_ipaddress": truncate(req.IPAddress, 128),
		"regardingobjectid_adx_invitation_adx_inviteredemption@odata.bind": "/adx_invitations(" + inv.ID + ")",
		"adx_inviteredemption_activity_parties": []any{map[string]any{
			"participationtypemask": partyCustomer, "partyid_contact@odata.bind": "/contacts(" + contactID + ")"}},
	}})
	if _, err := s.changeSet(ctx, "redeem invitation", ops); err != nil {
		return nil, err // a 412 makes Redeem read again
	}
	acc.ContactID = contactID
	acc.Roles = slices.Clone(inv.Roles)
	return acc, nil
}

// existingUser is what Redeem returns with ErrExistingUser for a single
// invitation, so the site can greet the contact and redirect.
func (inv *Invitation) existingUser() *Account {
	return &Account{ContactID: inv.ContactID, Email: inv.ContactEmail, FirstName: inv.ContactFirstName,
		LastName: inv.ContactLastName, FullName: inv.ContactName, Portal: inv.Portal, InvitationID: inv.ID}
}

func etagOr(r dataverse.Record) string {
	if e := r.ETag(); e != "" {
		return e
	}
	return "*"
}
