package emulator

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestCreateAndRetrieve(t *testing.T) {
	c := startPlain(t, Options{})
	id := c.create("contacts", map[string]any{"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com"})

	res := c.must(200, "GET", "contacts("+id+")?$select=fullname,emailaddress1", nil)
	if res.str("fullname") != "Ada Lovelace" || res.str("contactid") != id {
		t.Fatalf("row: %s", res.body)
	}
	if !strings.HasPrefix(res.str("@odata.etag"), `W/"`) {
		t.Fatalf("etag: %s", res.body)
	}
	if got := res.str("@odata.context"); got != c.r.APIURL+"$metadata#contacts(fullname,emailaddress1)/$entity" {
		t.Fatalf("context %q", got)
	}
	if _, ok := res.json["firstname"]; ok {
		t.Fatalf("$select not honoured: %s", res.body)
	}

	rep := c.must(201, "POST", "contacts?$select=firstname", map[string]any{"firstname": "Grace"}, "Prefer", "return=representation")
	if rep.str("firstname") != "Grace" || rep.str("contactid") == "" || rep.header.Get("OData-EntityId") != "" {
		t.Fatalf("representation: %v %s", rep.header, rep.body)
	}
	if _, ok := rep.json["lastname"]; ok {
		t.Fatalf("representation ignores $select: %s", rep.body)
	}
	if !strings.Contains(rep.header.Get("Preference-Applied"), "return=representation") {
		t.Fatalf("Preference-Applied: %v", rep.header)
	}
	if rep.header.Get("REQ_ID") == "" || rep.header.Get("x-ms-service-request-id") == "" {
		t.Fatalf("request id headers missing: %v", rep.header)
	}

	// Defaults: statecode/statuscode, identity booleans, owner = caller.
	all := c.must(200, "GET", "contacts("+id+")", nil)
	if num(all.json["statecode"]) != 0 || num(all.json["statuscode"]) != 1 || all.json["adx_identity_logonenabled"] != false {
		t.Fatalf("defaults: %s", all.body)
	}
	if all.str("_ownerid_value") != AppUserID || all.str("_createdby_value") != AppUserID {
		t.Fatalf("owner/createdby: %s", all.body)
	}

	wantError(t, c.do("GET", "contacts(00000000-0000-0000-0000-000000000001)", nil), 404, "0x80040217")
	wantError(t, c.do("GET", "Contacts", nil), 404, "0x80060888")
}

func TestPayloadAndPropertyErrors(t *testing.T) {
	c := startPlain(t, Options{})
	res := c.do("POST", "contacts", map[string]any{"Firstname": "x"})
	wantError(t, res, 400, "0x80048d19")
	if !strings.Contains(res.errMessage(), "The property 'Firstname' does not exist on type 'Microsoft.Dynamics.CRM.contact'") {
		t.Fatalf("message: %s", res.errMessage())
	}
	res = c.do("POST", "contacts", map[string]any{"parentcustomerid@odata.bind": "/accounts(00000000-0000-0000-0000-000000000001)"})
	wantError(t, res, 400, "0x80048d19")
	if !strings.Contains(res.errMessage(), "An undeclared property 'parentcustomerid' which only has property annotations") {
		t.Fatalf("message: %s", res.errMessage())
	}
	res = c.do("GET", "contacts?$select=Name", nil)
	wantError(t, res, 400, "0x80060888")
	if res.errMessage() != "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.contact'." {
		t.Fatalf("message: %s", res.errMessage())
	}
	res = c.do("POST", "contacts", map[string]any{"firstname": strings.Repeat("x", 51)})
	wantError(t, res, 400, "0x80044331")
	res = c.do("POST", "adx_invitations", map[string]any{"adx_name": "x", "adx_type": 1})
	wantError(t, res, 400, "0x80044331")
	// Lookup with the wrong case is rejected: nav props are case-sensitive.
	cid := c.create("contacts", map[string]any{"lastname": "x"})
	res = c.do("POST", "adx_invitations", map[string]any{"adx_name": "x", "adx_invitecontact@odata.bind": "/contacts(" + cid + ")"})
	wantError(t, res, 400, "0x80048d19")
	wantError(t, c.do("POST", "WhoAmI", nil), 404, "")
}

