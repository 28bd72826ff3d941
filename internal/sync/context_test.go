package sync

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the .golden files under testdata/webhook")

// TestParseGolden parses the sample webhook bodies (shaped like the sample
// in Microsoft's "Use webhooks" article) and compares a typed dump with the
// .golden file next to each.
func TestParseGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/webhook/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := ParseContext(data)
			if err != nil {
				t.Fatalf("ParseContext: %v", err)
			}
			got, err := json.MarshalIndent(dumpContext(rc), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(f, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestParseGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("parse of %s differs from %s:\n%s", f, golden, got)
			}
		})
	}
}

func TestParseSample(t *testing.T) {
	data, err := os.ReadFile("testdata/webhook/update_requested.json")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ParseContext(data)
	if err != nil {
		t.Fatal(err)
	}
	if rc.MessageName != "Update" || rc.PrimaryEntityName != "contact" || rc.Depth != 1 || rc.Stage != 40 || rc.Mode != 1 {
		t.Errorf("header fields: %+v", rc)
	}
	if rc.PrimaryEntityID != "8c41e2a7-3b1d-ef11-840a-000d3a3b6e21" {
		t.Errorf("PrimaryEntityID = %q", rc.PrimaryEntityID)
	}
	if rc.InitiatingUserID != "6c3a0d53-77d4-ee11-9079-000d3a3b6e21" { // braces and upper case normalised
		t.Errorf("InitiatingUserID = %q", rc.InitiatingUserID)
	}
	if want := time.UnixMilli(1717261200000); !rc.OperationCreatedOn.Equal(want) {
		t.Errorf("OperationCreatedOn = %v, want %v", rc.OperationCreatedOn, want)
	}
	if _, off := rc.OperationCreatedOn.Zone(); off != 3600 {
		t.Errorf("offset = %d, want 3600", off)
	}
	tg := rc.Target()
	if tg == nil || tg.LogicalName != "contact" || tg.RowVersion != "1234567" {
		t.Fatalf("Target = %+v", tg)
	}
	if v, _ := tg.Attr("pinv_portalinvitestatus"); v != (OptionSetValue{Value: 100000000}) {
		t.Errorf("status = %#v", v)
	}
	if v, _ := tg.Attr("creditlimit"); v != (Money{Value: 1500.5}) {
		t.Errorf("creditlimit = %#v", v)
	}
	if v, _ := tg.Attr("numberofchildren"); v != int64(2) {
		t.Errorf("numberofchildren = %#v", v)
	}
	if v, _ := tg.Attr("modifiedby"); v != (EntityReference{LogicalName: "systemuser", ID: "6c3a0d53-77d4-ee11-9079-000d3a3b6e21", Name: "Avery Admin"}) {
		t.Errorf("modifiedby = %#v", v)
	}
	if v, ok := tg.Attr("modifiedonbehalfby"); !ok || v != nil {
		t.Errorf("modifiedonbehalfby = %#v, %v", v, ok)
	}
	if tg.FormattedValues["pinv_portalinvitestatus"] != "Requested" {
		t.Errorf("FormattedValues = %v", tg.FormattedValues)
	}
	img := rc.PostEntityImages["PostImage"]
	if img == nil || img.Attributes["pinv_portalname"] != "Contoso Partner Portal" {
		t.Errorf("post image = %+v", img)
	}
	if rc.OwningExtension == nil || rc.OwningExtension.LogicalName != "sdkmessageprocessingstep" {
		t.Errorf("OwningExtension = %+v", rc.OwningExtension)
	}
}

