package dataverse

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"
)

const docOrg = "https://contoso.crm.dynamics.com"

func TestDecodeEntityWithAnnotations(t *testing.T) {
	rec, err := decodeRecord(recorded(t, "entity_with_annotations.json", docOrg))
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.ETag(); got != `W/"502186"` {
		t.Errorf("ETag = %q", got)
	}
	if got := rec.Str("name"); got != "Contoso Ltd" {
		t.Errorf("name = %q", got)
	}
	if got := rec.Int("revenue"); got != 5000000 {
		t.Errorf("revenue = %d", got)
	}
	if got := rec.FormattedValue("revenue"); got != "$5,000,000.00" {
		t.Errorf("formatted revenue = %q", got)
	}
	if got := rec.FormattedValue("statecode"); got != "Active" {
		t.Errorf("formatted statecode = %q", got)
	}
	if got := rec.Str("_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname"); got != "contact" {
		t.Errorf("lookuplogicalname = %q", got)
	}
	if got := rec.ID("accountid"); got != "78914942-34cb-ed11-b596-0022481d68cd" {
		t.Errorf("id = %q", got)
	}
	if got := rec.Time("createdon"); !got.Equal(time.Date(2023, 3, 16, 0, 41, 21, 0, time.UTC)) {
		t.Errorf("createdon = %v", got)
	}
	if rec.Bool("donotphone") {
		t.Error("donotphone = true")
	}
}

func TestDecodeCollectionWithNextLink(t *testing.T) {
	var coll collection
	if err := json.Unmarshal(recorded(t, "collection_nextlink.json", docOrg), &coll); err != nil {
		t.Fatal(err)
	}
	if len(coll.Value) != 3 || coll.Value[2].Str("fullname") != "Alex Wu (sample)" {
		t.Fatalf("value = %v", coll.Value)
	}
	if coll.Count == nil || *coll.Count != 9 {
		t.Errorf("count = %v", coll.Count)
	}
	c, err := New(Config{URL: docOrg}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	link, err := c.resolveLink(coll.NextLink)
	if err != nil {
		t.Fatal(err)
	}
	if link != coll.NextLink {
		t.Errorf("next link was altered:\n got %s\nwant %s", link, coll.NextLink)
	}
}

func TestDecodeErrorBodies(t *testing.T) {
	tests := []struct {
		file    string
		status  int
		code    string
		check   func(error) bool
		message string
	}{
		{"error.json", 404, "0x80040217", IsNotFound, "account With Id = 9f3162f6-804a-e611-80d1-00155d4333fa Does Not Exist"},
		{"error_annotations.json", 500, "0x80040265", IsTransient, "An unexpected error occurred."},
		{"error_throttle.json", 429, "0x80072322", IsThrottled, "Number of requests exceeded the limit of 6000 over time window of 300 seconds."},
		{"error_gateway.html", 502, "", IsTransient, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			h := http.Header{"Req_id": {"5ecd1cb3-1730-4ffc-909c-d44c22270026"}, "Retry-After": {"7"}}
			e := newError("retrieve accounts", tt.status, h, recorded(t, tt.file, docOrg))
			if e.StatusCode != tt.status || e.Code != tt.code {
				t.Errorf("got %d %q", e.StatusCode, e.Code)
			}
			if tt.message != "" && e.Message != tt.message {
				t.Errorf("message = %q", e.Message)
			}
			if tt.message == "" && e.Message == "" {
				t.Error("non-JSON body lost")
			}
			if e.RequestID != "5ecd1cb3-1730-4ffc-909c-d44c22270026" {
				t.Errorf("request id = %q", e.RequestID)
			}
			wrapped := wrap("retrieve accounts", e)
			if !tt.check(wrapped) {
				t.Errorf("classifier false for %v", wrapped)
			}
			var got *Error
			if !errors.As(wrapped, &got) || got.Op != "retrieve accounts" {
				t.Errorf("errors.As: %v", got)
			}
			if tt.status == 429 && e.RetryAfter != 7*time.Second {
				t.Errorf("RetryAfter = %v", e.RetryAfter)
			}
		})
	}
}

