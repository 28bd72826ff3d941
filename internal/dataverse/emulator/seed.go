package emulator

import (
	"fmt"
	"time"
)

// Fixed ids of the system metadata rows every emulator starts with.
const (
	SdkMessageCreateID       = "c0ffee00-d365-4e00-9000-000000000e01"
	SdkMessageUpdateID       = "c0ffee00-d365-4e00-9000-000000000e02"
	SdkMessageDeleteID       = "c0ffee00-d365-4e00-9000-000000000e03"
	SdkMessageAssociateID    = "c0ffee00-d365-4e00-9000-000000000e04"
	SdkMessageDisassociateID = "c0ffee00-d365-4e00-9000-000000000e05"
)

// seedSystem creates the organization row, the root business unit, the application user
// of the configured client id and the sdkmessage/sdkmessagefilter rows webhook
// registration looks up.
func (s *Server) seedSystem() {
	s.appUser = AppUserID
	must := func(id string, err error) string {
		if err != nil {
			panic(fmt.Errorf("emulator seed: %w", err))
		}
		return id
	}
	// A new organization's email settings: unresolved recipients refused, mailbox
	// approval required (email-delivery.md §2).
	must(s.Insert("organization", map[string]any{
		"organizationid": OrganizationID, "allowunresolvedpartiesonemailsend": false,
		"requireapprovalforuseremail": true, "requireapprovalforqueueemail": true,
		"expirechangetrackingindays": int(s.opts.ChangeTrackingExpiry / (24 * time.Hour)),
	}))
	must(s.Insert("businessunit", map[string]any{"businessunitid": BusinessUnitID, "name": OrganizationName}))
	must(s.Insert("systemuser", map[string]any{
		"systemuserid": AppUserID, "applicationid": s.opts.Auth.ClientID, "fullname": "# Portal Invitation Connector",
		"accessmode": 4, "azureactivedirectoryobjectid": "c0ffee00-d365-4e00-9000-0000000000a2", "businessunitid": BusinessUnitID,
	}))
	msgs := []struct{ id, name string }{
		{SdkMessageCreateID, "Create"}, {SdkMessageUpdateID, "Update"}, {SdkMessageDeleteID, "Delete"},
		{SdkMessageAssociateID, "Associate"}, {SdkMessageDisassociateID, "Disassociate"},
	}
	for _, m := range msgs {
		must(s.Insert("sdkmessage", map[string]any{"sdkmessageid": m.id, "name": m.name, "categoryname": "Create"}))
	}
	for i, tbl := range []string{"contact", "adx_invitation", "account", "email"} {
		for j, m := range msgs[:3] {
			id := fmt.Sprintf("c0ffee00-d365-4e00-9000-000000000f%d%d", i, j)
			must(s.Insert("sdkmessagefilter", map[string]any{
				"sdkmessagefilterid": id, "sdkmessageid": m.id, "primaryobjecttypecode": tbl, "secondaryobjecttypecode": "none",
				"name": m.name + " " + tbl,
			}))
		}
	}
	// Associate/Disassociate filters are not entity specific.
	must(s.Insert("sdkmessagefilter", map[string]any{"sdkmessagefilterid": "c0ffee00-d365-4e00-9000-000000000f90", "sdkmessageid": SdkMessageAssociateID, "primaryobjecttypecode": "none", "secondaryobjecttypecode": "none"}))
}

// Demo seed ids (fixed so docs, tests and `connector dev` can refer to them).
const (
	DemoSiteID                   = "d3e00000-0000-4000-8000-000000000001" // powerpagesite "Contoso Partner Portal"
	DemoRoleAuthenticatedUsersID = "d3e00000-0000-4000-8000-000000000011" // powerpagecomponent type 11
	DemoRolePartnersID           = "d3e00000-0000-4000-8000-000000000012"
	DemoRoleCustomersID          = "d3e00000-0000-4000-8000-000000000013"
	DemoWebsiteID                = "d3e00000-0000-4000-8000-000000000021" // adx_website "Contoso Customer Portal"
	DemoWebRoleAuthenticatedID   = "d3e00000-0000-4000-8000-000000000031" // adx_webrole
	DemoWebRoleCustomersID       = "d3e00000-0000-4000-8000-000000000032"
	DemoWebRoleAdministratorsID  = "d3e00000-0000-4000-8000-000000000033"
	DemoMailerUserID             = "d3e00000-0000-4000-8000-000000000041" // systemuser "Portal Mailer"
	DemoAdminUserID              = "d3e00000-0000-4000-8000-000000000042" // systemuser "Avery Admin"
	DemoQueueID                  = "d3e00000-0000-4000-8000-000000000043" // queue "Portal Invitations"
	DemoAccountID                = "d3e00000-0000-4000-8000-000000000051" // account "Contoso Ltd"
	DemoContactNoEmailID         = "d3e00000-0000-4000-8000-000000000111" // contact without email
	DemoContactInactiveID        = "d3e00000-0000-4000-8000-000000000112" // inactive contact
)

