package emulator

import (
	"bytes"
	"net/url"
	"strings"
	"testing"

	"github.com/d365portal/connector/internal/dataverse/emulator/schema"
)

// TestMetadataMatchesReference fetches $metadata over HTTP and compares it with
// the table reference's facts: every entity set, key, property and navigation
// property (exact case, both sides) the emulator serves is in the facts or
// named in exceptions.json, and every exception is still needed.
func TestMetadataMatchesReference(t *testing.T) {
	c := startPlain(t, Options{})
	md := c.must(200, "GET", "$metadata", nil)
	sc, err := schema.Load()
	if err != nil {
		t.Fatal(err)
	}
	diffs, err := schema.Drift(bytes.NewReader(md.body), sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	for _, s := range sc.Stale() {
		t.Errorf("stale exception: %s", s)
	}
	// Spot checks on the names the connector depends on, so a broken
	// comparison cannot pass silently.
	doc := string(md.body)
	for _, want := range []string{
		`<NavigationProperty Name="ownerid_email" Type="mscrm.owner"/>`,
		`<NavigationProperty Name="ownerid_adx_inviteredemption" Type="mscrm.owner"/>`,
		`<NavigationProperty Name="activityid_adx_inviteredemption_activityparty" Type="mscrm.adx_inviteredemption"/>`,
		`<NavigationProperty Name="adx_inviteContact" Type="mscrm.contact"/>`,
		`<NavigationProperty Name="adx_webrole_contact" Type="Collection(mscrm.adx_webrole)"/>`,
		`<EntitySet Name="tracelogs" EntityType="Microsoft.Dynamics.CRM.tracelog"/>`,
		`<Property Name="allowunresolvedpartiesonemailsend" Type="Edm.Boolean"/>`,
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("$metadata lacks %s", want)
		}
	}
	if strings.Contains(doc, `<EntityType Name="email">`) && strings.Contains(between(doc, `<EntityType Name="email">`, `</EntityType>`), `Name="ownerid"`) {
		t.Error("email serves a navigation property named ownerid")
	}
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}

// TestDriftDetectsDifferences proves the comparison fails on each kind of drift.
func TestDriftDetectsDifferences(t *testing.T) {
	c := startPlain(t, Options{})
	md := string(c.must(200, "GET", "$metadata", nil).body)
	sc, err := schema.Load()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new, want string
	}{
		{"hand-written nav", `<NavigationProperty Name="ownerid_email" Type="mscrm.owner"/>`,
			`<NavigationProperty Name="ownerid" Type="mscrm.owner"/>`, "not in the reference: email single ownerid"},
		{"missing nav", `<NavigationProperty Name="ownerid_email" Type="mscrm.owner"/>`, ``, "missing: email single ownerid_email"},
		{"case", `<NavigationProperty Name="adx_inviteContact" Type="mscrm.contact"/>`,
			`<NavigationProperty Name="adx_invitecontact" Type="mscrm.contact"/>`, "missing: adx_invitation single adx_inviteContact"},
		{"column", `<Property Name="emailaddress1" Type="Edm.String"/>`, `<Property Name="emailaddress1" Type="Edm.String"/><Property Name="address1_city" Type="Edm.String"/>`,
			"not in the reference: "},
		{"type", `<Property Name="adx_redemptions" Type="Edm.Int32"/>`, `<Property Name="adx_redemptions" Type="Edm.String"/>`,
			"type: adx_invitation property adx_redemptions"},
		{"entity set", `<EntitySet Name="tracelogs"`, `<EntitySet Name="tracelog"`, `entity set of tracelog is "tracelog"`},
		{"collection", `<NavigationProperty Name="email_activity_parties" Type="Collection(mscrm.activityparty)"/>`, ``,
			"missing: email collection email_activity_parties"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(md, tc.old) {
				t.Fatalf("$metadata lacks %s", tc.old)
			}
			diffs, err := schema.Drift(strings.NewReader(strings.Replace(md, tc.old, tc.new, 1)), sc, nil)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, d := range diffs {
				found = found || strings.Contains(d, tc.want)
			}
			if !found {
				t.Fatalf("no difference %q in %q", tc.want, diffs)
			}
		})
	}
}

