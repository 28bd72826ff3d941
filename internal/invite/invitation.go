package invite

import (
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
)

// adx_invitation choice values (reference §1.1).
const (
	invTypeSingle      = 756150000
	invTypeGroup       = 756150001
	invStatusNew       = 1
	invStatusSent      = 756150000
	invStatusRedeemed  = 756150001
	invStatusInactive  = 2
	invStateActive     = 0
	invStateInactive   = 1
	partySender        = 1
	partyTo            = 2
	partyCustomer      = 11
	contactStateActive = 0
)

// Invitation statuses as the domain names them.
const (
	StatusNew      = "new"
	StatusSent     = "sent"
	StatusRedeemed = "redeemed"
	StatusInactive = "inactive"
)

// Invitation types.
const (
	TypeSingle = "single"
	TypeGroup  = "group"
)

// Invitation is an adx_invitation row as the portal and the CLI see it.
type Invitation struct {
	ID        string
	Name      string
	Portal    string // configured portal name ("" when the website is not configured)
	WebsiteID string
	Type      string // TypeSingle or TypeGroup
	Status    string // StatusNew, StatusSent, StatusRedeemed or StatusInactive
	// StateCode and StatusCode are the raw Dataverse values.
	StateCode, StatusCode int
	ExpiresAt             time.Time // zero: never expires
	MaxRedemptions        int       // 0: unlimited (Power Pages semantics)
	Redemptions           int
	ContactID             string // the invited contact (adx_invitecontact), "" for open group invitations
	ContactFirstName      string
	ContactLastName       string
	ContactName           string
	ContactEmail          string
	// ContactHasIdentity is true when the invited contact already has a
	// portal user name (the site sends them to ExistingUserPage).
	ContactHasIdentity bool
	RedeemedContactID  string
	AssignToAccountID  string
	OwnerID            string
	RoleIDs            []string
	Roles              []string // role names
	CreatedOn          time.Time
	// Code is the plain code when the row stores it in plain form; hashed
	// rows never reveal it.
	Code string
	ETag string

	storedCode string
}

// Open reports whether the invitation can still be redeemed at now.
func (inv *Invitation) Open(now time.Time) bool {
	return inv.StateCode == invStateActive && inv.StatusCode != invStatusRedeemed && !inv.usedUp() && !inv.expired(now)
}

func (inv *Invitation) usedUp() bool {
	return inv.StatusCode == invStatusRedeemed || (inv.MaxRedemptions > 0 && inv.Redemptions >= inv.MaxRedemptions)
}

func (inv *Invitation) expired(now time.Time) bool {
	return !inv.ExpiresAt.IsZero() && !now.Before(inv.ExpiresAt)
}

// invitationSelect are the adx_invitation columns the service reads, for
// the data models in use (a column of a model an org lacks would fail).
func (s *Service) invitationSelect() []string {
	cols := []string{"adx_invitationid", "adx_name", "adx_type", "adx_invitationcode", "adx_expirydate",
		"adx_maximumredemptions", "adx_redemptions", "statecode", "statuscode", "_adx_invitecontact_value",
		"_adx_redeemedcontact_value", "_adx_assigntoaccount_value", "_ownerid_value", "createdon"}
	for _, m := range s.models {
		cols = append(cols, m.websiteValue)
	}
	return cols
}

var contactSelect = []string{"contactid", "firstname", "lastname", "fullname", "emailaddress1", "statecode",
	"adx_identity_username", "adx_identity_logonenabled"}

// invitationExpand reads the invited contact and the invitation's roles.
func (s *Service) invitationExpand() []string {
	ex := []string{"adx_inviteContact($select=" + strings.Join(contactSelect, ",") + ")"}
	for _, m := range s.models {
		ex = append(ex, m.invRoles+"($select="+m.roleID+","+m.roleName+")")
	}
	return ex
}

// toInvitation maps an adx_invitation record (with the expands above).
func (s *Service) toInvitation(r dataverse.Record) *Invitation {
	inv := &Invitation{
		ID: strings.ToLower(r.Str("adx_invitationid")), Name: r.Str("adx_name"),
		StateCode: r.Int("statecode"), StatusCode: r.Int("statuscode"),
		ExpiresAt: r.Time("adx_expirydate"), MaxRedemptions: r.Int("adx_maximumredemptions"),
		Redemptions: r.Int("adx_redemptions"), ContactID: strings.ToLower(r.Str("_adx_invitecontact_value")),
		RedeemedContactID: strings.ToLower(r.Str("_adx_redeemedcontact_value")),
		AssignToAccountID: strings.ToLower(r.Str("_adx_assigntoaccount_value")),
		OwnerID:           strings.ToLower(r.Str("_ownerid_value")), CreatedOn: r.Time("createdon"),
		ETag: r.ETag(), storedCode: r.Str("adx_invitationcode"), Type: TypeSingle,
	}
	if r.Int("adx_type") == invTypeGroup {
		inv.Type = TypeGroup
	}
	switch {
	case inv.StateCode != invStateActive:
		inv.Status = StatusInactive
	case inv.StatusCode == invStatusSent:
		inv.Status = StatusSent
	case inv.StatusCode == invStatusRedeemed:
		inv.Status = StatusRedeemed
	default:
		inv.Status = StatusNew
	}
	for _, m := range s.models {
		if w := r.Str(m.websiteValue); w != "" {
			inv.WebsiteID = strings.ToLower(w)
			if pc := s.portalForWebsite(inv.WebsiteID); pc != nil {
				inv.Portal = pc.Name
				if pc.CodeStorage == CodePlain {
					inv.Code = inv.storedCode
				}
			}
		}
		if roles, ok := r[m.invRoles].([]any); ok {
			for _, x := range roles {
				if rr, ok := x.(map[string]any); ok {
					rec := dataverse.Record(rr)
					inv.RoleIDs = append(inv.RoleIDs, strings.ToLower(rec.Str(m.roleID)))
					inv.Roles = append(inv.Roles, rec.Str(m.roleName))
				}
			}
		}
	}
	if c, ok := r["adx_inviteContact"].(map[string]any); ok && c != nil {
		ct := dataverse.Record(c)
		inv.ContactFirstName, inv.ContactLastName = ct.Str("firstname"), ct.Str("lastname")
		inv.ContactName, inv.ContactEmail = ct.Str("fullname"), ct.Str("emailaddress1")
		inv.ContactHasIdentity = hasIdentity(ct)
	}
	return inv
}

// hasIdentity reports whether a contact already has a portal identity.
func hasIdentity(c dataverse.Record) bool {
	return strings.TrimSpace(c.Str("adx_identity_username")) != "" || c.Bool("adx_identity_logonenabled")
}

func odataTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