func TestBindLookupsAndAnnotations(t *testing.T) {
	c := startPlain(t, Options{})
	acc := c.create("accounts", map[string]any{"name": "Fabrikam"})
	cid := c.create("contacts", map[string]any{"firstname": "Ann", "lastname": "Lee", "parentcustomerid_account@odata.bind": "accounts(" + acc + ")"})
	inv := c.create("adx_invitations", map[string]any{
		"adx_name": "Invite", "adx_type": 756150000,
		"adx_inviteContact@odata.bind":   "/contacts(" + cid + ")",
		"adx_assignToAccount@odata.bind": c.r.APIURL + "accounts(" + acc + ")",
	})
	res := c.must(200, "GET", "adx_invitations("+inv+")?$select=_adx_invitecontact_value,_adx_assigntoaccount_value,statuscode,adx_type", nil,
		"Prefer", `odata.include-annotations="*"`)
	if res.str("_adx_invitecontact_value") != cid || res.str("_adx_assigntoaccount_value") != acc {
		t.Fatalf("lookups: %s", res.body)
	}
	if res.str("_adx_invitecontact_value@OData.Community.Display.V1.FormattedValue") != "Ann Lee" ||
		res.str("_adx_invitecontact_value@Microsoft.Dynamics.CRM.lookuplogicalname") != "contact" ||
		res.str("_adx_invitecontact_value@Microsoft.Dynamics.CRM.associatednavigationproperty") != "adx_inviteContact" ||
		res.str("statuscode@OData.Community.Display.V1.FormattedValue") != "New" ||
		res.str("adx_type@OData.Community.Display.V1.FormattedValue") != "Single" {
		t.Fatalf("annotations: %s", res.body)
	}
	if !strings.Contains(res.header.Get("Preference-Applied"), "odata.include-annotations") {
		t.Fatalf("Preference-Applied: %v", res.header)
	}
	con := c.must(200, "GET", "contacts("+cid+")?$select=_parentcustomerid_value", nil, "Prefer", `odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"`)
	if con.str("_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname") != "account" {
		t.Fatalf("polymorphic: %s", con.body)
	}
	if _, ok := con.json["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"]; ok {
		t.Fatalf("unrequested annotation: %s", con.body)
	}
	// Clearing a lookup with @odata.bind null; binding a missing row is 404.
	c.must(204, "PATCH", "adx_invitations("+inv+")", map[string]any{"adx_assignToAccount@odata.bind": nil})
	got := c.must(200, "GET", "adx_invitations("+inv+")?$select=_adx_assigntoaccount_value", nil)
	if got.json["_adx_assigntoaccount_value"] != nil {
		t.Fatalf("not cleared: %s", got.body)
	}
	wantError(t, c.do("PATCH", "adx_invitations("+inv+")", map[string]any{"adx_inviteContact@odata.bind": "/contacts(00000000-0000-0000-0000-000000000009)"}), 404, "0x80040217")
	// Single-valued navigation GET.
	nav := c.must(200, "GET", "adx_invitations("+inv+")/adx_inviteContact?$select=fullname", nil)
	if nav.str("fullname") != "Ann Lee" {
		t.Fatalf("nav: %s", nav.body)
	}
}