// TestUnknownNamesRefused: every way of naming a column or navigation property
// the reference does not have is refused with Dataverse's error.
func TestUnknownNamesRefused(t *testing.T) {
	c := startPlain(t, Options{})
	cid := c.create("contacts", map[string]any{"lastname": "Lee", "emailaddress1": "lee@example.com"})
	inv := c.create("adx_invitations", map[string]any{"adx_name": "i"})
	undeclared := "An undeclared property 'ownerid' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values."

	// A write that binds an activity's owner through the generic name.
	res := c.do("POST", "emails", map[string]any{"subject": "s", "ownerid@odata.bind": "/systemusers(" + AppUserID + ")"})
	wantError(t, res, 400, codePayload)
	if !strings.Contains(res.errMessage(), undeclared) {
		t.Fatalf("message: %s", res.errMessage())
	}
	// The same inside a deep insert rolls the whole create back.
	res = c.do("POST", "adx_invitations", map[string]any{"adx_name": "deep", "adx_invitation_Emails": []any{
		map[string]any{"subject": "s", "ownerid@odata.bind": "/systemusers(" + AppUserID + ")"}}})
	wantError(t, res, 400, codePayload)
	if n := len(c.r.Rows("adx_invitation")); n != 1 {
		t.Fatalf("invitations after the failed deep insert: %d", n)
	}
	// The reference's name works, and sets the owner.
	em := c.create("emails", map[string]any{"subject": "s", "ownerid_email@odata.bind": "/systemusers(" + AppUserID + ")"})
	if row, _ := c.r.Row("email", em); row["ownerid"] != AppUserID || row["owninguser"] != AppUserID || row["owneridtype"] != "systemuser" {
		t.Fatalf("email owner: %v", row)
	}
	// Columns the old hand-written tables had, gone from the reference.
	wantError(t, c.do("POST", "contacts", map[string]any{"lastname": "x", "address1_city": "Oslo"}), 400, codePayload)
	wantError(t, c.do("PATCH", "contacts("+cid+")", map[string]any{"birthdate": "1980-01-01"}), 400, codePayload)
	// A nav name in the wrong case.
	wantError(t, c.do("PATCH", "adx_invitations("+inv+")", map[string]any{"adx_invitecontact@odata.bind": "/contacts(" + cid + ")"}), 400, codePayload)
	// A single-valued nav used as a deep insert that does not exist.
	wantError(t, c.do("POST", "emails", map[string]any{"subject": "s", "ownerid": map[string]any{"fullname": "x"}}), 400, codePayload)
	// $ref on an unknown navigation property.
	wantError(t, c.do("POST", "contacts("+cid+")/adx_webrole_contacts/$ref", map[string]any{"@odata.id": c.r.APIURL + "adx_invitations(" + inv + ")"}), 404, codeODataParse)
	// Reads: $select, $filter, $orderby, $expand and nav paths.
	for _, q := range []string{
		"emails?$select=subject,address1_city",
		"emails?$filter=" + url.QueryEscape("_ownerid_email_value eq "+AppUserID),
		"contacts?$orderby=birthdate",
		"emails?$expand=ownerid($select=fullname)",
		"emails?$filter=" + url.QueryEscape("ownerid/fullname eq 'x'"),
		"contacts?$expand=adx_invitation_invitecontacts_x",
		"adx_invitations?$filter=" + url.QueryEscape("adx_invitecontact/fullname eq 'x'"),
	} {
		wantError(t, c.do("GET", q, nil), 400, codeODataParse)
	}
	// Names the reference has read fine.
	c.must(200, "GET", "emails?$select=subject,_ownerid_value&$expand=ownerid_email($select=fullname)", nil)
	c.must(200, "GET", "adx_invitations?$filter="+url.QueryEscape("adx_inviteContact/fullname eq 'Lee'"), nil)
}

