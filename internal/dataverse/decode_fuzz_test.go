package dataverse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The fuzz targets here feed arbitrary response bytes to the client through
// its public methods: a scripted transport answers every request with the
// current input, and the client runs its whole request path (resty, status
// handling, retries, body reading, decoding) on it. A loopback server would
// add nothing the client decodes but would cost most of each execution, and
// the fuzzer needs thousands per second. They check the client's contracts,
// not only that it does not panic. Seeds are the recorded bodies in
// testdata/ plus testdata/fuzz/<target>/.

// fuzzOrigin is the environment the fuzz clients talk to.
const fuzzOrigin = "https://org.crm.dynamics.com"

// fuzzTransport answers every request with one scripted response, counts
// requests, and fails the test when the client sends one anywhere but the
// environment: a decoded link must never carry the token away.
type fuzzTransport struct {
	t        *testing.T
	status   int
	ctype    string
	body     []byte
	requests int
	limit    int                // cancel after this many requests (pagers that loop on their own link)
	cancel   context.CancelFunc // of the current call
}

func (tr *fuzzTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	if origin := r.URL.Scheme + "://" + r.URL.Host; origin != fuzzOrigin {
		tr.t.Errorf("request to %s (%s), not the environment %s", origin, r.URL, fuzzOrigin)
		return nil, errors.New("request to a foreign host")
	}
	if r.Header.Get("Authorization") != "Bearer fuzz-token" {
		tr.t.Errorf("request to %s without the bearer token", r.URL)
	}
	if err := r.Context().Err(); err != nil {
		return nil, err // as net/http's transport does
	}
	tr.requests++
	if tr.limit > 0 && tr.requests >= tr.limit && tr.cancel != nil {
		tr.cancel()
	}
	h := http.Header{}
	if tr.ctype != "" {
		h.Set("Content-Type", tr.ctype)
	}
	return &http.Response{StatusCode: tr.status, Status: strconv.Itoa(tr.status) + " " + http.StatusText(tr.status),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Request: r,
		Body: io.NopCloser(bytes.NewReader(tr.body)), ContentLength: int64(len(tr.body))}, nil
}

// script sets the response for the next call and returns a context the
// transport cancels once limit requests arrived (0 = never).
func (tr *fuzzTransport) script(status int, ctype string, body []byte, limit int) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	tr.status, tr.ctype, tr.body, tr.requests, tr.limit, tr.cancel = status, ctype, body, 0, limit, cancel
	return ctx, cancel
}