// Contact invite columns declared by the demo (defaults of intake.contact.*).
const (
	ColInviteStatus = "pinv_portalinvitestatus"
	ColInvitePortal = "pinv_portalname"
	ColInviteRoles  = "pinv_portalroles"
	ColInvitedOn    = "pinv_lastinvitedon"
	ColInviteError  = "pinv_lastinviteerror"

	InviteRequested = 100000000
	InviteSent      = 100000001
	InviteFailed    = 100000002
	InviteRedeemed  = 100000003
	InviteDelivered = 100000004
	InviteResend    = 100000005
	InviteRevoke    = 100000006
	InviteRevoked   = 100000007
	InviteExpired   = 100000008
)

// Demo describes what SeedDemo created.
type Demo struct {
	SiteID, WebsiteID, MailerUserID, AdminUserID, AccountID string
	QueueID                                                 string            // queue "Portal Invitations"
	Mailboxes                                               map[string]string // "mailer", "admin", "queue" -> mailboxid
	EnhancedRoles                                           map[string]string // web role name -> powerpagecomponentid
	StandardRoles                                           map[string]string // web role name -> adx_webroleid
	ContactIDs                                              []string          // all 12 contacts, in creation order
	ContactNoEmailID, ContactInactiveID                     string
}

// DefineInviteColumns declares the custom contact columns the connector writes.
func DefineInviteColumns(s *Server) {
	s.DefineColumn("contact", Column{Name: ColInviteStatus, Type: TypePicklist, Options: map[int]string{
		InviteRequested: "Requested", InviteSent: "Sent", InviteFailed: "Failed", InviteRedeemed: "Redeemed", InviteDelivered: "Delivered",
		InviteResend: "Resend requested", InviteRevoke: "Revoke requested", InviteRevoked: "Revoked", InviteExpired: "Expired"}})
	s.DefineColumn("contact", Column{Name: ColInvitePortal, Type: TypeString, MaxLength: 100})
	s.DefineColumn("contact", Column{Name: ColInviteRoles, Type: TypeString, MaxLength: 1000})
	s.DefineColumn("contact", Column{Name: ColInvitedOn, Type: TypeDateTime})
	s.DefineColumn("contact", Column{Name: ColInviteError, Type: TypeString, MaxLength: 2000})
}

