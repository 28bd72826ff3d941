package dataverse

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// seen is a request as the fake server received it.
type seen struct {
	Method, Path, RawPath, Query string
	Header                       http.Header
	Body                         string
}

// fake is a scripted Dataverse: handle gets the zero-based request number.
type fake struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []seen
	handle func(w http.ResponseWriter, r *http.Request, n int)
}

func newFake(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int)) *fake {
	t.Helper()
	f := &fake{handle: handle}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		n := len(f.reqs)
		f.reqs = append(f.reqs, seen{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: string(b)})
		f.mu.Unlock()
		f.handle(w, r, n)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

func (f *fake) count() int { return len(f.requests()) }

// waits records the client's waits between attempts instead of sleeping, so
// retry timing is asserted exactly without wall-clock bounds.
// The client's clock moves by exactly the waits.
type waits struct {
	mu  sync.Mutex
	d   []time.Duration
	now time.Time
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.now = w.now.Add(d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

// staticCred hands out a fixed token and counts calls.
type staticCred struct {
	token string
	calls atomic.Int32
}

func (s *staticCred) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	s.calls.Add(1)
	return azcore.AccessToken{Token: s.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// testClient points a Client at f with fast, recorded retry waits.
func testClient(t *testing.T, f *fake, cfg Config, opts *Options) (*Client, *waits) {
	t.Helper()
	cfg.URL = f.srv.URL
	if opts == nil {
		opts = &Options{}
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = f.srv.Client()
	}
	c, err := New(cfg, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	w := &waits{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.sleep = w.sleep
	c.now = w.clock
	return c, w
}

// recorded returns a testdata body with the documentation's
// "[Organization URI]" placeholder replaced by base.
func recorded(t testing.TB, name, base string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(string(b), "[Organization URI]", base))
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// dropConnection reads the request and closes the connection without an
// answer: the outcome is unknown to the client.
func dropConnection(t *testing.T, w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		t.Error("response writer cannot hijack")
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	conn.Close()
}
