package invite

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/google/uuid"
)

// queryPath renders a query as a path relative to the service root, for GETs
// inside a $batch.
func queryPath(set string, q *dataverse.Query) string {
	var parts []string
	add := func(k, v string) { parts = append(parts, k+"="+escapeQuery(v)) }
	if len(q.Select) > 0 {
		add("$select", strings.Join(q.Select, ","))
	}
	if q.Filter != "" {
		add("$filter", q.Filter)
	}
	if len(q.OrderBy) > 0 {
		add("$orderby", strings.Join(q.OrderBy, ","))
	}
	if q.Top > 0 {
		add("$top", strconv.Itoa(q.Top))
	}
	if len(q.Expand) > 0 {
		add("$expand", strings.Join(q.Expand, ","))
	}
	if len(parts) == 0 {
		return set
	}
	return set + "?" + strings.Join(parts, "&")
}

// escapeQuery percent-encodes a query option value, keeping the characters
// OData syntax uses literally.
func escapeQuery(v string) string {
	const keep = "-_.~'(),=:@!*$/"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(keep, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// decodeCollection reads the rows of a query response body.
func decodeCollection(body []byte) ([]dataverse.Record, error) {
	var c struct {
		Value []dataverse.Record `json:"value"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("decode query response: %w", err)
	}
	return c.Value, nil
}

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
	// HasPassword is true when the account can sign in with a password
	// (adx_identity_passwordhash is set); external-only accounts have none.
	HasPassword bool
	// SecurityStamp changes whenever credentials change; sessions compare
	// it to log out everywhere after a password reset.
	SecurityStamp string
	Portal        string   // the portal the account was redeemed for or signed in to ("" from Account)
	Roles         []string // web role names (of Portal's website when Portal is set, else of every configured website)
	InvitationID  string   // set by Redeem
	// LinkedAccount is set by RedeemExternal when the login already belonged
	// to another contact and the invitation was redeemed for that contact.
	LinkedAccount bool
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
	cq, ok := s.codeQuery(req.Code)
	if !ok {
		return nil, ErrCodeUnknown
	}
	username := strings.TrimSpace(req.Username)
	reqEmail := strings.TrimSpace(req.Email)
	if reqEmail == "" && strings.Contains(username, "@") {
		reqEmail = username
	}
	// One read request: the invitation, plus the contacts that matter for
	// it (the invitee with its roles and ETag, whoever holds the user name,
	// and for group invitations a contact with the redeemer's email).
	contactConds := []string{"adx_invitation_invitecontact/any(i:" + cq.filter("i/") + ")"}
	if username != "" {
		contactConds = append(contactConds, "adx_identity_username eq "+dataverse.Quote(username))
	}
	if reqEmail != "" {
		contactConds = append(contactConds, "emailaddress1 eq "+dataverse.Quote(reqEmail))
	}
	var expand []string
	for _, m := range s.models {
		expand = append(expand, m.contactRoles+"($select="+m.roleID+")")
	}
	contactsQ := &dataverse.Query{Select: []string{"contactid", "firstname", "lastname", "fullname", "emailaddress1", "statecode",
		"adx_identity_username", "adx_identity_logonenabled"}, Filter: strings.Join(contactConds, " or "), Expand: expand, Top: 20}
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
	email := inv.ContactEmail
	if group {
		email = reqEmail
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
	var target dataverse.Record
	for _, r := range contacts {
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
	for _, r := range contacts {
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
	acc := &Account{Username: username, Email: email, EmailConfirmed: !group, SecurityStamp: stamp, HasPassword: true,
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