func TestUpsertAndConcurrency(t *testing.T) {
	c := startPlain(t, Options{})
	id := "6f1d2c3b-0000-4000-8000-00000000abcd"
	// Upsert creates.
	c.must(204, "PATCH", "contacts("+id+")", map[string]any{"lastname": "Upserted"})
	wantError(t, c.do("PATCH", "contacts(6f1d2c3b-0000-4000-8000-00000000ffff)", map[string]any{"lastname": "x"}, "If-Match", "*"), 404, "0x80040217")
	res := c.do("PATCH", "contacts("+id+")", map[string]any{"lastname": "x"}, "If-None-Match", "*")
	wantError(t, res, 412, "0x80040237")

	first := c.must(200, "GET", "contacts("+id+")?$select=lastname", nil)
	etag1 := first.str("@odata.etag")
	c.must(204, "PATCH", "contacts("+id+")", map[string]any{"firstname": "New"}, "If-Match", etag1)
	second := c.must(200, "GET", "contacts("+id+")?$select=lastname", nil)
	etag2 := second.str("@odata.etag")
	v1, _ := strconv.Atoi(strings.Trim(strings.TrimPrefix(etag1, "W/"), `"`))
	v2, _ := strconv.Atoi(strings.Trim(strings.TrimPrefix(etag2, "W/"), `"`))
	if v2 <= v1 {
		t.Fatalf("version did not increase: %s -> %s", etag1, etag2)
	}
	res = c.do("PATCH", "contacts("+id+")", map[string]any{"firstname": "Stale"}, "If-Match", etag1)
	wantError(t, res, 412, "0x80060882")
	if res.errMessage() != "The version of the existing record doesn't match the RowVersion property provided." {
		t.Fatalf("message %q", res.errMessage())
	}
	wantError(t, c.do("DELETE", "contacts("+id+")", nil, "If-Match", etag1), 412, "0x80060882")
	// Conditional GET.
	nm := c.do("GET", "contacts("+id+")?$select=lastname", nil, "If-None-Match", etag2)
	if nm.status != 304 {
		t.Fatalf("conditional GET: %d", nm.status)
	}
	// PATCH with representation returns 200.
	rep := c.must(200, "PATCH", "contacts("+id+")?$select=firstname", map[string]any{"firstname": "Rep"}, "Prefer", "return=representation", "If-Match", "*")
	if rep.str("firstname") != "Rep" {
		t.Fatalf("rep: %s", rep.body)
	}
	// State/status pairs.
	c.must(204, "PATCH", "contacts("+id+")", map[string]any{"statecode": 1})
	st := c.must(200, "GET", "contacts("+id+")?$select=statecode,statuscode", nil)
	if num(st.json["statecode"]) != 1 || num(st.json["statuscode"]) != 2 {
		t.Fatalf("state: %s", st.body)
	}
	wantError(t, c.do("PATCH", "contacts("+id+")", map[string]any{"statecode": 0, "statuscode": 2}), 400, "0x80040203")
	// Single property access.
	c.must(204, "PUT", "contacts("+id+")/jobtitle", map[string]any{"value": "Engineer"})
	p := c.must(200, "GET", "contacts("+id+")/jobtitle", nil)
	if p.str("value") != "Engineer" {
		t.Fatalf("property: %s", p.body)
	}
	c.must(204, "DELETE", "contacts("+id+")/jobtitle", nil)
	c.must(204, "GET", "contacts("+id+")/jobtitle", nil)
	c.must(204, "DELETE", "contacts("+id+")", nil)
	wantError(t, c.do("DELETE", "contacts("+id+")", nil), 404, "0x80040217")
}

