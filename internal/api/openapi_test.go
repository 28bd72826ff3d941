package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
)

// openAPI is the part of an OpenAPI 3.1 document the tests read.
type openAPI struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
	Comps   struct {
		Schemas    map[string]map[string]any `json:"schemas"`
		Parameters map[string]map[string]any `json:"parameters"`
		Responses  map[string]map[string]any `json:"responses"`
	} `json:"components"`
}

type operation struct {
	Parameters  []map[string]any `json:"parameters"`
	RequestBody *struct {
		Required bool `json:"required"`
		Content  map[string]struct {
			Schema   map[string]any `json:"schema"`
			Examples map[string]struct {
				Value json.RawMessage `json:"value"`
			} `json:"examples"`
		} `json:"content"`
	} `json:"requestBody"`
	Responses map[string]map[string]any `json:"responses"`
	Security  *[]any                    `json:"security"`
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadDoc(t *testing.T) *openAPI {
	t.Helper()
	var d openAPI
	if err := json.Unmarshal(openAPIDoc, &d); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if d.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %q", d.OpenAPI)
	}
	return &d
}

// operations lists "METHOD /path" for every documented operation.
func (d *openAPI) operations(t *testing.T) map[string]operation {
	t.Helper()
	out := map[string]operation{}
	for path, item := range d.Paths {
		for key, raw := range item {
			if !slices.Contains(httpMethods, key) {
				continue
			}
			var op operation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", key, path, err)
			}
			out[strings.ToUpper(key)+" "+path] = op
		}
	}
	return out
}

// TestOpenAPIMatchesRouter checks the router's table and the document name
// the same operations, and that each one reaches a handler.
func TestOpenAPIMatchesRouter(t *testing.T) {
	d := loadDoc(t)
	ops := d.operations(t)
	var documented, routed []string
	for k := range ops {
		documented = append(documented, k)
	}
	h := newHarness(t, happyInvites(t))
	for _, rt := range (&server{}).routes() {
		routed = append(routed, rt.method+" "+rt.path)
		// Public routes are exactly those documented with "security": [].
		op := ops[rt.method+" "+rt.path]
		public := op.Security != nil && len(*op.Security) == 0
		if public != rt.public {
			t.Errorf("%s %s: public in router %v, in document %v", rt.method, rt.path, rt.public, public)
		}
	}
	sort.Strings(documented)
	sort.Strings(routed)
	if !slices.Equal(documented, routed) {
		t.Fatalf("document and router differ:\ndocument %q\nrouter   %q", documented, routed)
	}

	// Every documented operation answers with a status it documents, and a
	// body that matches the schema documented for it.
	for _, k := range documented {
		method, path, _ := strings.Cut(k, " ")
		op := ops[k]
		body := ""
		if op.RequestBody != nil {
			for _, ex := range op.RequestBody.Content["application/json"].Examples {
				body = string(ex.Value)
				break
			}
		}
		r := h.do(method, strings.ReplaceAll(path, "{id}", invitationID), body)
		resp, ok := op.Responses[strconv.Itoa(r.status)]
		if !ok {
			t.Errorf("%s: status %d is not documented", k, r.status)
			continue
		}
		checkResponse(t, d, k, r, resp)
	}
}

// TestOpenAPIExamplesAreValid checks each documented request example against
// its schema (required fields, known fields, types, oneOf) and then sends it.
func TestOpenAPIExamplesAreValid(t *testing.T) {
	d := loadDoc(t)
	inv := happyInvites(t)
	h := newHarness(t, inv)
	n := 0
	for k, op := range d.operations(t) {
		if op.RequestBody == nil {
			continue
		}
		method, path, _ := strings.Cut(k, " ")
		media, ok := op.RequestBody.Content["application/json"]
		if !ok || len(media.Examples) == 0 {
			t.Errorf("%s: no application/json examples", k)
			continue
		}
		for name, ex := range media.Examples {
			n++
			var v any
			if err := json.Unmarshal(ex.Value, &v); err != nil {
				t.Fatalf("%s example %s: %v", k, name, err)
			}
			if errs := validate(d, media.Schema, v, "#", false); len(errs) > 0 {
				t.Errorf("%s example %s does not match its schema: %v", k, name, errs)
			}
			r := h.do(method, path, string(ex.Value))
			if r.status/100 != 2 {
				t.Errorf("%s example %s: status %d: %s", k, name, r.status, r.raw)
			}
		}
	}
	if n == 0 {
		t.Fatal("no request examples")
	}

	// The validator is not vacuous: it rejects what the handler rejects.
	schema := map[string]any{"$ref": "#/components/schemas/CreateInvitationRequest"}
	for _, bad := range []string{
		`{"contact_id":"` + contactID + `"}`,
		`{"portal":"p"}`,
		`{"contact_id":"` + contactID + `","email":"a@example.com","portal":"p"}`,
		`{"contact_id":"` + contactID + `","portal":"p","extra":1}`,
		`{"contact_id":"` + contactID + `","portal":"p","roles":"Partners"}`,
		`{"contact_id":"42","portal":"p"}`,
	} {
		var v any
		_ = json.Unmarshal([]byte(bad), &v)
		if len(validate(d, schema, v, "#", false)) == 0 {
			t.Errorf("schema accepts %s", bad)
		}
		if r := h.do("POST", "/api/v1/invitations", bad); r.status != http.StatusBadRequest {
			t.Errorf("handler: %s -> %d", bad, r.status)
		}
	}
}