// fuzzClient is a Client on a fresh fuzzTransport that makes one attempt
// per call and sends a bearer token.
func fuzzClient(t *testing.T) (*Client, *fuzzTransport) {
	t.Helper()
	tr := &fuzzTransport{t: t}
	c, err := New(Config{URL: fuzzOrigin, MaxRetries: -1}, &staticCred{token: "fuzz-token"},
		&Options{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	c.sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	return c, tr
}

// addRecorded seeds f with the testdata files, which use the documentation's
// "[Organization URI]" placeholder; the targets replace it with fuzzOrigin
// so recorded links stay on the environment.
func addRecorded(f *testing.F, add func(name string, body []byte)) {
	f.Helper()
	for _, name := range []string{"entity_with_annotations.json", "collection_nextlink.json", "delta_initial.json",
		"delta_response.json", "error.json", "error_annotations.json", "error_throttle.json", "error_gateway.html",
		"batch_response.txt", "batch_response_error.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		add(name, b)
	}
}

const orgPlaceholder = "[Organization URI]"

// fuzzStatus maps any number onto a final HTTP status (200-599), keeping
// those already in range.
func fuzzStatus(raw uint16) int {
	if raw >= 200 && raw <= 599 {
		return int(raw)
	}
	return 200 + int(raw)%400
}

// FuzzODataResponse decodes one response body as a row (Retrieve), a page
// (QueryPage), a paged query that follows @odata.nextLink (Query), a
// change-tracking read (Delta) and, for statuses of 400 and above, as an
// OData error, plus an error envelope built from code and message.
func FuzzODataResponse(f *testing.F) {
	addRecorded(f, func(name string, b []byte) {
		status := uint16(200)
		if strings.HasPrefix(name, "error") {
			status = 404
		}
		f.Add(status, b, "0x80040217", "account With Id = 9f3162f6-804a-e611-80d1-00155d4333fa Does Not Exist")
	})
	f.Add(uint16(429), []byte(`{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit"}}`), "0x80072322", "throttled")
	f.Add(uint16(200), []byte(`{"value":[],"@odata.nextLink":"[Organization URI]/api/data/v9.2/contacts?$skiptoken=1"}`), "", "")
	f.Add(uint16(200), []byte(`{"value":[{"a":1}],"@odata.nextLink":"https://evil.example/api/data/v9.2/contacts"}`), "", "")
	f.Add(uint16(200), []byte(`{"value":[{"id":"x","reason":"deleted"}],"@odata.deltaLink":"contacts?$deltatoken=1"}`), "", "")
	f.Add(uint16(500), []byte(strings.Repeat("é", 300)), "-2147220969", "")

	f.Fuzz(func(t *testing.T, rawStatus uint16, body []byte, code, message string) {
		status := fuzzStatus(rawStatus)
		body = bytes.ReplaceAll(body, []byte(orgPlaceholder), []byte(fuzzOrigin))
		c, s := fuzzClient(t)
		q := &Query{Select: []string{"fullname"}}
		id := "5b9e7b3a-71e7-eb11-bacb-000d3a8b1a32"

		// Retrieve: one row.
		ctx, cancel := s.script(status, "application/json; odata.metadata=minimal", body, 0)
		rec, err := c.Retrieve(ctx, "contacts", id, q)
		cancel()
		if status >= 400 {
			checkError(t, "retrieve", err, status, body)
		} else {
			var want map[string]any
			werr := json.Unmarshal(body, &want)
			switch {
			case isEmptyBody(body):
				if rec != nil || err != nil {
					t.Errorf("retrieve of an empty body = %v, %v; want nil, nil", rec, err)
				}
			case (werr == nil) != (err == nil):
				t.Errorf("retrieve: err = %v, but encoding/json says %v", err, werr)
			case err == nil && !reflect.DeepEqual(map[string]any(rec), want):
				t.Errorf("retrieve decoded %v, encoding/json %v", rec, want)
			}
			checkDecodeError(t, "retrieve", err)
		}

		// QueryPage: one page.
		ctx, cancel = s.script(status, "application/json", body, 0)
		page, err := c.QueryPage(ctx, "contacts", q, "")
		cancel()
		var want collection
		werr := json.Unmarshal(body, &want)
		if status >= 400 {
			checkError(t, "query page", err, status, body)
		} else {
			if (werr == nil) != (err == nil) {
				t.Errorf("query page: err = %v, but encoding/json says %v", err, werr)
			}
			if err == nil {
				wantCount := -1
				if want.Count != nil {
					wantCount = *want.Count
				}
				if len(page.Records) != len(want.Value) || page.NextLink != want.NextLink || page.Count != wantCount {
					t.Errorf("page = %d records, next %q, count %d; want %d, %q, %d",
						len(page.Records), page.NextLink, page.Count, len(want.Value), want.NextLink, wantCount)
				}
			}
			checkDecodeError(t, "query page", err)
		}

		// Query: follows the page's own next link until the server stops it.
		const maxPages = 3
		ctx, cancel = s.script(status, "application/json", body, maxPages)
		rows := 0
		var qerr error
		for r, err := range c.Query(ctx, "contacts", q) {
			if err != nil {
				if r != nil {
					t.Errorf("query yielded a row with error %v", err)
				}
				qerr = err
				break
			}
			rows++
		}
		cancel()
		n := s.requests
		if n > maxPages+1 {
			t.Errorf("query kept requesting after its context ended: %d requests", n)
		}
		if status >= 400 {
			checkError(t, "query", qerr, status, body)
		} else if werr == nil {
			next := want.NextLink
			switch {
			case next == "":
				if qerr != nil || n != 1 || rows != len(want.Value) {
					t.Errorf("query of one page: %d rows in %d requests, err %v; want %d rows in 1", rows, n, qerr, len(want.Value))
				}
			case offHost(next, fuzzOrigin):
				if qerr == nil || n != 1 {
					t.Errorf("next link %q on another host: %d requests, err %v; want an error after 1", next, n, qerr)
				}
			}
		}

		// Delta: change tracking, pages followed to the delta link.
		ctx, cancel = s.script(status, "application/json", body, maxPages)
		res, err := c.Delta(ctx, "accounts", []string{"name"}, "")
		cancel()
		if status >= 400 {
			checkError(t, "delta", err, status, body)
		} else if err == nil {
			if res.DeltaLink == "" {
				t.Error("delta succeeded without a delta link")
			}
			for _, d := range res.Deleted {
				if d == "" {
					t.Error("delta reported an empty deleted id")
				}
			}
			if werr == nil && want.NextLink == "" && len(res.Changed)+len(res.Deleted) > len(want.Value) {
				t.Errorf("delta: %d changed + %d deleted from a page of %d", len(res.Changed), len(res.Deleted), len(want.Value))
			}
		}

		// An OData error envelope built from code and message decodes to them.
		if status >= 400 && utf8.ValidString(code) && utf8.ValidString(message) {
			env, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message}})
			ctx, cancel = s.script(status, "application/json", env, 0)
			_, err := c.Retrieve(ctx, "contacts", id, q)
			cancel()
			checkError(t, "retrieve envelope", err, status, env)
			var e *Error
			if errors.As(err, &e) && (e.Code != code || e.Message != message) {
				t.Errorf("envelope decoded to code %q message %q; want %q %q", e.Code, e.Message, code, message)
			}
		}
	})
}

