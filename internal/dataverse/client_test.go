package dataverse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewValidatesURL(t *testing.T) {
	for _, u := range []string{"", "contoso.crm.dynamics.com", "ftp://x", "http://contoso.crm.dynamics.com"} {
		if _, err := New(Config{URL: u}, nil, nil); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	c, err := New(Config{URL: "https://contoso.crm4.dynamics.com/", APIVersion: "v9.1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.APIURL() != "https://contoso.crm4.dynamics.com/api/data/v9.1/" {
		t.Errorf("APIURL = %s", c.APIURL())
	}
	if c.tokens != nil || c.maxRetries != 5 || c.timeout != 30*time.Second || c.Concurrency() != 4 {
		t.Errorf("defaults: %+v", c)
	}
}

func TestRequestHeadersAndAuth(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		http.SetCookie(w, &http.Cookie{Name: "ARRAffinity", Value: "server1"})
		writeJSON(w, 200, `{"UserId":"u"}`)
	})
	cred := &staticCred{token: "tok-123"}
	hc, err := NewHTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{URL: f.srv.URL, UserAgent: "portal-invite-connector/1.2.3"}, cred, &Options{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.WhoAmI(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range f.requests() {
		want := map[string]string{
			"Accept": "application/json", "Odata-Maxversion": "4.0", "Odata-Version": "4.0",
			"If-None-Match": "null", "User-Agent": "portal-invite-connector/1.2.3", "Authorization": "Bearer tok-123",
		}
		for k, v := range want {
			if got := r.Header.Get(k); got != v {
				t.Errorf("request %d: %s = %q, want %q", i, k, got, v)
			}
		}
		if r.Header.Get("Cookie") != "" {
			t.Errorf("request %d sent the affinity cookie back", i)
		}
	}
	if cred.calls.Load() != 1 {
		t.Errorf("token fetched %d times; want cached", cred.calls.Load())
	}
}

func TestCreateIsSafeToRetry(t *testing.T) {
	var mu sync.Mutex
	rows := map[string]string{}
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPatch || r.Header.Get("If-None-Match") != "*" {
			t.Errorf("create sent %s If-None-Match=%q", r.Method, r.Header.Get("If-None-Match"))
		}
		if _, ok := rows[r.URL.Path]; ok {
			writeJSON(w, 412, `{"error":{"code":"0x80040237","message":"A record with matching key values already exists."}}`)
			return
		}
		rows[r.URL.Path] = "created"
		if n == 0 { // the row is written but the answer is lost
			dropConnection(t, w)
			return
		}
		w.Header().Set("OData-EntityId", "http://"+r.Host+r.URL.Path)
		w.WriteHeader(204)
	})
	c, w := testClient(t, f, Config{}, nil)
	id, rec, err := c.Create(context.Background(), "adx_invitations", map[string]any{"adx_name": "Invite"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec != nil || len(id) != 36 {
		t.Errorf("id %q rec %v", id, rec)
	}
	reqs := f.requests()
	if len(reqs) != 2 || len(rows) != 1 || len(w.all()) != 1 {
		t.Fatalf("requests %d rows %d waits %v", len(reqs), len(rows), w.all())
	}
	if reqs[0].Path != reqs[1].Path || reqs[0].Body != reqs[1].Body || reqs[0].Path != "/api/data/v9.2/adx_invitations("+id+")" {
		t.Errorf("attempts differ: %+v", reqs)
	}
	// Without an uncertain attempt a 412 is the caller's problem.
	_, _, err = c.Create(context.Background(), "adx_invitations", map[string]any{"adx_name": "Again"}, &WriteOptions{ID: id})
	if !IsDuplicate(err) || !IsPreconditionFailed(err) {
		t.Errorf("existing id: %v", err)
	}
}

func TestCreateWithIDColumnPosts(t *testing.T) {
	var created atomic.Int32
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		var body map[string]any
		json.NewDecoder(strings.NewReader(mustBody(r))).Decode(&body)
		switch {
		case n == 0:
			created.Add(1)
			dropConnection(t, w)
		case r.Method == http.MethodGet:
			writeJSON(w, 200, fmt.Sprintf(`{"@odata.etag":"W/\"1\"","activityid":%q,"subject":"Hi"}`, body["activityid"]))
		default:
			writeJSON(w, 400, `{"error":{"code":"0x80040237","message":"Cannot insert duplicate key."}}`)
		}
	})
	c, _ := testClient(t, f, Config{}, nil)
	body := map[string]any{"subject": "Hi", "email_activity_parties": []any{map[string]any{"participationtypemask": 2}}}
	id, _, err := c.Create(context.Background(), "emails", body, &WriteOptions{IDColumn: "activityid"})
	if err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if reqs[0].Method != "POST" || reqs[0].Path != "/api/data/v9.2/emails" || !strings.Contains(reqs[0].Body, `"activityid":"`+id+`"`) {
		t.Errorf("first attempt %+v", reqs[0])
	}
	if reqs[0].Body != reqs[1].Body || created.Load() != 1 {
		t.Errorf("retry differs or duplicated")
	}
	if _, ok := body["activityid"]; ok {
		t.Error("caller's body was modified")
	}
}

