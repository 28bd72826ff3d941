package emulator

import "strings"

// Option-set values used across the package (the real ones).
const (
	invitationTypeSingle = 756150000
	invitationTypeGroup  = 756150001

	emailStatusDraft       = 1
	emailStatusSent        = 3
	emailStatusPendingSend = 6

	contractWebhook = 8
)

var activeInactive = map[int]string{0: "Active", 1: "Inactive"}

func simpleStates(t *table) {
	t.states(activeInactive, [][3]any{{1, 0, "Active"}, {2, 1, "Inactive"}})
}

// standard adds the system columns every table here has.
func standard(t *table, userOwned bool) {
	t.ro(t.datetime("createdon"))
	t.ro(t.datetime("modifiedon"))
	t.datetime("overriddencreatedon")
	t.ro(t.lookup("createdby", target{table: "systemuser", nav: "createdby", coll: "lk_" + t.logical + "_createdby"}))
	t.ro(t.lookup("modifiedby", target{table: "systemuser", nav: "modifiedby", coll: "lk_" + t.logical + "_modifiedby"}))
	t.ro(t.lookup("createdonbehalfby", target{table: "systemuser", nav: "createdonbehalfby"}))
	t.ro(t.lookup("modifiedonbehalfby", target{table: "systemuser", nav: "modifiedonbehalfby"}))
	t.ro(t.add(&Column{Name: "versionnumber", Type: TypeBigInt}))
	t.integer("importsequencenumber")
	t.integer("timezoneruleversionnumber")
	t.integer("utcconversiontimezonecode")
	if userOwned {
		t.userOwned = true
		// ownerid is polymorphic (systemuser|team) but has one nav prop "ownerid".
		t.lookup("ownerid", target{table: "systemuser", nav: "ownerid", coll: "user_" + t.logical}, target{table: "team", nav: "ownerid", coll: "team_" + t.logical})
		t.ro(t.lookup("owninguser", target{table: "systemuser", nav: "owninguser"}))
		t.ro(t.lookup("owningteam", target{table: "team", nav: "owningteam"}))
		t.ro(t.lookup("owningbusinessunit", target{table: "businessunit", nav: "owningbusinessunit", coll: "business_unit_" + t.logical}))
	}
}