// TestOpenAPIDocumentsErrorResponses sends requests that fail in each
// documented way and checks the problem bodies against the Problem schema.
func TestOpenAPIDocumentsErrorResponses(t *testing.T) {
	d := loadDoc(t)
	ops := d.operations(t)
	inv := happyInvites(t)
	inv.GetFn = func(context.Context, string) (*invite.Invitation, error) { return nil, invite.ErrNotFound }
	inv.InviteFn = func(context.Context, invite.InviteRequest) (*invite.InviteResult, error) {
		return nil, fmt.Errorf("x: %w", invite.ErrUnknownRole)
	}
	inv.ListFn = func(context.Context, invite.ListFilter) ([]invite.Invitation, error) {
		return nil, &dataverse.Error{StatusCode: 429, RetryAfter: time.Second}
	}
	inv.ResendFn = func(context.Context, string) (*invite.InviteResult, error) { return nil, invite.ErrCodeRevoked }
	inv.RevokeFn = func(context.Context, string) error { return fmt.Errorf("odd") }
	h := newHarness(t, inv)
	for _, tt := range []struct {
		op, path, body string
		status         int
		headers        []string
	}{
		{"GET /api/v1/invitations/{id}", "/api/v1/invitations/" + invitationID, "", 401, []string{"Authorization", ""}},
		{"GET /api/v1/invitations/{id}", "/api/v1/invitations/" + invitationID, "", 404, nil},
		{"POST /api/v1/invitations", "/api/v1/invitations", `{"portal":1}`, 400, nil},
		{"POST /api/v1/invitations", "/api/v1/invitations", createBody, 415, []string{"Content-Type", "text/plain"}},
		{"POST /api/v1/invitations", "/api/v1/invitations", createBody, 422, nil},
		{"GET /api/v1/invitations", "/api/v1/invitations", "", 503, nil},
		{"GET /api/v1/invitations", "/api/v1/invitations?status=nope", "", 400, nil},
		{"POST /api/v1/invitations/{id}/resend", "/api/v1/invitations/" + invitationID + "/resend", "", 409, nil},
		{"POST /api/v1/invitations/{id}/revoke", "/api/v1/invitations/" + invitationID + "/revoke", "", 500, nil},
	} {
		method, _, _ := strings.Cut(tt.op, " ")
		r := h.do(method, tt.path, tt.body, tt.headers...)
		if r.status != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.op, r.status, tt.status, r.raw)
			continue
		}
		resp, ok := ops[tt.op].Responses[strconv.Itoa(r.status)]
		if !ok {
			t.Errorf("%s: status %d is not documented", tt.op, r.status)
			continue
		}
		checkResponse(t, d, tt.op, r, resp)
	}
}

// checkResponse validates r against a documented response (following a
// component $ref): media type, documented headers that must be present, and
// the body against the schema, strictly (no undocumented fields).
func checkResponse(t *testing.T, d *openAPI, op string, r response, resp map[string]any) {
	t.Helper()
	if ref, ok := resp["$ref"].(string); ok {
		resp = d.Comps.Responses[strings.TrimPrefix(ref, "#/components/responses/")]
		if resp == nil {
			t.Fatalf("%s: dangling %s", op, ref)
		}
	}
	if hs, ok := resp["headers"].(map[string]any); ok {
		for name := range hs {
			if name == "Location" || name == "Retry-After" || name == "WWW-Authenticate" {
				if r.header.Get(name) == "" {
					t.Errorf("%s %d: documented header %s missing", op, r.status, name)
				}
			}
		}
	}
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		if len(r.raw) != 0 {
			t.Errorf("%s %d: undocumented body %s", op, r.status, r.raw)
		}
		return
	}
	ct := r.header.Get("Content-Type")
	media, ok := content[ct].(map[string]any)
	if !ok {
		t.Errorf("%s %d: Content-Type %q not documented", op, r.status, ct)
		return
	}
	var v any
	if err := json.Unmarshal(r.raw, &v); err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	if errs := validate(d, media["schema"].(map[string]any), v, "#", true); len(errs) > 0 {
		t.Errorf("%s %d: body does not match the documented schema: %v\n%s", op, r.status, errs, r.raw)
	}
}