func mustBody(r *http.Request) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

func TestCreateReturnRepresentation(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("Prefer") != "return=representation" || r.URL.Query().Get("$select") != "adx_name,adx_invitationcode" {
			t.Errorf("prefer %q query %q", r.Header.Get("Prefer"), r.URL.RawQuery)
		}
		writeJSON(w, 201, `{"@odata.etag":"W/\"9\"","adx_invitationid":"11111111-1111-1111-1111-111111111111","adx_name":"Invite"}`)
	})
	c, _ := testClient(t, f, Config{}, nil)
	id, rec, err := c.Create(context.Background(), "adx_invitations", map[string]any{"adx_name": "Invite"},
		&WriteOptions{Return: true, Select: []string{"adx_name", "adx_invitationcode"}, ID: "11111111-1111-1111-1111-111111111111"})
	if err != nil {
		t.Fatal(err)
	}
	if id != "11111111-1111-1111-1111-111111111111" || rec.ETag() != `W/"9"` || rec.Str("adx_name") != "Invite" {
		t.Errorf("id %s rec %v", id, rec)
	}
}

func TestWriteOperations(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("Prefer") == "return=representation" {
			writeJSON(w, 200, `{"firstname":"Ann"}`)
			return
		}
		w.WriteHeader(204)
	})
	c, _ := testClient(t, f, Config{}, nil)
	ctx := context.Background()
	id := "22222222-2222-2222-2222-222222222222"
	if rec, err := c.Update(ctx, "contacts", id, map[string]any{"firstname": "Ann"}, nil); err != nil || rec != nil {
		t.Fatal(rec, err)
	}
	if rec, err := c.Update(ctx, "contacts", "{"+id+"}", map[string]any{"firstname": "Ann"}, &WriteOptions{IfMatch: `W/"5"`, Return: true}); err != nil || rec.Str("firstname") != "Ann" {
		t.Fatal(rec, err)
	}
	if _, err := c.Upsert(ctx, "contacts", id, map[string]any{"firstname": "Ann"}, &WriteOptions{IfNoneMatch: "*"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Upsert(ctx, "contacts", id, json.RawMessage(`{"firstname":"Bo"}`), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "contacts", id, &WriteOptions{IfMatch: `W/"6"`}); err != nil {
		t.Fatal(err)
	}
	if err := c.Associate(ctx, "adx_invitations", id, "adx_invitation_webrole", "adx_webroles", "33333333-3333-3333-3333-333333333333"); err != nil {
		t.Fatal(err)
	}
	if err := c.Disassociate(ctx, "adx_invitations", id, "adx_invitation_webrole", "33333333-3333-3333-3333-333333333333"); err != nil {
		t.Fatal(err)
	}
	base := "/api/data/v9.2/"
	want := []struct{ method, path, ifMatch, ifNone, body string }{
		{"PATCH", base + "contacts(" + id + ")", "*", "", `{"firstname":"Ann"}`},
		{"PATCH", base + "contacts(" + id + ")", `W/"5"`, "", `{"firstname":"Ann"}`},
		{"PATCH", base + "contacts(" + id + ")", "", "*", `{"firstname":"Ann"}`},
		{"PATCH", base + "contacts(" + id + ")", "", "", `{"firstname":"Bo"}`},
		{"DELETE", base + "contacts(" + id + ")", `W/"6"`, "", ""},
		{"POST", base + "adx_invitations(" + id + ")/adx_invitation_webrole/$ref", "", "",
			`{"@odata.id":"` + f.srv.URL + base + `adx_webroles(33333333-3333-3333-3333-333333333333)"}`},
		{"DELETE", base + "adx_invitations(" + id + ")/adx_invitation_webrole(33333333-3333-3333-3333-333333333333)/$ref", "", "", ""},
	}
	reqs := f.requests()
	for i, w := range want {
		r := reqs[i]
		if r.Method != w.method || r.Path != w.path || r.Header.Get("If-Match") != w.ifMatch || r.Header.Get("If-None-Match") != w.ifNone || r.Body != w.body {
			t.Errorf("request %d: %s %s If-Match=%q If-None-Match=%q %s", i, r.Method, r.Path, r.Header.Get("If-Match"), r.Header.Get("If-None-Match"), r.Body)
		}
	}
}

func TestRetrieveByKeyQuotesAndEscapes(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, `{"contactid":"c1"}`)
	})
	c, _ := testClient(t, f, Config{}, nil)
	_, err := c.RetrieveByKey(context.Background(), "contacts",
		Key{"emailaddress1": "o'brien&co@example.com", "adx_identity_username": "Ann O'Neil", "new_number": 5},
		&Query{Select: []string{"fullname"}, Expand: []string{"parentcustomerid_account($select=name;$top=1)"}, Annotations: "*"})
	if err != nil {
		t.Fatal(err)
	}
	r := f.requests()[0]
	wantPath := "/api/data/v9.2/contacts(adx_identity_username='Ann O''Neil',emailaddress1='o''brien&co@example.com',new_number=5)"
	if r.Path != wantPath {
		t.Errorf("path\n got %s\nwant %s", r.Path, wantPath)
	}
	q, err := url.ParseQuery(r.Query)
	if err != nil {
		t.Fatalf("query %q: %v", r.Query, err)
	}
	if q.Get("$select") != "fullname" || q.Get("$expand") != "parentcustomerid_account($select=name;$top=1)" {
		t.Errorf("query %v", q)
	}
	if r.Header.Get("Prefer") != `odata.include-annotations="*"` {
		t.Errorf("prefer %q", r.Header.Get("Prefer"))
	}
}