func TestDecodeBatchResponse(t *testing.T) {
	body := recorded(t, "batch_response.txt", docOrg)
	groups, err := parseBatchResponse("multipart/mixed; boundary=batchresponse_c1bd45c1-dd81-470d-b897-e965846aa2f1", body)
	if err != nil {
		t.Fatal(err)
	}
	req := &BatchRequest{Parts: []BatchPart{
		{ChangeSet: []BatchOp{
			{Method: "POST", Path: "tasks", Body: map[string]any{"subject": "Task 1 in batch"}, ContentID: "1"},
			{Method: "POST", Path: "tasks", Body: map[string]any{"subject": "Task 2 in batch"}, ContentID: "2"},
		}},
		{Op: &BatchOp{Method: "POST", Path: "tasks", Body: map[string]any{"subject": "Task 3 in batch"}}},
		{Op: &BatchOp{Method: "GET", Path: "tasks?$select=subject"}},
	}}
	c, _ := New(Config{URL: docOrg}, nil, nil)
	_, ops, _, err := c.encodeBatch(req, "batch_x")
	if err != nil {
		t.Fatal(err)
	}
	res := mapBatchResults(req, ops, groups)
	if len(res) != 4 {
		t.Fatalf("%d results", len(res))
	}
	wantIDs := []string{"a59c24f3-fafc-e411-80dd-00155d2a68cb", "a69c24f3-fafc-e411-80dd-00155d2a68cb", "a79c24f3-fafc-e411-80dd-00155d2a68cb", ""}
	for i, r := range res {
		if r.EntityID != wantIDs[i] || r.Err != nil {
			t.Errorf("result %d: id %q err %v", i, r.EntityID, r.Err)
		}
	}
	if res[0].ContentID != "1" || res[1].ContentID != "2" || res[0].StatusCode != 204 {
		t.Errorf("change set results: %+v %+v", res[0], res[1])
	}
	var coll collection
	if err := json.Unmarshal(res[3].Body, &coll); err != nil || len(coll.Value) != 3 {
		t.Fatalf("GET part: %v %s", err, res[3].Body)
	}
	if FirstError(res) != nil {
		t.Error(FirstError(res))
	}
}

func TestDecodeBatchErrorResponse(t *testing.T) {
	body := recorded(t, "batch_response_error.txt", docOrg)
	groups, err := parseBatchResponse(`multipart/mixed; boundary="batchresponse_156da4b8-cd2f-4d1a-a5fb-4b5b8d9b0c1e"`, body)
	if err != nil {
		t.Fatal(err)
	}
	req := &BatchRequest{Parts: []BatchPart{
		{Op: &BatchOp{Method: "POST", Path: "contacts", Body: map[string]any{"bad": 1}}},
		{Op: &BatchOp{Method: "POST", Path: "contacts", Body: map[string]any{"lastname": "x"}}},
	}}
	c, _ := New(Config{URL: docOrg}, nil, nil)
	_, ops, _, _ := c.encodeBatch(req, "b")
	res := mapBatchResults(req, ops, groups)
	if res[0].StatusCode != 400 || res[0].Err == nil || res[0].Err.RequestID != "5ecd1cb3-1730-4ffc-909c-d44c22270026" {
		t.Errorf("first: %+v", res[0])
	}
	if res[1].StatusCode != http.StatusFailedDependency || res[1].Err == nil {
		t.Errorf("second should not have run: %+v", res[1])
	}
	if err := FirstError(res); err == nil || !errors.As(err, new(*Error)) {
		t.Errorf("FirstError = %v", err)
	}
}

func TestDecodeDeltaResponses(t *testing.T) {
	for _, tt := range []struct {
		file             string
		changed, deleted int
	}{{"delta_initial.json", 2, 0}, {"delta_response.json", 1, 1}} {
		var coll collection
		if err := json.Unmarshal(recorded(t, tt.file, docOrg), &coll); err != nil {
			t.Fatal(err)
		}
		var ch, del int
		for _, r := range coll.Value {
			if isDeleted(r) {
				del++
				if r.Str("id") != "2e451bbf-5f87-e711-80e5-00155db19e6d" {
					t.Errorf("deleted id %q", r.Str("id"))
				}
			} else {
				ch++
			}
		}
		if ch != tt.changed || del != tt.deleted || coll.DeltaLink == "" {
			t.Errorf("%s: changed %d deleted %d link %q", tt.file, ch, del, coll.DeltaLink)
		}
	}
}