func TestAlternateKeys(t *testing.T) {
	c := startPlain(t, Options{})
	if err := c.r.DefineKey("contact", "contact_email", "emailaddress1"); err != nil {
		t.Fatal(err)
	}
	id := c.create("contacts", map[string]any{"lastname": "Key", "emailaddress1": "o'hara@example.com"})
	res := c.must(200, "GET", "contacts(emailaddress1='o''hara@example.com')?$select=lastname", nil)
	if res.str("contactid") != id {
		t.Fatalf("by key: %s", res.body)
	}
	wantError(t, c.do("GET", "contacts(emailaddress1='nobody@example.com')", nil), 404, "0x80060891")
	// Upsert by key creates with the key value set, then updates.
	c.must(204, "PATCH", "contacts(emailaddress1='new@example.com')", map[string]any{"lastname": "ByKey"})
	got := c.must(200, "GET", "contacts(emailaddress1='new@example.com')?$select=lastname,emailaddress1", nil)
	if got.str("lastname") != "ByKey" || got.str("emailaddress1") != "new@example.com" {
		t.Fatalf("upsert by key: %s", got.body)
	}
	wantError(t, c.do("POST", "contacts", map[string]any{"emailaddress1": "new@example.com"}), 412, "0x80060892")
	wantError(t, c.do("GET", "contacts(lastname='x')", nil), 400, "0x80040203")
}

func TestDeleteCascadeAndRemoveLink(t *testing.T) {
	c := startPlain(t, Options{})
	cid := c.create("contacts", map[string]any{"lastname": "Gone"})
	inv := c.create("adx_invitations", map[string]any{"adx_name": "i", "adx_inviteContact@odata.bind": "/contacts(" + cid + ")"})
	em := c.create("emails", map[string]any{"subject": "s", "regardingobjectid_adx_invitation_email@odata.bind": "/adx_invitations(" + inv + ")"})
	c.must(204, "DELETE", "contacts("+cid+")", nil)
	res := c.must(200, "GET", "adx_invitations("+inv+")?$select=_adx_invitecontact_value", nil)
	if res.json["_adx_invitecontact_value"] != nil {
		t.Fatalf("RemoveLink: %s", res.body)
	}
	c.must(204, "DELETE", "adx_invitations("+inv+")", nil)
	wantError(t, c.do("GET", "emails("+em+")", nil), 404, "0x80040217")
}