func TestQueryFollowsNextLinks(t *testing.T) {
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n < 2 {
			next := fmt.Sprintf("%s/api/data/v9.2/contacts?$select=fullname&$skiptoken=%%3Ccookie%%20pagenumber=%%22%d%%22%%20/%%3E", f.srv.URL, n+2)
			writeJSON(w, 200, fmt.Sprintf(`{"@odata.count":5,"value":[{"fullname":"p%d-a"},{"fullname":"p%d-b"}],"@odata.nextLink":%q}`, n, n, next))
			return
		}
		writeJSON(w, 200, `{"@odata.count":5,"value":[{"fullname":"p2-a"}]}`)
	})
	c, _ := testClient(t, f, Config{}, nil)
	q := &Query{Select: []string{"fullname"}, Filter: "statecode eq 0 and contains(fullname,'a b')", OrderBy: []string{"fullname asc"}, PageSize: 2, Count: true}
	var names []string
	for rec, err := range c.Query(context.Background(), "contacts", q) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, rec.Str("fullname"))
	}
	if strings.Join(names, ",") != "p0-a,p0-b,p1-a,p1-b,p2-a" {
		t.Errorf("names %v", names)
	}
	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	first, _ := url.ParseQuery(reqs[0].Query)
	if first.Get("$filter") != q.Filter || first.Get("$orderby") != "fullname asc" || first.Has("$top") || first.Get("$count") != "true" {
		t.Errorf("first query %q", reqs[0].Query)
	}
	if reqs[1].Query != "$select=fullname&$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E" {
		t.Errorf("next link not followed verbatim: %q", reqs[1].Query)
	}
	for i, r := range reqs {
		if r.Header.Get("Prefer") != "odata.maxpagesize=2" {
			t.Errorf("request %d prefer %q", i, r.Header.Get("Prefer"))
		}
	}
	// Breaking out of the loop stops paging.
	before := f.count()
	for range c.Query(context.Background(), "contacts", q) {
		break
	}
	if f.count() != before+1 {
		t.Errorf("early break fetched %d pages", f.count()-before)
	}
	p, err := c.QueryPage(context.Background(), "contacts", q, "")
	if err != nil || p.Count != 5 {
		t.Errorf("page %+v %v", p, err)
	}
	if _, err := c.QueryPage(context.Background(), "contacts", q, "https://evil.example.com/api/data/v9.2/contacts"); err == nil {
		t.Error("foreign next link accepted")
	}
}

