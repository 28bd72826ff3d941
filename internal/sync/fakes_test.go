package sync

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/redistest"
)

var testCols = invite.DefaultContactColumns

// fakeDV is an in-memory stand-in for the Web API client: contacts with a
// row version, change tracking by version, and call counters.
type fakeDV struct {
	mu       stdsync.Mutex
	rows     map[string]dataverse.Record
	version  int
	versions map[string]int
	calls    map[string]int
	// failRetrieve, when set, is returned by Retrieve.
	failRetrieve error
	// expireLinks makes Delta with a link fail as expired.
	expireLinks bool
	queries     []string // $filter of each QueryPage
}

func newFakeDV() *fakeDV {
	return &fakeDV{rows: map[string]dataverse.Record{}, versions: map[string]int{}, calls: map[string]int{}}
}

func (f *fakeDV) set(id string, status int, portal, roles string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version++
	f.versions[id] = f.version
	f.rows[id] = dataverse.Record{
		"contactid": id, testCols.Status: float64(status), testCols.Portal: portal, testCols.Roles: roles,
		"_modifiedby_value": "6c3a0d53-77d4-ee11-9079-000d3a3b6e21",
	}
}

func (f *fakeDV) status(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rows[id].Int(testCols.Status)
}

func (f *fakeDV) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeDV) withETag(id string) dataverse.Record {
	r := dataverse.Record{}
	for k, v := range f.rows[id] {
		r[k] = v
	}
	r["@odata.etag"] = fmt.Sprintf("W/\"%d\"", f.versions[id])
	return r
}

func (f *fakeDV) Retrieve(_ context.Context, set, id string, _ *dataverse.Query) (dataverse.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["retrieve"]++
	if f.failRetrieve != nil {
		return nil, f.failRetrieve
	}
	if _, ok := f.rows[id]; !ok {
		return nil, &dataverse.Error{StatusCode: 404, Code: "0x80040217", Message: "contact With Id = " + id + " Does Not Exist"}
	}
	return f.withETag(id), nil
}

func (f *fakeDV) QueryPage(_ context.Context, set string, q *dataverse.Query, next string) (*dataverse.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["query"]++
	f.queries = append(f.queries, q.Filter)
	want, _ := strconv.Atoi(strings.TrimPrefix(q.Filter, testCols.Status+" eq "))
	p := &dataverse.Page{Count: -1}
	for id, r := range f.rows {
		if r.Int(testCols.Status) == want {
			p.Records = append(p.Records, f.withETag(id))
		}
	}
	return p, nil
}

func (f *fakeDV) Delta(_ context.Context, set string, cols []string, link string) (*dataverse.DeltaResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["delta"]++
	since := 0
	if link != "" {
		if f.expireLinks {
			return nil, &dataverse.Error{StatusCode: 410, Message: "expired version token"}
		}
		since, _ = strconv.Atoi(strings.TrimPrefix(link, "v:"))
	}
	res := &dataverse.DeltaResult{DeltaLink: "v:" + strconv.Itoa(f.version)}
	for id := range f.rows {
		if f.versions[id] > since {
			res.Changed = append(res.Changed, f.withETag(id))
		}
	}
	return res, nil
}

// fakeInviter records Invite calls and writes Sent back like the real
// service; errFor scripts failures per call.
type fakeInviter struct {
	dv      *fakeDV
	mu      stdsync.Mutex
	calls   []invite.InviteRequest
	failed  map[string]string
	errFor  func(n int, req invite.InviteRequest) error // n = 1-based call number for this contact
	perID   map[string]int
	block   chan struct{} // when set, Invite waits for it (or ctx)
	markErr error
}

func newFakeInviter(dv *fakeDV) *fakeInviter {
	return &fakeInviter{dv: dv, failed: map[string]string{}, perID: map[string]int{}}
}

func (f *fakeInviter) Invite(ctx context.Context, req invite.InviteRequest) (*invite.InviteResult, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	f.perID[req.ContactID]++
	n := f.perID[req.ContactID]
	errFor, block := f.errFor, f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if errFor != nil {
		if err := errFor(n, req); err != nil {
			return nil, err
		}
	}
	f.dv.mu.Lock()
	f.dv.version++
	f.dv.versions[req.ContactID] = f.dv.version
	f.dv.rows[req.ContactID][testCols.Status] = float64(testCols.Sent)
	f.dv.mu.Unlock()
	return &invite.InviteResult{Created: true, EmailSent: true}, nil
}

func (f *fakeInviter) MarkFailed(_ context.Context, id, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.markErr != nil {
		return f.markErr
	}
	f.failed[id] = reason
	f.dv.mu.Lock()
	f.dv.rows[id][testCols.Status] = float64(testCols.Failed)
	f.dv.mu.Unlock()
	return nil
}

func (f *fakeInviter) invites() []invite.InviteRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]invite.InviteRequest(nil), f.calls...)
}

func (f *fakeInviter) reason(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed[id]
}

// testLogger writes to the test log only with -v, to keep failures readable.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() || os.Getenv("SYNC_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type rig struct {
	srv *redistest.Server
	rdb redis.UniversalClient
	dv  *fakeDV
	inv *fakeInviter
}

func newRig(t *testing.T) *rig {
	t.Helper()
	srv := redistest.Start(t)
	dv := newFakeDV()
	return &rig{srv: srv, rdb: srv.Client(t), dv: dv, inv: newFakeInviter(dv)}
}

// intake builds an Intake on the rig with test-friendly timings; mod
// adjusts the config.
func (r *rig) intake(t *testing.T, mod func(*Config)) *Intake {
	t.Helper()
	cfg := Config{
		Redis: r.rdb, KeyPrefix: "t:", Invites: r.inv, Dataverse: r.dv, Contact: testCols,
		DefaultPortal: "Contoso Partner Portal",
		Webhook:       WebhookConfig{Enabled: true, AuthType: AuthWebhookKey, AuthValue: "s3cret"},
		Workers:       2, MaxAttempts: 3, Lease: 300 * time.Millisecond,
		RetryDelay: 20 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond,
		Logger: testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	i, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// streamLen is XLEN of the work stream.
func streamLen(t *testing.T, i *Intake) int64 {
	t.Helper()
	n, err := i.rdb.XLen(context.Background(), i.keys.stream).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