// validate checks v against the subset of JSON Schema the document uses:
// $ref, type (one or a list), required, properties, additionalProperties
// false, items, enum, oneOf, minLength, and the uuid, email and date-time
// formats. strict also rejects properties the schema does not list.
func validate(d *openAPI, s map[string]any, v any, at string, strict bool) []string {
	if ref, ok := s["$ref"].(string); ok {
		target := d.Comps.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
		if target == nil {
			return []string{at + ": dangling " + ref}
		}
		return validate(d, target, v, at, strict)
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	if oneOf, ok := s["oneOf"].([]any); ok {
		matched := 0
		for _, alt := range oneOf {
			if len(validate(d, alt.(map[string]any), v, at, strict)) == 0 {
				matched++
			}
		}
		if matched != 1 {
			fail("matches %d of the oneOf alternatives, want exactly 1", matched)
		}
	}
	if typ, ok := s["type"]; ok {
		var types []string
		switch x := typ.(type) {
		case string:
			types = []string{x}
		case []any:
			for _, e := range x {
				types = append(types, e.(string))
			}
		}
		if !slices.Contains(types, jsonType(v)) && !(jsonType(v) == "integer" && slices.Contains(types, "number")) {
			fail("is %s, want %v", jsonType(v), types)
			return errs
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		fail("%v is not one of %v", v, enum)
	}
	switch x := v.(type) {
	case string:
		if min, ok := s["minLength"].(float64); ok && len(x) < int(min) {
			fail("shorter than %v", min)
		}
		switch s["format"] {
		case "uuid":
			if _, ok := normalizeGUID(x); !ok || x != strings.ToLower(x) {
				fail("%q is not a lower-case uuid", x)
			}
		case "date-time":
			if _, err := time.Parse(time.RFC3339, x); err != nil {
				fail("%q is not a date-time", x)
			}
		case "email":
			if _, err := mail.ParseAddress(x); err != nil {
				fail("%q is not an email address", x)
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range x {
				errs = append(errs, validate(d, items, e, at+"/"+strconv.Itoa(i), strict)...)
			}
		}
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := x[r.(string)]; !ok {
					fail("required property %s missing", r)
				}
			}
		}
		closed := s["additionalProperties"] == false || (strict && props != nil)
		for k, e := range x {
			ps, ok := props[k].(map[string]any)
			if !ok {
				if closed {
					fail("property %s is not documented", k)
				}
				continue
			}
			errs = append(errs, validate(d, ps, e, at+"/"+k, strict)...)
		}
	}
	return errs
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case float64:
		if x == float64(int64(x)) {
			return "integer"
		}
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

func TestOpenAPIServed(t *testing.T) {
	h := newHarness(t, happyInvites(t))
	r := h.do("GET", "/api/v1/openapi.json", "", "Authorization", "")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" || r.body["openapi"] != "3.1.0" {
		t.Errorf("status %d, Content-Type %q", r.status, r.header.Get("Content-Type"))
	}
}

// The response check is not vacuous: an undocumented or missing field fails.
func TestResponseValidatorIsStrict(t *testing.T) {
	d := loadDoc(t)
	s := (&server{now: func() time.Time { return testNow }})
	b, _ := json.Marshal(s.invitationJSON(sampleInvitation()))
	schema := map[string]any{"$ref": "#/components/schemas/Invitation"}
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	if errs := validate(d, schema, v, "#", true); len(errs) > 0 {
		t.Fatalf("sample invitation: %v", errs)
	}
	v["code"] = "SECRET"
	if len(validate(d, schema, v, "#", true)) == 0 {
		t.Error("undocumented field accepted")
	}
	delete(v, "code")
	delete(v, "open")
	if len(validate(d, schema, v, "#", true)) == 0 {
		t.Error("missing required field accepted")
	}
	v["open"], v["status"] = true, "expired"
	if len(validate(d, schema, v, "#", true)) == 0 {
		t.Error("value outside the enum accepted")
	}
}