func TestQueryTopWinsOverPageSize(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, `{"value":[]}`) })
	c, _ := testClient(t, f, Config{}, nil)
	if _, err := c.QueryPage(context.Background(), "contacts", &Query{Top: 2, PageSize: 50}, ""); err != nil {
		t.Fatal(err)
	}
	r := f.requests()[0]
	if r.Query != "$top=2" || r.Header.Get("Prefer") != "" {
		t.Errorf("query %q prefer %q", r.Query, r.Header.Get("Prefer"))
	}
}

func TestTransportErrorsDoNotLeakQueryValues(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) { dropConnection(t, w) })
	c, _ := testClient(t, f, Config{MaxRetries: -1}, nil)
	_, err := c.QueryPage(context.Background(), "contacts", &Query{Select: []string{"fullname"}, Filter: "emailaddress1 eq 'secret@example.com'"}, "")
	if err == nil || strings.Contains(err.Error(), "secret") || !IsTransient(err) {
		t.Fatalf("err = %v", err)
	}
	_, err = c.RetrieveByKey(context.Background(), "contacts", Key{"emailaddress1": "secret@example.com"}, nil)
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("err = %v", err)
	}
}

func TestQueryErrorEndsIteration(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 400, `{"error":{"code":"0x80060888","message":"Could not find a property named 'nope'"}}`)
	})
	c, _ := testClient(t, f, Config{}, nil)
	var errs int
	for rec, err := range c.Query(context.Background(), "contacts", &Query{Filter: "nope eq 1"}) {
		if err == nil || rec != nil {
			t.Fatalf("rec %v err %v", rec, err)
		}
		errs++
	}
	if errs != 1 {
		t.Errorf("%d errors yielded", errs)
	}
}

func TestDeltaCollectsChangesAndDeletions(t *testing.T) {
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("Prefer") != "odata.track-changes" {
			t.Errorf("request %d prefer %q", n, r.Header.Get("Prefer"))
		}
		base := f.srv.URL
		switch n {
		case 0: // first page of the initial sync
			writeJSON(w, 200, `{"value":[{"accountid":"a1","name":"A"}],"@odata.nextLink":"`+base+`/api/data/v9.2/accounts?$select=name&$skiptoken=2"}`)
		case 1:
			w.Header().Set("Content-Type", "application/json")
			w.Write(recorded(t, "delta_initial.json", base))
		case 2:
			w.Header().Set("Content-Type", "application/json")
			w.Write(recorded(t, "delta_response.json", base))
		default:
			writeJSON(w, 400, `{"error":{"code":"0x80044352","message":"The delta token is invalid or has expired. Please retry without a delta token."}}`)
		}
	})
	c, _ := testClient(t, f, Config{}, nil)
	ctx := context.Background()
	first, err := c.Delta(ctx, "accounts", []string{"name", "accountnumber", "telephone1", "fax"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Changed) != 3 || len(first.Deleted) != 0 || !strings.Contains(first.DeltaLink, "$deltatoken=919042") {
		t.Fatalf("first %+v", first)
	}
	if q := f.requests()[0].Query; q != "$select=name,accountnumber,telephone1,fax" {
		t.Errorf("initial query %q", q)
	}
	next, err := c.Delta(ctx, "accounts", nil, first.DeltaLink)
	if err != nil {
		t.Fatal(err)
	}
	if len(next.Changed) != 1 || len(next.Deleted) != 1 || next.Deleted[0] != "2e451bbf-5f87-e711-80e5-00155db19e6d" || next.DeltaLink == first.DeltaLink {
		t.Fatalf("next %+v", next)
	}
	if got := f.requests()[2].Query; got != "$select=name,accountnumber,telephone1,fax&$deltatoken=919042%2108%2f22%2f2017%2008%3a10%3a44" {
		t.Errorf("delta link not used verbatim: %q", got)
	}
	_, err = c.Delta(ctx, "accounts", nil, next.DeltaLink)
	if !IsDeltaTokenExpired(err) {
		t.Errorf("expired token: %v", err)
	}
}