// TestAddedTables exercises mailbox, tracelog, adx_externalidentity and
// organization through the names the reference (or exceptions.json) gives.
func TestAddedTables(t *testing.T) {
	c := startPlain(t, Options{})
	// The seeded organization: its email settings, read-only through the API.
	org := c.must(200, "GET", "organizations("+OrganizationID+")?$select=allowunresolvedpartiesonemailsend,requireapprovalforuseremail,expirechangetrackingindays", nil)
	if org.json["allowunresolvedpartiesonemailsend"] != false || org.json["requireapprovalforuseremail"] != true || num(org.json["expirechangetrackingindays"]) != 7 {
		t.Fatalf("organization: %s", org.body)
	}
	c.must(204, "PATCH", "organizations("+OrganizationID+")", map[string]any{"allowunresolvedpartiesonemailsend": true})
	if row, _ := c.r.Row("organization", OrganizationID); row["allowunresolvedpartiesonemailsend"] != false {
		t.Fatal("a read-only organization setting changed through the API")
	}
	bu := c.must(200, "GET", "businessunits("+BusinessUnitID+")?$select=_organizationid_value", nil)
	if bu.str("_organizationid_value") != OrganizationID {
		t.Fatalf("business unit organization: %s", bu.body)
	}

	// A user's mailbox (the platform creates it), found both ways the
	// email-delivery facts describe.
	user, err := c.r.Insert("systemuser", map[string]any{"fullname": "Mia Box", "internalemailaddress": "mia@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	mbx, ok := c.r.MailboxOf(user)
	if !ok {
		t.Fatal("the new user has no mailbox")
	}
	c.must(204, "PUT", "systemusers("+user+")/defaultmailbox/$ref", map[string]any{"@odata.id": c.r.APIURL + "mailboxes(" + mbx + ")"})
	exp := c.must(200, "GET", "systemusers("+user+")?$select=fullname&$expand=defaultmailbox($select=emailaddress,emailrouteraccessapproval,outgoingemaildeliverymethod,statecode)", nil)
	if m, _ := exp.json["defaultmailbox"].(map[string]any); m == nil || m["emailaddress"] != "mia@example.com" || num(m["emailrouteraccessapproval"]) != 1 || num(m["statecode"]) != 0 {
		t.Fatalf("defaultmailbox: %s", exp.body)
	}
	byUser := c.must(200, "GET", "mailboxes?$select=name&$filter="+url.QueryEscape("_regardingobjectid_value eq "+user), nil)
	if len(byUser.values()) != 1 {
		t.Fatalf("mailboxes of the user: %s", byUser.body)
	}

	// Alerts on that mailbox.
	if _, err := c.r.Insert("tracelog", map[string]any{"regardingobjectid": mbx, "level": 3, "text": "Email cannot be sent", "tracecode": 42, "tracestatus": false}); err != nil {
		t.Fatal(err)
	}
	alerts := c.must(200, "GET", "tracelogs?$select=level,text,createdon&$filter="+url.QueryEscape("_regardingobjectid_value eq "+mbx+" and level eq 3"), nil)
	if v := alerts.values(); len(v) != 1 || v[0]["text"] != "Email cannot be sent" || v[0]["createdon"] == nil {
		t.Fatalf("alerts: %s", alerts.body)
	}
	viaMailbox := c.must(200, "GET", "mailboxes("+mbx+")/tracelog_Mailbox?$select=tracecode", nil)
	if len(viaMailbox.values()) != 1 {
		t.Fatalf("tracelog_Mailbox: %s", viaMailbox.body)
	}

	// An external login linked to a contact, read from the contact's side.
	cid := c.create("contacts", map[string]any{"lastname": "Ext"})
	c.create("adx_externalidentities", map[string]any{"adx_username": "subject-123", "adx_identityprovidername": "https://login.example/",
		"adx_contactid@odata.bind": "/contacts(" + cid + ")"})
	ids := c.must(200, "GET", "contacts("+cid+")?$select=lastname&$expand=adx_contact_externalidentity($select=adx_username,adx_identityprovidername,_organizationid_value)", nil)
	list, _ := ids.json["adx_contact_externalidentity"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["adx_username"] != "subject-123" || list[0].(map[string]any)["_organizationid_value"] != OrganizationID {
		t.Fatalf("external identities: %s", ids.body)
	}
}
