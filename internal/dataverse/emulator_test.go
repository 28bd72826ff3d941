package dataverse_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dataverse/emulator/throttle"
)

// env is an emulator served over loopback HTTP.
type env struct {
	*emulator.Server
	OrgURL, APIURL string
	hs             *httptest.Server
}

func serveEmulator(t testing.TB, o emulator.Options, tls bool) *env {
	t.Helper()
	srv := emulator.New(o)
	var hs *httptest.Server
	if tls {
		hs = httptest.NewTLSServer(srv)
	} else {
		hs = httptest.NewServer(srv)
	}
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return &env{Server: srv, OrgURL: hs.URL, APIURL: hs.URL + "/api/data/v9.2/", hs: hs}
}

// startEmulator runs the emulator over plain HTTP with auth off and returns
// it with a client pointed at it.
func startEmulator(t testing.TB, o emulator.Options, cfg dataverse.Config, opts *dataverse.Options) (*env, *dataverse.Client) {
	t.Helper()
	o.Auth.Disabled = true
	run := serveEmulator(t, o, false)
	cfg.URL = run.OrgURL
	c, err := dataverse.New(cfg, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	return run, c
}

func TestEmulatorCRUD(t *testing.T) {
	run, c := startEmulator(t, emulator.Options{}, dataverse.Config{}, nil)
	ctx := context.Background()

	id, rec, err := c.Create(ctx, "contacts", map[string]any{"firstname": "Avery", "lastname": "Howard", "emailaddress1": "avery@example.com"},
		&dataverse.WriteOptions{Return: true, Select: []string{"fullname", "emailaddress1"}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID("contactid") != id || rec.ETag() == "" || rec.Str("emailaddress1") != "avery@example.com" {
		t.Fatalf("created %s %v", id, rec)
	}
	if row, ok := run.Row("contact", id); !ok || row["lastname"] != "Howard" {
		t.Fatalf("row in emulator: %v %v", row, ok)
	}
	id2, rec2, err := c.Create(ctx, "accounts", map[string]any{"name": "Contoso Ltd"}, nil)
	if err != nil || rec2 != nil || id2 == "" {
		t.Fatalf("plain create: %q %v %v", id2, rec2, err)
	}

	got, err := c.Retrieve(ctx, "contacts", id, &dataverse.Query{Select: []string{"firstname", "lastname"}})
	if err != nil || got.Str("firstname") != "Avery" {
		t.Fatalf("retrieve %v %v", got, err)
	}
	etag := got.ETag()

	if _, err := c.Update(ctx, "contacts", id, map[string]any{"jobtitle": "Buyer"}, &dataverse.WriteOptions{IfMatch: etag}); err != nil {
		t.Fatal(err)
	}
	// The row moved on: the old ETag no longer matches.
	_, err = c.Update(ctx, "contacts", id, map[string]any{"jobtitle": "Seller"}, &dataverse.WriteOptions{IfMatch: etag})
	if !dataverse.IsPreconditionFailed(err) || !errors.Is(err, dataverse.ErrPreconditionFailed) {
		t.Fatalf("stale etag: %v", err)
	}
	// Update never creates.
	missing := dataverse.NewGUID()
	if _, err := c.Update(ctx, "contacts", missing, map[string]any{"lastname": "Ghost"}, nil); !dataverse.IsNotFound(err) {
		t.Fatalf("update of missing row: %v", err)
	}
	// Upsert creates, create-only upsert refuses an existing row.
	if _, err := c.Upsert(ctx, "contacts", missing, map[string]any{"lastname": "Upserted"}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.Upsert(ctx, "contacts", missing, map[string]any{"lastname": "Again"}, &dataverse.WriteOptions{IfNoneMatch: "*"})
	if !dataverse.IsPreconditionFailed(err) || !dataverse.IsDuplicate(err) {
		t.Fatalf("create-only upsert on existing row: %v", err)
	}
	up, err := c.Upsert(ctx, "contacts", missing, map[string]any{"lastname": "Changed"}, &dataverse.WriteOptions{IfMatch: "*", Return: true})
	if err != nil || up.Str("lastname") != "Changed" {
		t.Fatalf("update-only upsert: %v %v", up, err)
	}

	if err := c.Delete(ctx, "contacts", missing, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.Retrieve(ctx, "contacts", missing, nil)
	var de *dataverse.Error
	if !dataverse.IsNotFound(err) || !errors.As(err, &de) || de.Code != "0x80040217" || de.RequestID == "" {
		t.Fatalf("retrieve deleted: %v", err)
	}
	if err := c.Delete(ctx, "contacts", missing, nil); !dataverse.IsNotFound(err) {
		t.Fatalf("second delete: %v", err)
	}
	// Create with a caller-chosen id, and again with the same id.
	fixed := dataverse.NewGUID()
	if got, _, err := c.Create(ctx, "contacts", map[string]any{"lastname": "Fixed"}, &dataverse.WriteOptions{ID: fixed}); err != nil || got != fixed {
		t.Fatalf("fixed id: %s %v", got, err)
	}
	if _, _, err := c.Create(ctx, "contacts", map[string]any{"lastname": "Fixed"}, &dataverse.WriteOptions{ID: fixed}); !dataverse.IsDuplicate(err) {
		t.Fatalf("duplicate id: %v", err)
	}
	// POST create with the primary key in the body.
	pid, _, err := c.Create(ctx, "accounts", map[string]any{"name": "Fabrikam"}, &dataverse.WriteOptions{IDColumn: "accountid"})
	if err != nil {
		t.Fatal(err)
	}
	if row, ok := run.Row("account", pid); !ok || row["name"] != "Fabrikam" {
		t.Fatalf("posted row %v", row)
	}
	if _, _, err := c.Create(ctx, "accounts", map[string]any{"name": "Fabrikam"}, &dataverse.WriteOptions{IDColumn: "accountid", ID: pid}); !dataverse.IsDuplicate(err) {
		t.Fatalf("posted duplicate id: %v", err)
	}
	// Validation errors come back typed and are not retried.
	before := len(run.RequestLog())
	_, _, err = c.Create(ctx, "contacts", map[string]any{"nosuchcolumn": 1}, nil)
	if !errors.As(err, &de) || de.StatusCode != 400 || !de.Permanent() || len(run.RequestLog()) != before+1 {
		t.Fatalf("bad column: %v", err)
	}
}

func TestEmulatorQueryPaging(t *testing.T) {
	run, c := startEmulator(t, emulator.Options{}, dataverse.Config{}, nil)
	ctx := context.Background()
	for i := range 23 {
		if _, err := run.Insert("contact", map[string]any{"lastname": fmt.Sprintf("Paged %02d", i), "jobtitle": "paging"}); err != nil {
			t.Fatal(err)
		}
	}
	run.ResetStats()
	q := &dataverse.Query{Select: []string{"lastname"}, Filter: "jobtitle eq 'paging'", OrderBy: []string{"lastname asc"}, PageSize: 5, Count: true}
	var names []string
	for rec, err := range c.Query(ctx, "contacts", q) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, rec.Str("lastname"))
	}
	if len(names) != 23 || names[0] != "Paged 00" || names[22] != "Paged 22" || !slices.IsSorted(names) {
		t.Fatalf("names %v", names)
	}
	if got := len(run.RequestLog()); got != 5 {
		t.Errorf("%d requests for 23 rows in pages of 5", got)
	}
	p, err := c.QueryPage(ctx, "contacts", q, "")
	if err != nil || len(p.Records) != 5 || p.Count != 23 || p.NextLink == "" {
		t.Fatalf("first page %+v %v", p, err)
	}
	p2, err := c.QueryPage(ctx, "contacts", q, p.NextLink)
	if err != nil || len(p2.Records) != 5 || p2.Records[0].Str("lastname") != "Paged 05" {
		t.Fatalf("second page %+v %v", p2, err)
	}
	// A quoted literal with an apostrophe survives the trip.
	if _, err := run.Insert("contact", map[string]any{"lastname": "O'Brien & Sons"}); err != nil {
		t.Fatal(err)
	}
	var hits int
	for rec, err := range c.Query(ctx, "contacts", &dataverse.Query{Select: []string{"lastname"}, Filter: "lastname eq " + dataverse.Quote("O'Brien & Sons")}) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Str("lastname") == "O'Brien & Sons" {
			hits++
		}
	}
	if hits != 1 {
		t.Errorf("quoted filter matched %d rows", hits)
	}
}

func TestEmulatorAssociateAndFunctions(t *testing.T) {
	run, c := startEmulator(t, emulator.Options{}, dataverse.Config{}, nil)
	ctx := context.Background()
	site, _, err := c.Create(ctx, "adx_websites", map[string]any{"adx_name": "Portal"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	role, _, err := c.Create(ctx, "adx_webroles", map[string]any{"adx_name": "Partners", "adx_websiteid@odata.bind": "/adx_websites(" + site + ")"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inv, _, err := c.Create(ctx, "adx_invitations", map[string]any{"adx_name": "Invite", "adx_type": 756150000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Associate(ctx, "adx_invitations", inv, "adx_invitation_webrole", "adx_webroles", role); err != nil {
		t.Fatal(err)
	}
	if got := run.Associated("adx_invitation_webrole", inv); !slices.Contains(got, role) {
		t.Fatalf("associated %v", got)
	}
	var roles []string
	for rec, err := range c.Query(ctx, "adx_invitations("+inv+")/adx_invitation_webrole", &dataverse.Query{Select: []string{"adx_name"}}) {
		if err != nil {
			t.Fatal(err)
		}
		roles = append(roles, rec.Str("adx_name"))
	}
	if !slices.Equal(roles, []string{"Partners"}) {
		t.Errorf("roles via navigation %v", roles)
	}
	if err := c.Disassociate(ctx, "adx_invitations", inv, "adx_invitation_webrole", role); err != nil {
		t.Fatal(err)
	}
	if got := run.Associated("adx_invitation_webrole", inv); len(got) != 0 {
		t.Fatalf("still associated %v", got)
	}

	who, err := c.WhoAmI(ctx)
	if err != nil || who.UserID != emulator.AppUserID || who.BusinessUnitID == "" || who.OrganizationID == "" {
		t.Fatalf("whoami %+v %v", who, err)
	}
	var fn dataverse.WhoAmIResponse
	if err := c.CallFunction(ctx, "WhoAmI", nil, nil, &fn); err != nil || fn.UserID != who.UserID {
		t.Fatalf("WhoAmI as function %+v %v", fn, err)
	}
	if c.Concurrency() < 1 {
		t.Errorf("concurrency %d", c.Concurrency())
	}

	// A bound action: send an email regarding the invitation.
	contact, _, err := c.Create(ctx, "contacts", map[string]any{"lastname": "Invitee", "emailaddress1": "invitee@example.com"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	email, _, err := c.Create(ctx, "emails", map[string]any{
		"subject": "You are invited", "description": "<p>Hello</p>",
		"regardingobjectid_adx_invitation_email@odata.bind": "/adx_invitations(" + inv + ")",
		"email_activity_parties": []map[string]any{
			{"partyid_systemuser@odata.bind": "/systemusers(" + emulator.AppUserID + ")", "participationtypemask": 1},
			{"partyid_contact@odata.bind": "/contacts(" + contact + ")", "participationtypemask": 2},
		},
	}, &dataverse.WriteOptions{IDColumn: "activityid"})
	if err != nil {
		t.Fatal(err)
	}
	var sent struct{ Subject string }
	if err := c.CallAction(ctx, "SendEmail", &dataverse.EntityRef{Set: "emails", ID: email}, map[string]any{"IssueSend": true}, &sent); err != nil {
		t.Fatal(err)
	}
	if out := run.Outbox(); len(out) != 1 || out[0].Subject != "You are invited" {
		t.Fatalf("outbox %+v", out)
	}
	err = c.CallAction(ctx, "SendEmail", &dataverse.EntityRef{Set: "emails", ID: email}, map[string]any{"IssueSend": true}, nil)
	if err == nil || len(run.Outbox()) != 1 {
		t.Errorf("second send of a sent email: %v, outbox %d", err, len(run.Outbox()))
	}
}

func TestEmulatorBatch(t *testing.T) {
	run, c := startEmulator(t, emulator.Options{}, dataverse.Config{}, nil)
	ctx := context.Background()
	res, err := c.Batch(ctx, &dataverse.BatchRequest{Parts: []dataverse.BatchPart{
		{ChangeSet: []dataverse.BatchOp{
			{Method: "POST", Path: "accounts", Body: map[string]any{"name": "Batch Co"}, ContentID: "1"},
			{Method: "POST", Path: "contacts", Body: map[string]any{"lastname": "Batch", "parentcustomerid_account@odata.bind": "$1"}, ContentID: "2"},
		}},
		{Op: &dataverse.BatchOp{Method: "GET", Path: "accounts?$select=name&$filter=name%20eq%20'Batch%20Co'"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := dataverse.FirstError(res); err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].EntityID == "" || res[1].EntityID == "" || res[2].StatusCode != 200 {
		t.Fatalf("results %+v", res)
	}
	contact, ok := run.Row("contact", res[1].EntityID)
	if !ok || contact["parentcustomerid"] != res[0].EntityID {
		t.Errorf("Content-ID reference not applied: %v", contact)
	}

	// Atomicity: the second op fails, so the first is rolled back.
	accountsBefore := len(run.Rows("account"))
	res, err = c.Batch(ctx, &dataverse.BatchRequest{Parts: []dataverse.BatchPart{
		{ChangeSet: []dataverse.BatchOp{
			{Method: "POST", Path: "accounts", Body: map[string]any{"name": "Rolled back"}, ContentID: "a"},
			{Method: "PATCH", Path: "contacts(" + dataverse.NewGUID() + ")", Body: map[string]any{"lastname": "x"}, Headers: http.Header{"If-Match": {"*"}}, ContentID: "b"},
		}},
		{Op: &dataverse.BatchOp{Method: "POST", Path: "accounts", Body: map[string]any{"name": "After the failure"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Rows("account")) != accountsBefore {
		t.Errorf("change set was not atomic: %d accounts, had %d", len(run.Rows("account")), accountsBefore)
	}
	if res[1].StatusCode != 404 || res[1].Err == nil || !dataverse.IsNotFound(res[1].Err) || res[0].StatusCode == 204 {
		t.Errorf("failed change set results %+v", res)
	}
	if res[2].StatusCode != http.StatusFailedDependency {
		t.Errorf("batch went on after a failure without continue-on-error: %+v", res[2])
	}

	// Continue on error: the later part runs.
	res, err = c.Batch(ctx, &dataverse.BatchRequest{ContinueOnError: true, Parts: []dataverse.BatchPart{
		{Op: &dataverse.BatchOp{Method: "PATCH", Path: "contacts(" + dataverse.NewGUID() + ")", Body: map[string]any{"lastname": "x"}, Headers: http.Header{"If-Match": {"*"}}}},
		{Op: &dataverse.BatchOp{Method: "POST", Path: "accounts", Body: map[string]any{"name": "Continued"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].StatusCode != 404 || res[1].StatusCode >= 300 || res[1].EntityID == "" {
		t.Errorf("continue-on-error results %+v", res)
	}
}

func TestEmulatorDelta(t *testing.T) {
	run, c := startEmulator(t, emulator.Options{}, dataverse.Config{}, nil)
	ctx := context.Background()
	keep, _ := run.Insert("account", map[string]any{"name": "Keep"})
	gone, _ := run.Insert("account", map[string]any{"name": "Gone"})
	first, err := c.Delta(ctx, "accounts", []string{"name"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Changed) < 2 || len(first.Deleted) != 0 || first.DeltaLink == "" {
		t.Fatalf("initial %+v", first)
	}
	if _, err := c.Update(ctx, "accounts", keep, map[string]any{"name": "Kept"}, nil); err != nil {
		t.Fatal(err)
	}
	added, _, err := c.Create(ctx, "accounts", map[string]any{"name": "Added"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "accounts", gone, nil); err != nil {
		t.Fatal(err)
	}
	next, err := c.Delta(ctx, "accounts", []string{"name"}, first.DeltaLink)
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, r := range next.Changed {
		changed = append(changed, r.ID("accountid"))
	}
	slices.Sort(changed)
	want := []string{keep, added}
	slices.Sort(want)
	if !slices.Equal(changed, want) || !slices.Equal(next.Deleted, []string{gone}) || next.DeltaLink == first.DeltaLink {
		t.Fatalf("delta changed %v deleted %v", changed, next.Deleted)
	}
	// Nothing since: empty delta.
	again, err := c.Delta(ctx, "accounts", nil, next.DeltaLink)
	if err != nil || len(again.Changed)+len(again.Deleted) != 0 {
		t.Fatalf("quiet delta %+v %v", again, err)
	}
	_, err = c.Delta(ctx, "accounts", nil, run.APIURL+"accounts?$select=name&$deltatoken=999999999%2101%2f01%2f2020%2000%3a00%3a00")
	if !dataverse.IsDeltaTokenExpired(err) {
		t.Fatalf("bad token: %v", err)
	}
}

// fakeClock is shared by the emulator and the client's retry waits, so a
// Retry-After is "waited" by moving time instead of sleeping.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func (f *fakeClock) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.waits = append(f.waits, d)
	f.now = f.now.Add(d)
	f.mu.Unlock()
	return ctx.Err()
}

func TestEmulatorThrottleRetryAfter(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var mu sync.Mutex
	var throttles []time.Duration
	_, c := startEmulator(t,
		emulator.Options{Now: clock.Now, Limits: throttle.Limits{Window: 2 * time.Second, MaxRequests: 3}},
		dataverse.Config{MaxConcurrency: 1},
		&dataverse.Options{RetryDelay: 30 * time.Second, MaxRetryDelay: 30 * time.Second, RateLimitWindow: -1, Hooks: dataverse.Hooks{
			OnThrottle: func(_ dataverse.RequestInfo, d time.Duration) {
				mu.Lock()
				throttles = append(throttles, d)
				mu.Unlock()
			},
		}})
	dataverse.SetClockForTest(c, clock.Now, clock.Sleep)
	ctx := context.Background()
	for i := range 4 {
		if _, err := c.WhoAmI(ctx); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if len(throttles) != 1 {
		t.Fatalf("throttles %v", throttles)
	}
	if throttles[0] != 2*time.Second {
		t.Errorf("emulator Retry-After %v, want 2s", throttles[0])
	}
	if !slices.Contains(clock.waits, throttles[0]) {
		t.Errorf("client waited %v, server asked for %v", clock.waits, throttles[0])
	}
}

func TestEmulatorThrottleCancelDuringWait(t *testing.T) {
	_, c := startEmulator(t, emulator.Options{Limits: throttle.Limits{Window: time.Hour, MaxRequests: 1}}, dataverse.Config{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := c.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	var once sync.Once
	c2, _ := dataverse.New(dataverse.Config{URL: c.APIURL()[:len(c.APIURL())-len("/api/data/v9.2/")]}, nil,
		&dataverse.Options{Hooks: dataverse.Hooks{OnRetry: func(dataverse.RequestInfo, time.Duration) { once.Do(func() { close(waiting) }) }}})
	done := make(chan error, 1)
	go func() { _, err := c2.WhoAmI(ctx); done <- err }()
	<-waiting
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestEmulatorPacingAvoids429(t *testing.T) {
	// Sequential: the pacer spreads requests over the window as the remaining
	// budget shrinks, so none is refused.
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var throttled atomic.Int32
	run, c := startEmulator(t,
		emulator.Options{Now: clock.Now, Limits: throttle.Limits{Window: 2 * time.Second, MaxRequests: 5}},
		dataverse.Config{MaxConcurrency: 1},
		&dataverse.Options{RateLimitWindow: 2 * time.Second, Hooks: dataverse.Hooks{
			OnThrottle: func(dataverse.RequestInfo, time.Duration) { throttled.Add(1) },
		}})
	dataverse.SetClockForTest(c, clock.Now, clock.Sleep)
	ctx := context.Background()
	for i := range 30 {
		if _, err := c.WhoAmI(ctx); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	elapsed := clock.Now().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t.Logf("30 requests at 5 per 2s took %v of emulated time, %d throttled; waits %v", elapsed, throttled.Load(), clock.waits)
	if throttled.Load() != 0 {
		t.Errorf("%d requests were throttled", throttled.Load())
	}
	// Near the limit: 30 requests need at least (30-5)/5 windows.
	if limit := 10 * time.Second; elapsed < limit || elapsed > limit*3/2 {
		t.Errorf("emulated time %v, want about %v", elapsed, limit)
	}
	if st := run.Stats(); st.Throttled != 0 {
		t.Errorf("emulator stats %+v", st)
	}

	// Execution time: each retrieve costs 10ms of a 200ms-per-2s budget.
	clock2 := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	runT, cT := startEmulator(t,
		emulator.Options{Now: clock2.Now, Costs: emulator.Costs{Retrieve: 10 * time.Millisecond},
			Limits: throttle.Limits{Window: 2 * time.Second, MaxRequests: 10000, MaxExecution: 200 * time.Millisecond}},
		dataverse.Config{MaxConcurrency: 1},
		&dataverse.Options{RateLimitWindow: 2 * time.Second, Hooks: dataverse.Hooks{
			OnThrottle: func(dataverse.RequestInfo, time.Duration) { throttled.Add(1) },
		}})
	dataverse.SetClockForTest(cT, clock2.Now, clock2.Sleep)
	cid, err := runT.Insert("contact", map[string]any{"lastname": "Costly"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		if _, err := cT.Retrieve(ctx, "contacts", cid, &dataverse.Query{Select: []string{"lastname"}}); err != nil {
			t.Fatalf("retrieve %d: %v", i, err)
		}
	}
	elapsedT := clock2.Now().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t.Logf("60 retrieves of 10ms at 200ms per 2s took %v of emulated time, %d throttled", elapsedT, throttled.Load())
	if throttled.Load() != 0 || elapsedT < 4*time.Second || elapsedT > 6*time.Second {
		t.Errorf("execution-time pacing: %v, %d throttled, stats %+v", elapsedT, throttled.Load(), runT.Stats())
	}

	// Concurrent: the semaphore follows x-ms-dop-hint, staying under the
	// concurrency limit.
	run2, c2 := startEmulator(t, emulator.Options{Limits: throttle.Limits{MaxConcurrent: 3, DOPHint: 3}, Latency: 2 * time.Millisecond},
		dataverse.Config{}, &dataverse.Options{Hooks: dataverse.Hooks{
			OnThrottle: func(dataverse.RequestInfo, time.Duration) { throttled.Add(1) },
		}})
	if _, err := c2.WhoAmI(ctx); err != nil { // learns the hint
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			if _, err := c2.WhoAmI(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if c2.Concurrency() != 3 || throttled.Load() != 0 {
		t.Errorf("concurrency %d, %d throttled, stats %+v", c2.Concurrency(), throttled.Load(), run2.Stats())
	}
}

func TestEmulatorTLSWithCredential(t *testing.T) {
	run := serveEmulator(t, emulator.Options{}, true)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: run.hs.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	hc, err := dataverse.NewHTTPClient(caFile)
	if err != nil {
		t.Fatal(err)
	}
	authority := run.OrgURL + "/"
	cred, err := dataverse.NewCredential(dataverse.AuthConfig{
		Method: "client_secret", TenantID: emulator.DefaultTenantID, ClientID: emulator.DefaultClientID, ClientSecret: emulator.DefaultClientSecret,
		AuthorityHost: authority, DisableInstanceDiscovery: true,
	}, hc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dataverse.New(dataverse.Config{URL: run.OrgURL, UserAgent: "portal-invite-connector/test"}, cred, &dataverse.Options{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	who, err := c.WhoAmI(context.Background())
	if err != nil || who.UserID != emulator.AppUserID {
		t.Fatalf("whoami %+v %v", who, err)
	}
	// A wrong secret is a 401-free failure at the token endpoint, not retried forever.
	bad, _ := dataverse.NewCredential(dataverse.AuthConfig{
		Method: "client_secret", TenantID: emulator.DefaultTenantID, ClientID: emulator.DefaultClientID, ClientSecret: "wrong",
		AuthorityHost: authority, DisableInstanceDiscovery: true,
	}, hc)
	c2, _ := dataverse.New(dataverse.Config{URL: run.OrgURL}, bad, &dataverse.Options{HTTPClient: hc})
	if _, err := c2.WhoAmI(context.Background()); err == nil {
		t.Fatal("wrong secret accepted")
	}
	// Without credentials the API answers 401, which is not retried.
	anon, _ := dataverse.New(dataverse.Config{URL: run.OrgURL}, nil, &dataverse.Options{HTTPClient: hc})
	before := len(run.RequestLog())
	if _, err := anon.WhoAmI(context.Background()); !errors.Is(err, dataverse.ErrUnauthorized) {
		t.Fatalf("anonymous: %v", err)
	}
	if n := len(run.RequestLog()) - before; n != 1 {
		t.Errorf("401 sent %d times", n)
	}
}

func BenchmarkRetrieveEmulator(b *testing.B) {
	run, c := startEmulator(b, emulator.Options{}, dataverse.Config{}, nil)
	id, err := run.Insert("contact", map[string]any{"fullname": "Avery Howard", "lastname": "Howard", "emailaddress1": "avery@example.com"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	b.Run("client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Retrieve(ctx, "contacts", id, &dataverse.Query{Select: []string{"fullname", "emailaddress1"}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, decode := range []bool{false, true} {
		name := "net_http"
		if decode {
			name = "net_http_decode"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			u := run.APIURL + "contacts(" + id + ")?$select=fullname,emailaddress1"
			for b.Loop() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				// The same OData headers the client sends, so the server does
				// the same work and the difference is the client's own.
				req.Header.Set("Accept", "application/json")
				req.Header.Set("OData-MaxVersion", "4.0")
				req.Header.Set("OData-Version", "4.0")
				req.Header.Set("If-None-Match", "null")
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if decode {
					var rec map[string]any
					if err := json.Unmarshal(body, &rec); err != nil {
						b.Fatal(err)
					}
				}
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}

// loseFirst lets the emulator execute the first request that matches, then
// closes the connection instead of answering: the client cannot know whether
// the write happened.
func loseFirst(t *testing.T, h http.Handler, match func(*http.Request) bool) http.Handler {
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lose := false
		if match(r) {
			once.Do(func() { lose = true })
		}
		if !lose {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close()
	})
}

func TestEmulatorCreateAfterLostResponse(t *testing.T) {
	srv := emulator.New(emulator.Options{Auth: emulator.AuthOptions{Disabled: true}})
	h := loseFirst(t, srv, func(r *http.Request) bool { return r.Method == http.MethodPatch || r.Method == http.MethodPost })
	h = loseFirst(t, h, func(r *http.Request) bool {
		return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/accounts")
	})
	h = loseFirst(t, h, func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "SendEmail") })
	hs := httptest.NewServer(h)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	var retries atomic.Int32
	c, err := dataverse.New(dataverse.Config{URL: hs.URL}, nil, &dataverse.Options{
		RetryDelay: time.Millisecond, Hooks: dataverse.Hooks{OnRetry: func(dataverse.RequestInfo, time.Duration) { retries.Add(1) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Create-only upsert: the retry meets the row the lost attempt wrote.
	id, rec, err := c.Create(ctx, "contacts", map[string]any{"lastname": "Once", "emailaddress1": "once@example.com"},
		&dataverse.WriteOptions{Return: true, Select: []string{"lastname"}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Str("lastname") != "Once" || retries.Load() != 1 {
		t.Errorf("rec %v retries %d", rec, retries.Load())
	}
	var n int
	for _, r := range srv.Rows("contact") {
		if r["lastname"] == "Once" {
			n++
			if r["contactid"] != id {
				t.Errorf("row id %v, Create returned %s", r["contactid"], id)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d contacts after a lost create response", n)
	}

	// POST with the key in the body: the retry's duplicate answer is success.
	aid, _, err := c.Create(ctx, "accounts", map[string]any{"name": "Once Ltd"}, &dataverse.WriteOptions{IDColumn: "accountid"})
	if err != nil {
		t.Fatal(err)
	}
	n = 0
	for _, r := range srv.Rows("account") {
		if r["name"] == "Once Ltd" {
			n++
		}
	}
	if _, ok := srv.Row("account", aid); !ok || n != 1 || retries.Load() != 2 {
		t.Fatalf("%d accounts, retries %d", n, retries.Load())
	}

	// An action with a lost answer is not sent again.
	email, _, err := c.Create(ctx, "emails", map[string]any{
		"subject": "Once",
		"email_activity_parties": []map[string]any{
			{"partyid_systemuser@odata.bind": "/systemusers(" + emulator.AppUserID + ")", "participationtypemask": 1},
			{"partyid_contact@odata.bind": "/contacts(" + id + ")", "participationtypemask": 2},
		},
	}, &dataverse.WriteOptions{IDColumn: "activityid"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.CallAction(ctx, "SendEmail", &dataverse.EntityRef{Set: "emails", ID: email}, map[string]any{"IssueSend": true}, nil)
	if err == nil || !dataverse.IsTransient(err) {
		t.Fatalf("lost action: %v", err)
	}
	if out := srv.Outbox(); len(out) != 1 {
		t.Errorf("email sent %d times", len(out))
	}
}

func TestEmulatorWorkloadUnderFaults(t *testing.T) {
	run, c := startEmulator(t, emulator.Options{Faults: emulator.FaultOptions{Seed: 7, Rules: []emulator.FaultRule{
		{Throttle: 0.15, Unavailable: 0.1, Reset: 0.1, RetryAfter: time.Second},
	}}}, dataverse.Config{MaxRetries: 10}, &dataverse.Options{RetryDelay: time.Millisecond})
	w := &recordedWaits{}
	dataverse.SetSleepForTest(c, w.sleep)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			id, _, err := c.Create(ctx, "contacts", map[string]any{"lastname": fmt.Sprintf("Fault %02d", i), "jobtitle": "faulty"}, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := c.Update(ctx, "contacts", id, map[string]any{"firstname": "Updated"}, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var n int
	for rec, err := range c.Query(ctx, "contacts", &dataverse.Query{Select: []string{"firstname"}, Filter: "jobtitle eq 'faulty'", PageSize: 7}) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Str("firstname") != "Updated" {
			t.Errorf("row not updated: %v", rec)
		}
		n++
	}
	st := run.Stats()
	if n != 40 || st.Faults == 0 {
		t.Errorf("%d rows (want 40), stats %+v", n, st)
	}
	for _, d := range w.all() {
		if d == time.Second {
			return // at least one injected 429's Retry-After was honoured
		}
	}
	t.Errorf("no wait of the injected Retry-After (1s) among %v", w.all())
}

type recordedWaits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *recordedWaits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *recordedWaits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.d)
}

func TestEmulatorRetrieveByKey(t *testing.T) {
	run, c := startEmulator(t, emulator.Options{}, dataverse.Config{}, nil)
	if err := run.DefineKey("contact", "contact_email", "emailaddress1"); err != nil {
		t.Fatal(err)
	}
	if err := run.DefineKey("contact", "contact_name_number", "lastname", "jobtitle"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, _, err := c.Create(ctx, "contacts", map[string]any{"lastname": "O'Neil", "emailaddress1": "o'neil+tag@example.com", "jobtitle": "Buyer"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.RetrieveByKey(ctx, "contacts", dataverse.Key{"emailaddress1": "o'neil+tag@example.com"}, &dataverse.Query{Select: []string{"lastname"}})
	if err != nil || rec.ID("contactid") != id || rec.Str("lastname") != "O'Neil" {
		t.Fatalf("by email: %v %v", rec, err)
	}
	rec, err = c.RetrieveByKey(ctx, "contacts", dataverse.Key{"lastname": "O'Neil", "jobtitle": "Buyer"}, nil)
	if err != nil || rec.ID("contactid") != id {
		t.Fatalf("by compound key: %v %v", rec, err)
	}
	_, err = c.RetrieveByKey(ctx, "contacts", dataverse.Key{"emailaddress1": "nobody@example.com"}, nil)
	if !dataverse.IsNotFound(err) {
		t.Fatalf("missing key: %v", err)
	}
	// A second row with the same key value is a duplicate.
	_, _, err = c.Create(ctx, "contacts", map[string]any{"lastname": "Other", "emailaddress1": "o'neil+tag@example.com"}, nil)
	if !dataverse.IsDuplicate(err) {
		t.Fatalf("duplicate alternate key: %v", err)
	}
}

// The emulator as `connector dev` runs it: StartTLS with its own CA, token
// endpoint and an application user.
func TestEmulatorStartTLS(t *testing.T) {
	run, err := emulator.StartTLS(emulator.Options{}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Close() })
	hc, err := dataverse.NewHTTPClient(run.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := dataverse.NewCredential(dataverse.AuthConfig{
		Method: "client_secret", TenantID: run.TenantID, ClientID: run.ClientID, ClientSecret: run.ClientSecret,
		AuthorityHost: run.AuthorityHost, DisableInstanceDiscovery: true,
	}, hc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dataverse.New(dataverse.Config{URL: run.OrgURL}, cred, &dataverse.Options{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	if c.APIURL() != run.APIURL {
		t.Errorf("APIURL %s, emulator %s", c.APIURL(), run.APIURL)
	}
	ctx := context.Background()
	id, _, err := c.Create(ctx, "contacts", map[string]any{"lastname": "Secure"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.Retrieve(ctx, "contacts", id, &dataverse.Query{Select: []string{"lastname"}})
	if err != nil || rec.Str("lastname") != "Secure" {
		t.Fatalf("retrieve %v %v", rec, err)
	}
}