func TestDeepInsertAndSendEmail(t *testing.T) {
	c := startPlain(t, Options{})
	to := c.create("contacts", map[string]any{"firstname": "To", "lastname": "Person", "emailaddress1": "to@example.com"})
	sender, err := c.r.Insert("systemuser", map[string]any{"fullname": "Mail Er", "internalemailaddress": "mailer@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	inv := c.create("adx_invitations", map[string]any{"adx_name": "i"})
	em := c.create("emails", map[string]any{
		"subject": "Welcome", "description": "<p>Hello <b>there</b></p>", "directioncode": true,
		"regardingobjectid_adx_invitation_email@odata.bind": "/adx_invitations(" + inv + ")",
		"email_activity_parties": []any{
			map[string]any{"participationtypemask": 1, "partyid_systemuser@odata.bind": "/systemusers(" + sender + ")"},
			map[string]any{"participationtypemask": 2, "partyid_contact@odata.bind": "/contacts(" + to + ")"},
		},
	})
	parties := c.must(200, "GET", "emails("+em+")/email_activity_parties?$select=participationtypemask,_partyid_value", nil)
	if len(parties.values()) != 2 {
		t.Fatalf("parties: %s", parties.body)
	}
	regarding := c.must(200, "GET", "adx_invitations("+inv+")/adx_invitation_Emails?$select=subject", nil)
	if len(regarding.values()) != 1 {
		t.Fatalf("regarding: %s", regarding.body)
	}
	res := c.must(200, "POST", "emails("+em+")/Microsoft.Dynamics.CRM.SendEmail", map[string]any{"IssueSend": true, "TrackingToken": ""})
	if res.str("Subject") != "Welcome" {
		t.Fatalf("SendEmail: %s", res.body)
	}
	row := c.must(200, "GET", "emails("+em+")?$select=statecode,statuscode,senton", nil)
	if num(row.json["statecode"]) != 1 || num(row.json["statuscode"]) != 3 || row.json["senton"] == nil {
		t.Fatalf("email after send: %s", row.body)
	}
	out := c.r.Outbox()
	if len(out) != 1 || out[0].Subject != "Welcome" || out[0].From != "mailer@example.com" || len(out[0].To) != 1 ||
		out[0].To[0] != "to@example.com" || out[0].RegardingID != inv || out[0].Text != "Hello there" {
		t.Fatalf("outbox: %+v", out)
	}
	wantError(t, c.do("POST", "emails("+em+")/Microsoft.Dynamics.CRM.SendEmail", map[string]any{"IssueSend": true}), 400, codeSendEmailNotDraft)
	empty := c.create("emails", map[string]any{"subject": "nobody"})
	wantError(t, c.do("POST", "emails("+empty+")/Microsoft.Dynamics.CRM.SendEmail", map[string]any{"IssueSend": true}), 400, "0x80040203")
	// Deleting the email cascades to its parties.
	c.must(204, "DELETE", "emails("+em+")", nil)
	if n := len(c.r.Rows("activityparty")); n != 0 {
		t.Fatalf("parties left: %d", n)
	}
}

func TestAssociateDisassociate(t *testing.T) {
	c := startPlain(t, Options{})
	site := c.create("adx_websites", map[string]any{"adx_name": "Site"})
	role := c.create("adx_webroles", map[string]any{"adx_name": "Customers", "adx_websiteid@odata.bind": "/adx_websites(" + site + ")"})
	inv := c.create("adx_invitations", map[string]any{"adx_name": "i"})
	cid := c.create("contacts", map[string]any{"lastname": "Member"})

	c.must(204, "POST", "adx_invitations("+inv+")/adx_invitation_webrole/$ref", map[string]any{"@odata.id": c.r.APIURL + "adx_webroles(" + role + ")"})
	wantError(t, c.do("POST", "adx_invitations("+inv+")/adx_invitation_webrole/$ref", map[string]any{"@odata.id": "adx_webroles(" + role + ")"}), 412, "0x80040237")
	roles := c.must(200, "GET", "adx_invitations("+inv+")/adx_invitation_webrole?$select=adx_name", nil)
	if v := roles.values(); len(v) != 1 || v[0]["adx_name"] != "Customers" {
		t.Fatalf("related: %s", roles.body)
	}
	// The contact side uses the same nav prop name.
	c.must(204, "POST", "contacts("+cid+")/adx_webrole_contact/$ref", map[string]any{"@odata.id": "adx_webroles(" + role + ")"})
	if got := c.r.Associated("adx_webrole_contact", cid); len(got) != 1 || got[0] != role {
		t.Fatalf("Associated: %v", got)
	}
	exp := c.must(200, "GET", "contacts("+cid+")?$select=lastname&$expand=adx_webrole_contact($select=adx_name)", nil)
	if arr, _ := exp.json["adx_webrole_contact"].([]any); len(arr) != 1 {
		t.Fatalf("expand N:N: %s", exp.body)
	}
	// Filter through the relationship with any().
	any1 := c.must(200, "GET", "contacts?$select=lastname&$filter=adx_webrole_contact/any(r:r/adx_webroleid eq "+role+")", nil)
	if len(any1.values()) != 1 {
		t.Fatalf("any: %s", any1.body)
	}
	c.must(204, "DELETE", "contacts("+cid+")/adx_webrole_contact("+role+")/$ref", nil)
	c.must(204, "DELETE", "adx_invitations("+inv+")/adx_invitation_webrole/$ref?$id="+c.r.APIURL+"adx_webroles("+role+")", nil)
	if got := c.r.Associated("adx_invitation_webrole", inv); len(got) != 0 {
		t.Fatalf("not disassociated: %v", got)
	}
	// Single-valued $ref.
	acc := c.create("accounts", map[string]any{"name": "A"})
	c.must(204, "PUT", "contacts("+cid+")/parentcustomerid_account/$ref", map[string]any{"@odata.id": "accounts(" + acc + ")"})
	row, _ := c.r.Row("contact", cid)
	if row["parentcustomerid"] != acc {
		t.Fatalf("PUT $ref: %v", row["parentcustomerid"])
	}
	c.must(204, "DELETE", "contacts("+cid+")/parentcustomerid_account/$ref", nil)
	// Collection-valued bind on create associates.
	inv2 := c.create("adx_invitations", map[string]any{"adx_name": "j", "adx_invitation_webrole@odata.bind": []any{"/adx_webroles(" + role + ")"}})
	if got := c.r.Associated("adx_invitation_webrole", inv2); len(got) != 1 {
		t.Fatalf("collection bind: %v", got)
	}
	// Enhanced data model: web role components.
	ps := c.create("powerpagesites", map[string]any{"name": "Enhanced"})
	comp := c.create("powerpagecomponents", map[string]any{"name": "Partners", "powerpagecomponenttype": 11, "powerpagesiteid@odata.bind": "/powerpagesites(" + ps + ")"})
	c.must(204, "POST", "powerpagecomponents("+comp+")/powerpagecomponent_mspp_webrole_contact/$ref", map[string]any{"@odata.id": "contacts(" + cid + ")"})
	c.must(204, "POST", "adx_invitations("+inv+")/adx_invitation_mspp_webrole_powerpagecomponent/$ref", map[string]any{"@odata.id": "powerpagecomponents(" + comp + ")"})
	q := c.must(200, "GET", "powerpagecomponents?$select=name&$filter=powerpagecomponenttype eq 11 and _powerpagesiteid_value eq "+ps, nil)
	if len(q.values()) != 1 {
		t.Fatalf("components: %s", q.body)
	}
}

func TestWhoAmIAndImpersonation(t *testing.T) {
	c := startPlain(t, Options{})
	res := c.must(200, "GET", "WhoAmI", nil)
	if res.str("UserId") != AppUserID || res.str("BusinessUnitId") != BusinessUnitID || res.str("OrganizationId") != OrganizationID {
		t.Fatalf("WhoAmI: %s", res.body)
	}
	if res.str("@odata.context") != c.r.APIURL+"$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse" {
		t.Fatalf("context: %s", res.body)
	}
	if res.header.Get("x-ms-dop-hint") == "" {
		t.Fatalf("no dop hint: %v", res.header)
	}
	other, err := c.r.Insert("systemuser", map[string]any{"fullname": "Imp Ersonated", "azureactivedirectoryobjectid": "11111111-2222-4333-8444-555555555555"})
	if err != nil {
		t.Fatal(err)
	}
	res = c.must(200, "GET", "WhoAmI()", nil, "MSCRMCallerID", other)
	if res.str("UserId") != other {
		t.Fatalf("MSCRMCallerID: %s", res.body)
	}
	res = c.must(200, "GET", "WhoAmI", nil, "CallerObjectId", "11111111-2222-4333-8444-555555555555")
	if res.str("UserId") != other {
		t.Fatalf("CallerObjectId: %s", res.body)
	}
	id := c.create("contacts", map[string]any{"lastname": "x"})
	c.must(204, "PATCH", "contacts("+id+")", map[string]any{"firstname": "y"}, "MSCRMCallerID", other)
	row, _ := c.r.Row("contact", id)
	if row["createdby"] != AppUserID || row["modifiedby"] != other {
		t.Fatalf("createdby/modifiedby: %v %v", row["createdby"], row["modifiedby"])
	}
}

func TestServiceAndMetadataDocuments(t *testing.T) {
	c := startPlain(t, Options{})
	res := c.must(200, "GET", "", nil)
	found := false
	for _, v := range res.values() {
		if v["name"] == "adx_invitations" {
			found = true
		}
	}
	if !found {
		t.Fatalf("service document: %s", res.body)
	}
	md := c.must(200, "GET", "$metadata", nil)
	if !strings.Contains(string(md.body), `NavigationProperty Name="adx_inviteContact"`) {
		t.Fatal("metadata lacks nav props")
	}
	if http.StatusText(md.status) == "" {
		t.Fatal("unreachable")
	}
}