func defineSchema(r *registry) {
	// --- core tables -------------------------------------------------------------------
	bu := r.table("businessunit", "businessunits", "businessunitid", "name")
	bu.str("name", 160)
	standard(bu, false)

	team := r.table("team", "teams", "teamid", "name")
	team.str("name", 160)
	standard(team, false)

	wf := r.table("workflow", "workflows", "workflowid", "name")
	wf.str("name", 100)
	standard(wf, true)

	su := r.table("systemuser", "systemusers", "systemuserid", "fullname")
	su.str("firstname", 64)
	su.str("lastname", 64)
	su.ro(su.str("fullname", 200))
	su.str("internalemailaddress", 100)
	su.str("domainname", 1024)
	su.str("title", 128)
	su.guid("applicationid")
	su.guid("azureactivedirectoryobjectid")
	su.boolean("isdisabled", false)
	su.picklist("accessmode", 0, map[int]string{0: "Read-Write", 1: "Administrative", 2: "Read", 3: "Support User", 4: "Non-interactive", 5: "Delegated Admin"})
	su.lookup("businessunitid", target{table: "businessunit", nav: "businessunitid", coll: "business_unit_system_users"})
	standard(su, false)
	su.computed = func(row map[string]any) { row["fullname"] = joinName(row) }

	acc := r.table("account", "accounts", "accountid", "name")
	acc.str("name", 160)
	acc.str("accountnumber", 20)
	acc.str("emailaddress1", 100)
	acc.str("telephone1", 50)
	acc.str("websiteurl", 200)
	acc.memo("description", 2000)
	acc.lookup("primarycontactid", target{table: "contact", nav: "primarycontactid", coll: "account_primary_contact"})
	acc.lookup("parentaccountid", target{table: "account", nav: "parentaccountid", coll: "account_parent_account"})
	simpleStates(acc)
	standard(acc, true)

	c := r.table("contact", "contacts", "contactid", "fullname")
	c.str("firstname", 50)
	c.str("middlename", 50)
	c.str("lastname", 50)
	c.ro(c.str("fullname", 160))
	c.str("emailaddress1", 100)
	c.str("emailaddress2", 100)
	c.str("emailaddress3", 100)
	c.str("mobilephone", 50)
	c.str("telephone1", 50)
	c.str("jobtitle", 100)
	c.str("address1_city", 80)
	c.add(&Column{Name: "birthdate", Type: TypeDateOnly})
	c.memo("description", 2000)
	c.lookup("parentcustomerid",
		target{table: "account", nav: "parentcustomerid_account", coll: "contact_customer_accounts"},
		target{table: "contact", nav: "parentcustomerid_contact", coll: "contact_customer_contacts"})
	simpleStates(c)
	// Power Pages local identity columns (reference §2.1).
	c.str("adx_identity_username", 100)
	c.str("adx_identity_passwordhash", 128)
	c.str("adx_identity_securitystamp", 100)
	c.boolean("adx_identity_logonenabled", false)
	c.boolean("adx_identity_emailaddress1confirmed", false)
	c.boolean("adx_identity_mobilephoneconfirmed", false)
	c.boolean("adx_identity_lockoutenabled", false)
	c.datetime("adx_identity_lockoutenddate")
	c.integer("adx_identity_accessfailedcount")
	c.boolean("adx_identity_twofactorenabled", false)
	c.datetime("adx_identity_lastsuccessfullogin")
	c.boolean("adx_identity_locallogindisabled", false)
	c.str("adx_identity_newpassword", 100)
	c.boolean("adx_confirmremovepassword", false)
	c.str("adx_createdbyipaddress", 100)
	c.str("adx_createdbyusername", 100)
	c.str("adx_modifiedbyipaddress", 100)
	c.str("adx_modifiedbyusername", 100)
	c.str("adx_organizationname", 250)
	c.integer("adx_timezone")
	c.boolean("adx_profilealert", false)
	c.datetime("adx_profilealertdate")
	c.memo("adx_profilealertinstructions", 4096)
	c.boolean("adx_profileisanonymous", false)
	c.datetime("adx_profilelastactivity")
	c.datetime("adx_profilemodifiedon")
	c.memo("adx_publicprofilecopy", 64000)
	standard(c, true)
	c.computed = func(row map[string]any) { row["fullname"] = joinName(row) }

	q := r.table("queue", "queues", "queueid", "name")
	q.str("name", 400)
	q.str("emailaddress", 100)
	q.memo("description", 2000)
	simpleStates(q)
	standard(q, true)

	// --- Power Pages: standard data model ------------------------------------------------
	ws := r.table("adx_website", "adx_websites", "adx_websiteid", "adx_name")
	ws.str("adx_name", 100)
	ws.str("adx_primarydomainname", 100)
	simpleStates(ws)
	standard(ws, false)

	wr := r.table("adx_webrole", "adx_webroles", "adx_webroleid", "adx_name")
	wr.str("adx_name", 100)
	wr.lookup("adx_websiteid", target{table: "adx_website", nav: "adx_websiteid", coll: "adx_website_webrole"})
	wr.str("adx_key", 100)
	wr.memo("adx_description", 2000)
	wr.boolean("adx_authenticatedusersrole", false)
	wr.boolean("adx_anonymoususersrole", false)
	simpleStates(wr)
	standard(wr, false)

	// --- Power Pages: enhanced data model ------------------------------------------------
	ps := r.table("powerpagesite", "powerpagesites", "powerpagesiteid", "name")
	ps.str("name", 100)
	ps.memo("content", 1048576)
	simpleStates(ps)
	standard(ps, true)

	pc := r.table("powerpagecomponent", "powerpagecomponents", "powerpagecomponentid", "name")
	pc.str("name", 100)
	pc.picklist("powerpagecomponenttype", nil, map[int]string{
		1: "Publishing State", 2: "Web Page", 3: "Web File", 4: "Web Link Set", 5: "Web Link", 6: "Page Template",
		7: "Content Snippet", 8: "Web Template", 9: "Site Setting", 10: "Web Page Access Control Rule", 11: "Web Role",
		12: "Website Access", 13: "Site Marker", 15: "Basic Form", 16: "Basic Form Metadata", 17: "List",
		18: "Table Permission", 19: "Advanced Form", 20: "Advanced Form Step", 21: "Advanced Form Metadata",
		24: "Poll Placement", 26: "Ad Placement", 27: "Bot Consumer", 28: "Column Permission Profile",
		29: "Column Permission", 30: "Redirect", 31: "Publishing State Transition Rule", 32: "Shortcut",
		33: "Cloud Flow", 34: "UX Component",
	})
	pc.lookup("powerpagesiteid", target{table: "powerpagesite", nav: "powerpagesiteid", coll: "powerpagesite_powerpagecomponent"})
	pc.memo("content", 1048576)
	simpleStates(pc)
	standard(pc, true)

	// --- invitations (reference §1.1) -----------------------------------------------------
	inv := r.table("adx_invitation", "adx_invitations", "adx_invitationid", "adx_name")
	inv.str("adx_name", 200)
	inv.picklist("adx_type", nil, map[int]string{invitationTypeSingle: "Single", invitationTypeGroup: "Group"})
	inv.str("adx_invitationcode", 200)
	inv.datetime("adx_expirydate")
	inv.integer("adx_maximumredemptions")
	inv.integer("adx_redemptions")
	inv.lookup("adx_invitecontact", target{table: "contact", nav: "adx_inviteContact", coll: "adx_invitation_invitecontact"})
	inv.lookup("adx_invitercontact", target{table: "contact", nav: "adx_invitercontact", coll: "adx_invitation_invitercontact"})
	inv.lookup("adx_redeemedcontact", target{table: "contact", nav: "adx_redeemedContact", coll: "adx_invitation_redeemedContact"})
	inv.lookup("adx_assigntoaccount", target{table: "account", nav: "adx_assignToAccount", coll: "adx_invitation_assigntoaccount"})
	inv.lookup("adx_redemptionworkflow", target{table: "workflow", nav: "adx_redemptionWorkflow", coll: "adx_invitation_redemptionworkflow"})
	inv.lookup("mspp_websiteid", target{table: "powerpagesite", nav: "mspp_websiteid", coll: "powerpagesite_mspp_websiteid_adx_invitation"})
	inv.lookup("adx_website", target{table: "adx_website", nav: "adx_website", coll: "adx_invitation_website"})
	inv.states(activeInactive, [][3]any{{1, 0, "New"}, {756150000, 0, "Sent"}, {756150001, 0, "Redeemed"}, {2, 1, "Inactive"}})
	standard(inv, true)
	inv.activity = false

	activityStates := func(t *table) {
		t.states(map[int]string{0: "Open", 1: "Completed", 2: "Canceled", 3: "Scheduled"},
			[][3]any{{1, 0, "Open"}, {2, 1, "Completed"}, {3, 2, "Canceled"}, {4, 3, "Scheduled"}})
	}

	red := r.table("adx_inviteredemption", "adx_inviteredemptions", "activityid", "subject")
	red.activity = true
	red.str("subject", 200)
	red.str("adx_ipaddress", 128)
	red.memo("description", 2000)
	// Regarding nav names follow the regardingobjectid_<target>_<activity> pattern (UNCONFIRMED for this table).
	red.lookup("regardingobjectid",
		target{table: "adx_invitation", nav: "regardingobjectid_adx_invitation_adx_inviteredemption", coll: "adx_invitation_adx_inviteredemptions"},
		target{table: "contact", nav: "regardingobjectid_contact_adx_inviteredemption", coll: "contact_adx_inviteredemptions"},
		target{table: "account", nav: "regardingobjectid_account_adx_inviteredemption", coll: "account_adx_inviteredemptions"})
	activityStates(red)
	standard(red, true)

	em := r.table("email", "emails", "activityid", "subject")
	em.activity = true
	em.str("subject", 800)
	em.memo("description", 1073741823)
	em.boolean("directioncode", true)
	em.str("trackingtoken", 50)
	em.ro(em.datetime("senton"))
	em.ro(em.str("sender", 250))
	em.ro(em.str("torecipients", 500))
	em.lookup("regardingobjectid",
		target{table: "adx_invitation", nav: "regardingobjectid_adx_invitation_email", coll: "adx_invitation_Emails", cascade: true},
		target{table: "contact", nav: "regardingobjectid_contact_email", coll: "Contact_Emails", cascade: true},
		target{table: "account", nav: "regardingobjectid_account_email", coll: "Account_Emails", cascade: true})
	em.states(map[int]string{0: "Open", 1: "Completed", 2: "Canceled"}, [][3]any{
		{1, 0, "Draft"}, {8, 0, "Failed"}, {2, 1, "Completed"}, {3, 1, "Sent"}, {4, 1, "Received"},
		{6, 1, "Pending Send"}, {7, 1, "Sending"}, {5, 2, "Canceled"}})
	standard(em, true)

	ap := r.table("activityparty", "activityparties", "activitypartyid", "")
	ap.lookup("activityid",
		target{table: "email", nav: "activityid_email", coll: "email_activity_parties", cascade: true},
		target{table: "adx_inviteredemption", nav: "activityid_adx_inviteredemption", coll: "adx_inviteredemption_activity_parties", cascade: true})
	ap.lookup("partyid",
		target{table: "contact", nav: "partyid_contact", coll: "contact_activity_parties"},
		target{table: "account", nav: "partyid_account", coll: "account_activity_parties"},
		target{table: "systemuser", nav: "partyid_systemuser", coll: "system_user_activity_parties"},
		target{table: "queue", nav: "partyid_queue", coll: "queue_activity_parties"})
	ap.picklist("participationtypemask", nil, map[int]string{
		1: "Sender", 2: "To Recipient", 3: "CC Recipient", 4: "BCC Recipient", 5: "Required attendee",
		6: "Optional attendee", 7: "Organizer", 8: "Regarding", 9: "Owner", 10: "Resource", 11: "Customer",
		12: "Chat Participant", 13: "Related"})
	ap.str("addressused", 320)
	ap.boolean("ispartydeleted", false)
	ap.ro(ap.add(&Column{Name: "versionnumber", Type: TypeBigInt}))

	// --- webhook registration (reference §7.1) -------------------------------------------
	se := r.table("serviceendpoint", "serviceendpoints", "serviceendpointid", "name")
	se.str("name", 256)
	se.str("url", 2000)
	se.memo("description", 2000)
	se.picklist("contract", nil, map[int]string{1: "OneWay", 2: "Queue", 3: "Rest", 4: "TwoWay", 5: "Topic",
		6: "Queue (Persistent)", 7: "Event Hub", 8: "Webhook", 9: "Event Grid", 10: "Managed Data Lake", 11: "Container Storage"})
	se.picklist("authtype", nil, map[int]string{0: "Not Specified", 1: "ACS", 2: "SAS Key", 3: "SAS Token",
		4: "Webhook Key", 5: "Http Header", 6: "Http Query String", 7: "Connection String", 8: "Access Key", 9: "Managed Identity"})
	se.add(&Column{Name: "authvalue", Type: TypeString, MaxLength: 2048, writeOnly: true})
	se.ro(se.boolean("isauthvalueset", false))
	se.picklist("messageformat", 2, map[int]string{1: "Binary XML", 2: "Json", 3: "Text XML"})
	se.picklist("userclaim", 1, map[int]string{1: "None", 2: "UserId", 3: "UserInfo"})
	se.picklist("connectionmode", 1, map[int]string{1: "Normal", 2: "Federated"})
	se.picklist("namespaceformat", nil, map[int]string{1: "Namespace Name", 2: "Namespace Address"})
	se.str("namespaceaddress", 255)
	se.str("path", 160)
	se.str("solutionnamespace", 160)
	standard(se, false)

	msg := r.table("sdkmessage", "sdkmessages", "sdkmessageid", "name")
	msg.str("name", 256)
	msg.str("categoryname", 25)
	standard(msg, false)

	flt := r.table("sdkmessagefilter", "sdkmessagefilters", "sdkmessagefilterid", "name")
	flt.str("name", 256)
	flt.lookup("sdkmessageid", target{table: "sdkmessage", nav: "sdkmessageid", coll: "sdkmessageid_sdkmessagefilter"})
	flt.str("primaryobjecttypecode", 100)
	flt.str("secondaryobjecttypecode", 100)
	flt.boolean("iscustomprocessingstepallowed", true)
	standard(flt, false)

	step := r.table("sdkmessageprocessingstep", "sdkmessageprocessingsteps", "sdkmessageprocessingstepid", "name")
	step.str("name", 256)
	step.memo("description", 256)
	step.picklist("stage", nil, map[int]string{10: "Pre-validation", 20: "Pre-operation", 30: "Main Operation", 40: "Post-operation"})
	step.picklist("mode", 0, map[int]string{0: "Synchronous", 1: "Asynchronous"})
	step.integer("rank")
	step.picklist("supporteddeployment", 0, map[int]string{0: "Server Only", 1: "Microsoft Dynamics 365 Client for Outlook Only", 2: "Both"})
	step.boolean("asyncautodelete", false)
	step.memo("filteringattributes", 100000)
	step.picklist("invocationsource", 0, map[int]string{-1: "Internal", 0: "Parent", 1: "Child"})
	step.memo("configuration", 1073741823)
	step.lookup("eventhandler", target{table: "serviceendpoint", nav: "eventhandler_serviceendpoint", coll: "serviceendpoint_sdkmessageprocessingstep", cascade: true})
	step.lookup("sdkmessageid", target{table: "sdkmessage", nav: "sdkmessageid", coll: "sdkmessageid_sdkmessageprocessingstep"})
	step.lookup("sdkmessagefilterid", target{table: "sdkmessagefilter", nav: "sdkmessagefilterid", coll: "sdkmessagefilterid_sdkmessageprocessingstep"})
	step.lookup("impersonatinguserid", target{table: "systemuser", nav: "impersonatinguserid", coll: "impersonatinguserid_sdkmessageprocessingstep"})
	step.states(map[int]string{0: "Enabled", 1: "Disabled"}, [][3]any{{1, 0, "Enabled"}, {2, 1, "Disabled"}})
	standard(step, false)

	img := r.table("sdkmessageprocessingstepimage", "sdkmessageprocessingstepimages", "sdkmessageprocessingstepimageid", "name")
	img.str("name", 256)
	img.lookup("sdkmessageprocessingstepid", target{table: "sdkmessageprocessingstep", nav: "sdkmessageprocessingstepid", coll: "sdkmessageprocessingstepid_sdkmessageprocessingstepimage", cascade: true})
	img.picklist("imagetype", 0, map[int]string{0: "PreImage", 1: "PostImage", 2: "Both"})
	img.str("entityalias", 256)
	img.str("messagepropertyname", 256)
	img.memo("attributes", 100000)
	standard(img, false)

	// --- N:N relationships (reference §1.1, §1.3, §2.2) ----------------------------------
	r.manyToMany("adx_invitation_webrole", "adx_invitation", "adx_webrole", "adx_invitationid", "adx_webroleid")
	r.manyToMany("adx_webrole_contact", "adx_webrole", "contact", "adx_webroleid", "contactid")
	r.manyToMany("adx_invitation_mspp_webrole_powerpagecomponent", "adx_invitation", "powerpagecomponent", "adx_invitationid", "powerpagecomponentid")
	r.manyToMany("powerpagecomponent_mspp_webrole_contact", "powerpagecomponent", "contact", "powerpagecomponentid", "contactid")
	r.manyToMany("adx_invitation_invitecontacts", "adx_invitation", "contact", "adx_invitationid", "contactid")
	r.manyToMany("adx_invitation_redeemedcontacts", "adx_invitation", "contact", "adx_invitationid", "contactid")
}

func joinName(row map[string]any) string {
	f, _ := row["firstname"].(string)
	l, _ := row["lastname"].(string)
	return strings.TrimSpace(strings.TrimSpace(f) + " " + strings.TrimSpace(l))
}