func TestFunctionsAndActions(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, 200, `{"value":"ok"}`)
	})
	c, _ := testClient(t, f, Config{}, nil)
	ctx := context.Background()
	var out struct{ Value string }
	err := c.CallFunction(ctx, "RetrievePrincipalAccess", &EntityRef{Set: "contacts", ID: "c1"},
		map[string]any{"Target": map[string]any{"@odata.id": "accounts(a1)"}, "Name": "O'Hara & Sons", "Count": 3, "Id": Literal("a1")}, &out)
	if err != nil || out.Value != "ok" {
		t.Fatal(out, err)
	}
	if err := c.CallFunction(ctx, "WhoAmI", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.CallAction(ctx, "new_InviteToPortal", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	r := reqs[0]
	if r.Path != "/api/data/v9.2/contacts(c1)/Microsoft.Dynamics.CRM.RetrievePrincipalAccess(Count=@p1,Id=@p2,Name=@p3,Target=@p4)" {
		t.Errorf("function path %s", r.Path)
	}
	q, err := url.ParseQuery(r.Query)
	if err != nil {
		t.Fatal(err)
	}
	if q.Get("@p1") != "3" || q.Get("@p2") != "a1" || q.Get("@p3") != "'O''Hara & Sons'" || q.Get("@p4") != `{"@odata.id":"accounts(a1)"}` {
		t.Errorf("aliases %v", q)
	}
	if reqs[1].Path != "/api/data/v9.2/WhoAmI()" || reqs[1].Method != "GET" {
		t.Errorf("unbound function %s %s", reqs[1].Method, reqs[1].Path)
	}
	if reqs[2].Path != "/api/data/v9.2/new_InviteToPortal" || reqs[2].Method != "POST" || reqs[2].Body != "{}" {
		t.Errorf("unbound action %+v", reqs[2])
	}
}

func TestBatchRequestFormat(t *testing.T) {
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Type", "multipart/mixed; boundary=batchresponse_c1bd45c1-dd81-470d-b897-e965846aa2f1")
		w.Write(recorded(t, "batch_response.txt", f.srv.URL))
	})
	c, _ := testClient(t, f, Config{}, nil)
	req := &BatchRequest{ContinueOnError: true, Parts: []BatchPart{
		{ChangeSet: []BatchOp{
			{Method: "POST", Path: "tasks", Body: map[string]any{"subject": "Task 1 in batch"}},
			{Method: "POST", Path: "tasks", Body: map[string]any{"subject": "Task 2 in batch", "regardingobjectid_contact_task@odata.bind": "$1"}, Headers: http.Header{"Prefer": {"return=minimal"}}},
		}},
		{Op: &BatchOp{Method: "POST", Path: "tasks", Body: map[string]any{"subject": "Task 3 in batch"}}},
		{Op: &BatchOp{Method: "GET", Path: "tasks?$select=subject&$filter=contains(subject,'batch')"}},
	}}
	res, err := c.Batch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 || res[0].ContentID != "1" || res[1].ContentID != "2" || res[2].EntityID == "" {
		t.Fatalf("results %+v", res)
	}
	r := f.requests()[0]
	if r.Path != "/api/data/v9.2/$batch" || r.Method != "POST" || r.Header.Get("Prefer") != "odata.continue-on-error" {
		t.Errorf("batch request %s %s prefer %q", r.Method, r.Path, r.Header.Get("Prefer"))
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("content type %q", r.Header.Get("Content-Type"))
	}
	// Read the request back the way a server would.
	mr := multipart.NewReader(strings.NewReader(r.Body), params["boundary"])
	var lines []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, cp, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if ct == "multipart/mixed" {
			inner := multipart.NewReader(p, cp["boundary"])
			for {
				ip, err := inner.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(ip)
				lines = append(lines, "cs "+ip.Header.Get("Content-ID")+" "+firstLine(b)+" "+lastLine(b))
			}
			continue
		}
		b, _ := io.ReadAll(p)
		lines = append(lines, "op "+firstLine(b))
	}
	want := []string{
		`cs 1 POST /api/data/v9.2/tasks HTTP/1.1 {"subject":"Task 1 in batch"}`,
		`cs 2 POST /api/data/v9.2/tasks HTTP/1.1 {"regardingobjectid_contact_task@odata.bind":"$1","subject":"Task 2 in batch"}`,
		`op POST /api/data/v9.2/tasks HTTP/1.1`,
		`op GET /api/data/v9.2/tasks?$select=subject&$filter=contains(subject,'batch') HTTP/1.1`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("parts:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	for _, bad := range []*BatchRequest{
		nil, {}, {Parts: []BatchPart{{}}},
		{Parts: []BatchPart{{ChangeSet: []BatchOp{{Method: "GET", Path: "contacts"}}}}},
		{Parts: []BatchPart{{ChangeSet: []BatchOp{{Method: "POST", Path: "a", ContentID: "1"}, {Method: "POST", Path: "b", ContentID: "1"}}}}},
	} {
		if _, err := c.Batch(context.Background(), bad); err == nil {
			t.Errorf("invalid batch accepted: %+v", bad)
		}
	}
}