func TestParseDates(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
		off  int
		bad  bool
	}{
		{in: "/Date(1506384247000)/", want: time.UnixMilli(1506384247000)},
		{in: "/Date(1506409448000-0700)/", want: time.UnixMilli(1506409448000), off: -7 * 3600},
		{in: "/Date(1506409448000+0530)/", want: time.UnixMilli(1506409448000), off: 5*3600 + 30*60},
		{in: "/Date(-126230400000)/", want: time.UnixMilli(-126230400000)},
		{in: "/Date(0)/", want: time.UnixMilli(0)},
		{in: "/Date()/", bad: true},
		{in: "/Date(abc)/", bad: true},
		{in: "/Date(1506384247000", bad: true},
		{in: "/Date(1506384247000-07)/", bad: true},
		{in: "/Date(1506384247000+9900)/", bad: true},
		{in: "/Date(99999999999999999999)/", bad: true},
	} {
		got, err := date("d", tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("date(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("date(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		if _, off := got.Zone(); off != tc.off {
			t.Errorf("date(%q) offset %d, want %d", tc.in, off, tc.off)
		}
	}
}

func TestParseLenient(t *testing.T) {
	// Key case, objects instead of key/value lists, unknown keys and types,
	// untagged images, and a text value that only looks like a date.
	body := `{"messagename":"Update","primaryEntityName":"contact","PrimaryEntityId":"8C41E2A7-3B1D-EF11-840A-000D3A3B6E21",
	  "InputParameters":{"Target":{"__type":"Entity:x","attributes":{"pinv_portalinvitestatus":{"Value":100000000},"description":"/Date(soon)/"},"LogicalName":"contact"}},
	  "PostEntityImages":[{"key":"PostImage","value":{"LogicalName":"contact","Attributes":[]}}],
	  "Weird":{"__type":"Unheard:x","a":[1,"b",null]},"Depth":null}`
	rc, err := ParseContext([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if rc.MessageName != "Update" || rc.PrimaryEntityID != "8c41e2a7-3b1d-ef11-840a-000d3a3b6e21" {
		t.Errorf("%+v", rc)
	}
	v, _ := rc.Target().Attr("pinv_portalinvitestatus")
	if n, ok := intValue(v); !ok || n != 100000000 {
		t.Errorf("status %#v", v)
	}
	if d, _ := rc.Target().Attr("description"); d != "/Date(soon)/" {
		t.Errorf("description %#v", d)
	}
	if rc.PostEntityImages["PostImage"] == nil {
		t.Error("untagged post image not recognised")
	}
}

// malformedBodies are webhook bodies the parser must reject (400, nothing
// queued). Shared with the handler tests.
var malformedBodies = map[string]string{
	"empty":                 ``,
	"invalid utf-8":         "{\"MessageName\":\"Update\",\"OrganizationName\":\"ab\xffcd\"}",
	"not json":              `<xml/>`,
	"array":                 `[1,2]`,
	"string":                `"hello"`,
	"truncated":             `{"MessageName":"Update","PrimaryEntityId":"8c41e2a7-3b1d-ef11-840a-00`,
	"trailing data":         `{"MessageName":"Update"} {"x":1}`,
	"bad entity id":         `{"MessageName":"Update","PrimaryEntityName":"contact","PrimaryEntityId":"not-a-guid"}`,
	"id is a number":        `{"MessageName":"Update","PrimaryEntityId":42}`,
	"message is an object":  `{"MessageName":{"x":1}}`,
	"depth is text":         `{"MessageName":"Update","Depth":"one"}`,
	"depth is fractional":   `{"MessageName":"Update","Depth":1.5}`,
	"bool is a string":      `{"IsInTransaction":"false"}`,
	"inputs are a string":   `{"MessageName":"Update","InputParameters":"Target"}`,
	"pair is not an object": `{"InputParameters":[1]}`,
	"pair without key":      `{"InputParameters":[{"value":1}]}`,
	"attributes wrong":      `{"InputParameters":[{"key":"Target","value":{"__type":"Entity:x","Attributes":"all"}}]}`,
	"image not an entity":   `{"PostEntityImages":[{"key":"PostImage","value":"x"}]}`,
	"bad date":              `{"OperationCreatedOn":"/Date(yesterday)/"}`,
	"optionset not number":  `{"InputParameters":[{"key":"Target","value":{"__type":"Entity:x","Attributes":[{"key":"s","value":{"__type":"OptionSetValue:x","Value":"a"}}]}}]}`,
	"parent not object":     `{"ParentContext":[1]}`,
	"owning ext not object": `{"OwningExtension":"step"}`,
	"deep nesting":          `{"InputParameters":[{"key":"x","value":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}]}`,
	"parents too deep":      strings.Repeat(`{"ParentContext":`, 8) + `null` + strings.Repeat(`}`, 8),
}

func TestParseMalformed(t *testing.T) {
	for name, body := range malformedBodies {
		t.Run(name, func(t *testing.T) {
			rc, err := ParseContext([]byte(body))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseContext(%q) = %+v, %v; want a *ParseError", body, rc, err)
			}
		})
	}
}

func TestNormalizeGUID(t *testing.T) {
	for in, want := range map[string]string{
		"8c41e2a7-3b1d-ef11-840a-000d3a3b6e21":   "8c41e2a7-3b1d-ef11-840a-000d3a3b6e21",
		"{8C41E2A7-3B1D-EF11-840A-000D3A3B6E21}": "8c41e2a7-3b1d-ef11-840a-000d3a3b6e21",
		" 8c41e2a7-3b1d-ef11-840a-000d3a3b6e21 ": "8c41e2a7-3b1d-ef11-840a-000d3a3b6e21",
		"8c41e2a73b1def11840a000d3a3b6e21":       "",
		"8c41e2a7-3b1d-ef11-840a-000d3a3b6e2g":   "",
		"":                                       "",
	} {
		got, ok := normalizeGUID(in)
		if got != want || ok != (want != "") {
			t.Errorf("normalizeGUID(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// FuzzParse checks that no body makes the parser panic or hang, and that
// what it accepts is consistent: GUID fields are normalised and a parsed
// context's Target, if any, is an entity.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/webhook/*.json")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	for _, body := range malformedBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rc, err := ParseContext(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error is %T, want *ParseError", err)
			}
			return
		}
		for _, id := range []string{rc.PrimaryEntityID, rc.InitiatingUserID, rc.UserID} {
			if id == "" {
				continue
			}
			if n, ok := normalizeGUID(id); !ok || n != id {
				t.Fatalf("id %q not normalised", id)
			}
		}
		if v, ok := rc.InputParameters["Target"]; ok && v != nil {
			_ = rc.Target() // must not panic whatever the type
		}
		if _, err := json.Marshal(dumpContext(rc)); err != nil {
			t.Fatalf("dump: %v", err)
		}
	})
}

// dumpContext renders a parsed context with explicit type tags for golden
// comparison.
func dumpContext(c *RemoteExecutionContext) any {
	if c == nil {
		return nil
	}
	m := map[string]any{
		"MessageName": c.MessageName, "PrimaryEntityName": c.PrimaryEntityName, "PrimaryEntityId": c.PrimaryEntityID,
		"SecondaryEntityName": c.SecondaryEntityName, "CorrelationId": c.CorrelationID, "OperationId": c.OperationID,
		"RequestId": c.RequestID, "InitiatingUserId": c.InitiatingUserID, "UserId": c.UserID,
		"BusinessUnitId": c.BusinessUnitID, "OrganizationId": c.OrganizationID, "OrganizationName": c.OrganizationName,
		"Depth": c.Depth, "Mode": c.Mode, "Stage": c.Stage, "IsolationMode": c.IsolationMode,
		"IsExecutingOffline": c.IsExecutingOffline, "IsInTransaction": c.IsInTransaction, "IsOfflinePlayback": c.IsOfflinePlayback,
		"OperationCreatedOn": dumpValue(c.OperationCreatedOn),
		"InputParameters":    dumpMap(c.InputParameters), "OutputParameters": dumpMap(c.OutputParameters),
		"SharedVariables": dumpMap(c.SharedVariables),
		"PreEntityImages": dumpImages(c.PreEntityImages), "PostEntityImages": dumpImages(c.PostEntityImages),
		"ParentContext": dumpContext(c.ParentContext),
	}
	if c.OwningExtension != nil {
		m["OwningExtension"] = dumpValue(*c.OwningExtension)
	}
	return m
}

func dumpImages(m map[string]*Entity) any {
	out := map[string]any{}
	for k, e := range m {
		out[k] = dumpValue(e)
	}
	return out
}

func dumpMap(m map[string]any) any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = dumpValue(v)
	}
	return out
}

func dumpValue(v any) any {
	switch x := v.(type) {
	case time.Time:
		if x.IsZero() {
			return nil
		}
		return map[string]any{"Date": x.Format(time.RFC3339Nano)}
	case OptionSetValue:
		return map[string]any{"OptionSetValue": x.Value}
	case Money:
		return map[string]any{"Money": x.Value}
	case EntityReference:
		return map[string]any{"EntityReference": map[string]any{"LogicalName": x.LogicalName, "Id": x.ID, "Name": x.Name}}
	case *Entity:
		return map[string]any{"Entity": map[string]any{"LogicalName": x.LogicalName, "Id": x.ID, "RowVersion": x.RowVersion,
			"Attributes": dumpMap(x.Attributes), "FormattedValues": x.FormattedValues, "KeyAttributes": dumpMap(x.KeyAttributes)}}
	case int64:
		return map[string]any{"Int": x}
	case float64:
		return map[string]any{"Double": x}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = dumpValue(e)
		}
		return out
	case map[string]any:
		return map[string]any{"Object": dumpMap(x)}
	}
	return v
}
