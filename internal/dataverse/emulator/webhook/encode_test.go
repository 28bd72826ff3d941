package webhook

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func golden(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return buf.Bytes()
}

// compareBytes reports the first difference with some context around it.
func compareBytes(t *testing.T, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-80)
	t.Fatalf("output differs from golden at byte %d:\n got: …%s\nwant: …%s", i,
		got[lo:min(len(got), i+80)], want[lo:min(len(want), i+80)])
}

// docsUpdateContext is the context behind the Microsoft docs sample
// (testdata/README.md).
func docsUpdateContext() Context {
	const (
		contactID = "6d81597f-0f9f-e711-8122-000d3aa2331c"
		userID    = "75c2dd85-e89e-e711-8122-000d3aa2331c"
	)
	return Context{
		MessageName:        "Update",
		PrimaryEntityName:  "contact",
		PrimaryEntityID:    contactID,
		InitiatingUserID:   userID,
		UserID:             userID,
		OrganizationID:     "4ef5b371-e89e-e711-8122-000d3aa2331c",
		OrganizationName:   "OrgName",
		BusinessUnitID:     "e2b9dd85-e89e-e711-8122-000d3aa2331c",
		CorrelationID:      "b374239d-4233-41a9-8b17-a86cb4f737b5",
		OperationID:        "4af10637-4ea2-e711-8122-000d3aa2331c",
		OwningExtensionID:  "75417616-4ea2-e711-8122-000d3aa2331c",
		OperationCreatedOn: time.UnixMilli(1506409448000).In(time.FixedZone("PDT", -7*3600)),
		Depth:              1,
		Mode:               1,
		Stage:              40,
		Target: &Entity{LogicalName: "contact", ID: contactID, Attributes: map[string]any{
			"firstname":          "James",
			"contactid":          contactID,
			"fullname":           "James Glynn (sample)",
			"yomifullname":       "James Glynn (sample)",
			"modifiedon":         time.UnixMilli(1506384247000),
			"modifiedby":         EntityReference{LogicalName: "systemuser", ID: userID},
			"modifiedonbehalfby": nil,
		}},
		PostImages: map[string]Entity{
			"AsynchronousStepPrimaryName": {LogicalName: "contact", ID: contactID, Attributes: map[string]any{
				"fullname":  "James Glynn (sample)",
				"contactid": contactID,
			}},
		},
	}
}

func TestEncodeMatchesDocsSample(t *testing.T) {
	got, err := Encode(docsUpdateContext())
	if err != nil {
		t.Fatal(err)
	}
	compareBytes(t, got, golden(t, "update_contact_async.json"))
}

func TestEncodeSyncCreate(t *testing.T) {
	const id = "4b1e3d75-a749-ef11-acce-00224802d26d"
	c := Context{
		MessageName:        "Create",
		PrimaryEntityName:  "adx_invitation",
		PrimaryEntityID:    id,
		InitiatingUserID:   "09eb2446-db10-ef11-9f8a-6045bdd4c6be",
		UserID:             "09eb2446-db10-ef11-9f8a-6045bdd4c6be",
		OrganizationID:     "c09254de-a911-ef11-9f83-000d3a9d3b76",
		OrganizationName:   "unqc09254dea911ef119f83000d3a9d3",
		BusinessUnitID:     "e95e91cf-7b10-ef11-9f8a-6045bdd4c6be",
		CorrelationID:      "58dc9af0-fe25-4f81-b3f3-c4cb147c2ec4",
		OperationID:        "09097f27-6123-4c61-b463-af00adb2e082",
		RequestID:          "09097f27-6123-4c61-b463-af00adb2e082",
		OwningExtensionID:  "58378ec8-a649-ef11-acce-6045bd03d9d8",
		OperationCreatedOn: time.UnixMilli(1721816905786).In(time.FixedZone("CEST", 2*3600)),
		Mode:               0,
		Stage:              40,
		Target: &Entity{LogicalName: "adx_invitation", ID: id, Attributes: map[string]any{
			"adx_invitationid":       id,
			"adx_name":               `Invitation for "Nancy" <nancy@contoso.com>`,
			"adx_type":               OptionSetValue(756150000),
			"adx_maximumredemptions": 1,
			"adx_expirydate":         time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC),
			"adx_invitecontact":      EntityReference{LogicalName: "contact", ID: "a7f9a9ed-b311-ef11-9f89-000d3a544b4c", Name: "Nancy Anderson"},
			"createdon":              time.UnixMilli(1721816905000).In(time.FixedZone("X", -5*3600)),
			"exchangerate":           1.5,
			"pinv_fee":               Money(1500.5),
			"pinv_sendnow":           true,
			"versionnumber":          int64(5948260),
		}},
		OutputParameters: map[string]any{"id": id},
	}
	got, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	compareBytes(t, got, golden(t, "create_invitation_sync.json"))
}