func firstLine(b []byte) string {
	l, _, _ := strings.Cut(string(b), "\r\n")
	return l
}

func lastLine(b []byte) string {
	s := strings.TrimRight(string(b), "\r\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

func TestBatchStoppedAtFailure(t *testing.T) {
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Type", `multipart/mixed; boundary="batchresponse_156da4b8-cd2f-4d1a-a5fb-4b5b8d9b0c1e"`)
		w.WriteHeader(400)
		w.Write(recorded(t, "batch_response_error.txt", f.srv.URL))
	})
	c, _ := testClient(t, f, Config{}, nil)
	res, err := c.Batch(context.Background(), &BatchRequest{Parts: []BatchPart{
		{Op: &BatchOp{Method: "POST", Path: "contacts", Body: map[string]any{"bad": 1}}},
		{Op: &BatchOp{Method: "POST", Path: "contacts", Body: map[string]any{"lastname": "x"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].StatusCode != 400 || res[1].StatusCode != 424 || FirstError(res) == nil || f.count() != 1 {
		t.Errorf("results %+v", res)
	}
}

func TestConcurrencyFollowsDOPHint(t *testing.T) {
	var inFlight, peak atomic.Int32
	gate := make(chan struct{})
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		cur := inFlight.Add(1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		if n > 0 {
			<-gate
		}
		inFlight.Add(-1)
		w.Header().Set("x-ms-dop-hint", "2")
		writeJSON(w, 200, `{"UserId":"u"}`)
	})
	c, _ := testClient(t, f, Config{}, nil)
	if _, err := c.WhoAmI(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Concurrency() != 2 {
		t.Fatalf("concurrency %d after hint", c.Concurrency())
	}
	peak.Store(0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.WhoAmI(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	for f.count() < 3 { // two in flight, the rest wait for a slot
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	if peak.Load() > 2 {
		t.Errorf("peak in flight %d > hint 2", peak.Load())
	}
	fixed, _ := testClient(t, f, Config{MaxConcurrency: 7}, nil)
	fixed.WhoAmI(context.Background())
	if fixed.Concurrency() != 7 {
		t.Errorf("fixed concurrency moved to %d", fixed.Concurrency())
	}
}

func TestPacerSlowsDownNearTheLimit(t *testing.T) {
	now := time.Unix(0, 0)
	p := newPacer(func() time.Time { return now })
	h := func(n int) http.Header {
		return http.Header{"X-Ms-Ratelimit-Burst-Remaining-Xrm-Requests": {fmt.Sprint(n)}}
	}
	p.observe(h(5999), 0) // the header counts the request it answers: budget 6000
	p.record(now)         // one of our requests, at the start of the window
	if d := p.delay(); d != 0 {
		t.Errorf("plenty left: delay %v", d)
	}
	p.observe(h(599), 0) // below a tenth of the budget
	d1, d2 := p.delay(), p.delay()
	if d1 != 0 || d2 != 50*time.Millisecond { // 300s / 6000: starts spaced to the refill rate
		t.Errorf("low: delays %v %v", d1, d2)
	}
	// Exhausted: nothing goes until the window lets go of our oldest request,
	// then starts continue at the refill rate.
	now = now.Add(10 * time.Second)
	p.observe(h(0), 0)
	p.record(now)
	if d1, d2 := p.delay(), p.delay(); d1 != 290*time.Second || d2 != 290*time.Second+50*time.Millisecond {
		t.Errorf("exhausted: delays %v %v", d1, d2)
	}
	now = now.Add(291 * time.Second)
	p.observe(h(5000), 0)
	if d := p.delay(); d != 0 {
		t.Errorf("recovered: delay %v", d)
	}
	// The execution-time budget paces the same way: 1,200s per 300s window,
	// requests of 100ms → one start per 25ms once under a tenth is left.
	q := newPacer(func() time.Time { return now })
	th := func(v string) http.Header { return http.Header{"X-Ms-Ratelimit-Time-Remaining-Xrm-Requests": {v}} }
	q.observe(th("1,200.00"), 100*time.Millisecond)
	if d := q.delay(); d != 0 {
		t.Errorf("time plenty: delay %v", d)
	}
	q.observe(th("60.50"), 100*time.Millisecond)
	if d1, d2 := q.delay(), q.delay(); d1 != 0 || d2 != 25*time.Millisecond {
		t.Errorf("time low: delays %v %v", d1, d2)
	}
	// A 429 seen by one request holds the others for its Retry-After.
	p.pause(2 * time.Second)
	now = now.Add(500 * time.Millisecond)
	if d := p.delay(); d != 1500*time.Millisecond {
		t.Errorf("paused: delay %v", d)
	}
	now = now.Add(2 * time.Second)
	if d := p.delay(); d != 0 {
		t.Errorf("after pause: delay %v", d)
	}
}

func TestLogsRedactSecrets(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("REQ_ID", "req-42")
		writeJSON(w, 200, `{"value":[{"emailaddress1":"secret@example.com"}]}`)
	})
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(Config{URL: f.srv.URL}, &staticCred{token: "super-secret-token"}, &Options{HTTPClient: f.srv.Client(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.QueryPage(context.Background(), "contacts", &Query{Select: []string{"fullname"}, Filter: "emailaddress1 eq 'secret@example.com'"}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RetrieveByKey(context.Background(), "contacts", Key{"emailaddress1": "secret@example.com"}, nil); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, secret := range []string{"super-secret-token", "secret@example.com", "secret%40example.com"} {
		if strings.Contains(out, secret) {
			t.Errorf("log leaks %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"$select=fullname", "$filter=REDACTED", "request_id=req-42", "status=200", "attempt=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestErrorHelpers(t *testing.T) {
	dup := wrap("associate x", &Error{StatusCode: 400, Code: "-2147220937"})
	if !IsDuplicate(dup) || !errors.Is(dup, ErrDuplicate) {
		t.Error("decimal duplicate code not recognised")
	}
	if !IsThrottled(&Error{StatusCode: 400, Code: "-2147015902"}) {
		t.Error("decimal throttle code not recognised")
	}
	if IsNotFound(errors.New("404")) || IsTransient(context.Canceled) || IsTransient(nil) {
		t.Error("false positives")
	}
	if !IsTransient(fmt.Errorf("x: %w", context.DeadlineExceeded)) {
		t.Error("timeout not transient")
	}
	if !IsDeltaTokenExpired(&Error{StatusCode: 410}) {
		t.Error("410 not an expired token")
	}
	e := &Error{StatusCode: 404, Code: "0x80040217", Message: "contact With Id = x Does Not Exist", RequestID: "r1"}
	if got := e.Error(); got != "dataverse: 404 Not Found (0x80040217): contact With Id = x Does Not Exist [request r1]" {
		t.Errorf("Error() = %q", got)
	}
}

func TestHooksSeeEveryAttempt(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 0 {
			writeJSON(w, 503, `{}`)
			return
		}
		writeJSON(w, 200, `{"value":[]}`)
	})
	var mu sync.Mutex
	var infos []RequestInfo
	c, _ := testClient(t, f, Config{}, &Options{Hooks: Hooks{OnRequest: func(ri RequestInfo) {
		mu.Lock()
		infos = append(infos, ri)
		mu.Unlock()
	}}})
	if _, err := c.QueryPage(context.Background(), "contacts", nil, ""); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].StatusCode != 503 || infos[0].Err == nil || infos[1].StatusCode != 200 ||
		infos[1].Attempt != 2 || infos[1].Set != "contacts" || infos[1].Operation != "query" || infos[1].Method != "GET" {
		t.Errorf("infos %+v", infos)
	}
}