// checkError asserts the contract of a failed status: an *Error carrying the
// status, whose text names it, and whose message stays valid UTF-8 when the
// body was.
func checkError(t *testing.T, op string, err error, status int, body []byte) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("%s: status %d gave %v, want *Error", op, status, err)
		return
	}
	if e.StatusCode != status {
		t.Errorf("%s: *Error.StatusCode = %d, want %d", op, e.StatusCode, status)
	}
	if !strings.Contains(e.Error(), strconv.Itoa(status)) {
		t.Errorf("%s: %q does not name status %d", op, e.Error(), status)
	}
	if utf8.Valid(body) && !utf8.ValidString(e.Message) {
		t.Errorf("%s: message is not valid UTF-8 although the body was: %q", op, e.Message)
	}
	// Run the classifiers too: they parse the code and read the message.
	_, _, _, _ = IsDeltaTokenExpired(err), IsDuplicate(err), IsThrottled(err), IsTransient(err)
}

// checkDecodeError asserts that a 2xx body the client cannot decode is not
// reported as a Dataverse *Error, which callers would classify by status.
func checkDecodeError(t *testing.T, op string, err error) {
	t.Helper()
	var e *Error
	if err != nil && errors.As(err, &e) {
		t.Errorf("%s: undecodable success body reported as *Error %v", op, err)
	}
}

// offHost reports whether link is absolute and not on origin.
func offHost(link, origin string) bool {
	return (strings.Contains(link, "://") || strings.HasPrefix(link, "//")) && !strings.HasPrefix(link, origin+"/")
}

// FuzzBatchResponse decodes a $batch response (status, Content-Type and
// multipart body) for a batch of a two-op change set and two single ops,
// the shape of the recorded responses.
func FuzzBatchResponse(f *testing.F) {
	addRecorded(f, func(name string, b []byte) {
		if !strings.HasPrefix(name, "batch_") {
			return
		}
		boundary, _, _ := strings.Cut(strings.TrimPrefix(string(b), "--"), "\n")
		boundary = strings.TrimSuffix(boundary, "\r")
		status := uint16(200)
		if strings.Contains(name, "error") {
			status = 400
		}
		f.Add(status, "multipart/mixed; boundary="+boundary, b, false)
		f.Add(status, "multipart/mixed; boundary="+boundary, b, true)
	})
	f.Add(uint16(200), "multipart/mixed; boundary=b", []byte("--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c--\r\n--b--\r\n"), false)
	f.Add(uint16(429), "application/json", []byte(`{"error":{"code":"0x80072322","message":"throttled"}}`), false)
	f.Add(uint16(200), "text/plain", []byte("not a batch"), true)

	f.Fuzz(func(t *testing.T, rawStatus uint16, contentType string, body []byte, continueOnError bool) {
		status := fuzzStatus(rawStatus)
		body = bytes.ReplaceAll(body, []byte(orgPlaceholder), []byte(fuzzOrigin))
		c, s := fuzzClient(t)
		req := &BatchRequest{ContinueOnError: continueOnError, Parts: []BatchPart{
			{ChangeSet: []BatchOp{
				{Method: http.MethodPost, Path: "tasks", Body: map[string]any{"subject": "Task 1 in batch"}, ContentID: "1"},
				{Method: http.MethodPost, Path: "tasks", Body: map[string]any{"subject": "Task 2 in batch"}},
			}},
			{Op: &BatchOp{Method: http.MethodPost, Path: "tasks", Body: map[string]any{"subject": "Task 3 in batch"}}},
			{Op: &BatchOp{Method: http.MethodGet, Path: "tasks?$select=subject"}},
		}}
		wantIDs := []string{"1", "2"} // the change set's, in order; "2" is assigned

		ctx, cancel := s.script(status, contentType, body, 0)
		results, err := c.Batch(ctx, req)
		cancel()
		if err != nil {
			if results != nil {
				t.Errorf("batch failed (%v) but returned %d results", err, len(results))
			}
			var e *Error
			if errors.As(err, &e) && e.StatusCode != status {
				t.Errorf("*Error.StatusCode = %d, want %d", e.StatusCode, status)
			}
			return
		}
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			t.Errorf("status %d accepted as a batch response", status)
		}
		if len(results) != 4 {
			t.Fatalf("%d results for 4 ops", len(results))
		}
		for i, r := range results {
			if (r.StatusCode >= 400) != (r.Err != nil) {
				t.Errorf("result %d: status %d with error %v", i, r.StatusCode, r.Err)
			}
			if r.Err != nil && r.Err.StatusCode != r.StatusCode {
				t.Errorf("result %d: error status %d, result status %d", i, r.Err.StatusCode, r.StatusCode)
			}
			if i < len(wantIDs) && r.ContentID != wantIDs[i] {
				t.Errorf("result %d: content-id %q, want %q", i, r.ContentID, wantIDs[i])
			}
		}
		first := FirstError(results)
		anyErr := false
		for _, r := range results {
			anyErr = anyErr || r.Err != nil
		}
		if (first != nil) != anyErr {
			t.Errorf("FirstError = %v, but some result failed: %v", first, anyErr)
		}
	})
}