// SeedDemo fills an emulator with the demo organization used by `connector dev` and
// `connector emulator --seed demo`.
func SeedDemo(s *Server) (*Demo, error) {
	DefineInviteColumns(s)
	d := &Demo{
		SiteID: DemoSiteID, WebsiteID: DemoWebsiteID, MailerUserID: DemoMailerUserID, AdminUserID: DemoAdminUserID,
		AccountID: DemoAccountID, ContactNoEmailID: DemoContactNoEmailID, ContactInactiveID: DemoContactInactiveID,
		QueueID: DemoQueueID, Mailboxes: map[string]string{},
		EnhancedRoles: map[string]string{}, StandardRoles: map[string]string{},
	}
	var err error
	ins := func(table string, row map[string]any) {
		if err != nil {
			return
		}
		_, err = s.Insert(table, row)
	}
	ins("systemuser", map[string]any{"systemuserid": DemoMailerUserID, "fullname": "Portal Mailer",
		"internalemailaddress": "portal-mailer@contoso.example", "domainname": "portal-mailer@contoso.example",
		"azureactivedirectoryobjectid": "d3e00000-0000-4000-8000-0000000000a1", "businessunitid": BusinessUnitID})
	ins("systemuser", map[string]any{"systemuserid": DemoAdminUserID, "fullname": "Avery Admin",
		"internalemailaddress": "avery.admin@contoso.example", "domainname": "avery.admin@contoso.example",
		"azureactivedirectoryobjectid": "d3e00000-0000-4000-8000-0000000000a2", "businessunitid": BusinessUnitID})
	// The queue the invitation emails can be sent from; it and both users get
	// their mailbox from the platform, approved and enabled.
	ins("queue", map[string]any{"queueid": DemoQueueID, "name": "Portal Invitations", "emailaddress": "invitations@contoso.example"})
	for name, owner := range map[string]string{"mailer": DemoMailerUserID, "admin": DemoAdminUserID, "queue": DemoQueueID} {
		if mb, ok := s.MailboxOf(owner); ok {
			d.Mailboxes[name] = mb
		}
	}
	ins("account", map[string]any{"accountid": DemoAccountID, "name": "Contoso Ltd", "emailaddress1": "info@contoso.example"})

	ins("powerpagesite", map[string]any{"powerpagesiteid": DemoSiteID, "name": "Contoso Partner Portal"})
	for _, r := range []struct{ id, name string }{
		{DemoRoleAuthenticatedUsersID, "Authenticated Users"}, {DemoRolePartnersID, "Partners"}, {DemoRoleCustomersID, "Customers"},
	} {
		ins("powerpagecomponent", map[string]any{"powerpagecomponentid": r.id, "name": r.name, "powerpagecomponenttype": 11,
			"powerpagesiteid": DemoSiteID, "content": fmt.Sprintf(`{"authenticatedusersrole":%t,"anonymoususersrole":false}`, r.name == "Authenticated Users")})
		d.EnhancedRoles[r.name] = r.id
	}
	ins("adx_website", map[string]any{"adx_websiteid": DemoWebsiteID, "adx_name": "Contoso Customer Portal", "adx_primarydomainname": "customers.contoso.example"})
	for _, r := range []struct{ id, name, key string }{
		{DemoWebRoleAuthenticatedID, "Authenticated Users", "authenticated-users"},
		{DemoWebRoleCustomersID, "Customers", "customers"},
		{DemoWebRoleAdministratorsID, "Administrators", "administrators"},
	} {
		ins("adx_webrole", map[string]any{"adx_webroleid": r.id, "adx_name": r.name, "adx_key": r.key, "adx_websiteid": DemoWebsiteID,
			"adx_authenticatedusersrole": r.name == "Authenticated Users"})
		d.StandardRoles[r.name] = r.id
	}

	people := []struct{ first, last, email, job, phone string }{
		{"Maria", "Campbell", "maria.campbell@fabrikam.example", "Purchasing Manager", "+1 206 555 0110"},
		{"Nancy", "Anderson", "nancy.anderson@adventure-works.example", "Operations Director", "+1 425 555 0111"},
		{"Paul", "Cannon", "paul.cannon@alpineskihouse.example", "Owner", "+1 303 555 0112"},
		{"Rene", "Valdes", "rene.valdes@treyresearch.example", "Research Lead", "+1 617 555 0113"},
		{"Sidney", "Higa", "sidney.higa@litware.example", "IT Manager", "+1 512 555 0114"},
		{"Scott", "Konersmann", "scott.konersmann@wingtiptoys.example", "Account Executive", "+1 312 555 0115"},
		{"Susanna", "Stubberod", "susanna.stubberod@northwindtraders.example", "Buyer", "+1 503 555 0116"},
		{"Thomas", "Andersen", "thomas.andersen@proseware.example", "Consultant", "+45 55 50 117"},
		{"Yvonne", "McKay", "yvonne.mckay@woodgrovebank.example", "Relationship Manager", "+44 20 5550 118"},
		{"Jim", "Glynn", "jim.glynn@tailspintoys.example", "Procurement Specialist", "+1 919 555 0119"},
		{"Alex", "Wu", "", "Field Technician", "+1 808 555 0120"},
		{"Erin", "Hagens", "erin.hagens@contoso.example", "Former Partner Contact", "+1 702 555 0121"},
	}
	base := time.Date(2024, 3, 4, 9, 0, 0, 0, time.UTC)
	for i, p := range people {
		id := fmt.Sprintf("d3e00000-0000-4000-8000-000000000%d", 101+i)
		row := map[string]any{"contactid": id, "firstname": p.first, "lastname": p.last, "jobtitle": p.job,
			"telephone1": p.phone, "createdon": base.Add(time.Duration(i) * time.Hour)}
		if p.email != "" {
			row["emailaddress1"] = p.email
		}
		if i < 6 {
			row["parentcustomerid"] = DemoAccountID
		}
		if id == DemoContactInactiveID {
			row["statecode"] = 1
			row["statuscode"] = 2
		}
		ins("contact", row)
		d.ContactIDs = append(d.ContactIDs, id)
	}
	if err != nil {
		return nil, fmt.Errorf("seed demo: %w", err)
	}
	return d, nil
}