func TestEncodeDeleteTargetIsReference(t *testing.T) {
	c := docsUpdateContext()
	c.MessageName = "Delete"
	c.PostImages = nil
	got, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `"InputParameters":[{"key":"Target","value":{"__type":"EntityReference:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Id":"6d81597f-0f9f-e711-8122-000d3aa2331c","KeyAttributes":[],"LogicalName":"contact","Name":null,"RowVersion":null}}]`
	if !bytes.Contains(got, []byte(want)) {
		t.Fatalf("Delete target not encoded as a reference:\n%s", got)
	}
}

func TestEncodeDefaults(t *testing.T) {
	got, err := Encode(Context{MessageName: "Update", PrimaryEntityName: "contact"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	// Every member of reference §7.2 is present, even when empty.
	for _, k := range []string{"BusinessUnitId", "CorrelationId", "Depth", "InitiatingUserId", "InputParameters",
		"IsExecutingOffline", "IsInTransaction", "IsOfflinePlayback", "IsolationMode", "MessageName", "Mode",
		"OperationCreatedOn", "OperationId", "OrganizationId", "OrganizationName", "OutputParameters", "OwningExtension",
		"ParentContext", "PostEntityImages", "PreEntityImages", "PrimaryEntityId", "PrimaryEntityName", "RequestId",
		"SecondaryEntityName", "SharedVariables", "Stage", "UserId"} {
		if _, ok := m[k]; !ok {
			t.Errorf("member %s missing", k)
		}
	}
	if m["Depth"] != 1.0 || m["UserId"] != zeroGUID || m["OwningExtension"] != nil || m["RequestId"] != nil ||
		m["SecondaryEntityName"] != "none" || m["ParentContext"] != nil {
		t.Errorf("defaults wrong: %s", got)
	}
	if ip, _ := m["InputParameters"].([]any); ip == nil || len(ip) != 0 {
		t.Errorf("InputParameters = %v, want []", m["InputParameters"])
	}
}

func TestEncodeEscaping(t *testing.T) {
	s := "a\"b\\c/d\ne\tf\x01g<h>&i é \u2028 \xff"
	got, err := Encode(Context{Target: &Entity{LogicalName: "contact", Attributes: map[string]any{"description": s}}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte(`"a\"b\\c\/d\ne\tf\u0001g<h>&i é \u2028 \ufffd"`)) {
		t.Errorf("escaping differs from DataContract JSON: %s", got)
	}
	var back struct {
		InputParameters []struct {
			Value struct {
				Attributes []struct {
					Key   string `json:"key"`
					Value string `json:"value"`
				}
			} `json:"value"`
		}
	}
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if v := back.InputParameters[0].Value.Attributes[0].Value; v != strings.ToValidUTF8(s, "\ufffd") {
		t.Errorf("round trip = %q", v)
	}
}

func TestEncodeRejectsUnsupportedValues(t *testing.T) {
	for _, v := range []any{[]string{"x"}, struct{}{}, map[string]any{}} {
		_, err := Encode(Context{Target: &Entity{Attributes: map[string]any{"bad": v}}})
		if err == nil || !strings.Contains(err.Error(), `"bad"`) {
			t.Errorf("Encode with %T: err = %v, want an error naming the attribute", v, err)
		}
	}
	if _, err := Encode(Context{OutputParameters: map[string]any{"x": 1.0 / zero()}}); err == nil {
		t.Error("Encode accepted +Inf")
	}
}

func zero() float64 { return 0 }

func TestEncodeTrimmed(t *testing.T) {
	got, err := encode(docsUpdateContext(), true)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"} {
		if _, ok := m[k]; ok {
			t.Errorf("trimmed body still has %s", k)
		}
	}
	for _, k := range []string{"PrimaryEntityId", "PrimaryEntityName", "MessageName", "OperationId", "OutputParameters"} {
		if _, ok := m[k]; !ok {
			t.Errorf("trimmed body lost %s", k)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	c := docsUpdateContext()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(c); err != nil {
			b.Fatal(err)
		}
	}
}
