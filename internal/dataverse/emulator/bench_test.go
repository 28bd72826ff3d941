package emulator

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// Benchmarks report requests/second over real HTTP (loopback, auth off) so later work
// knows the headroom the emulator leaves.

func benchServer(b *testing.B) *Running {
	b.Helper()
	r, err := Start(Options{Auth: AuthOptions{Disabled: true}, RequestLogSize: 1000})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close() })
	return r
}

func benchDo(b *testing.B, r *Running, method, path, body string, hdr ...string) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, r.APIURL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := r.HTTPClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		b.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
}

func BenchmarkCreateContact(b *testing.B) {
	r := benchServer(b)
	i := 0
	for b.Loop() {
		i++
		benchDo(b, r, "POST", "contacts", fmt.Sprintf(`{"firstname":"Bench","lastname":"User %d","emailaddress1":"bench%d@example.com"}`, i, i))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func BenchmarkRetrieveContact(b *testing.B) {
	r := benchServer(b)
	id, err := r.Insert("contact", map[string]any{"firstname": "Bench", "lastname": "User", "emailaddress1": "bench@example.com"})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		benchDo(b, r, "GET", "contacts("+id+")?$select=fullname,emailaddress1,statecode", "")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkFilteredPage queries one page of 5,000 out of 100,000 contacts with an
// equality filter on an indexed column.
func BenchmarkFilteredPage(b *testing.B) {
	r := benchServer(b)
	for i := range 100_000 {
		row := map[string]any{"firstname": "Person", "lastname": fmt.Sprintf("N%06d", i), "emailaddress1": fmt.Sprintf("p%06d@example.com", i)}
		if i%10 == 0 {
			row["jobtitle"] = "Buyer" // 10,000 buyers: the filter matches two pages' worth
		}
		if _, err := r.Insert("contact", row); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC() // settle the heap built by the load so the timings measure queries
	b.Run("eq-jobtitle-5000", func(b *testing.B) {
		for b.Loop() {
			benchDo(b, r, "GET", "contacts?$select=fullname,emailaddress1&$filter=jobtitle%20eq%20'Buyer'", "", "Prefer", "odata.maxpagesize=5000")
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
	b.Run("eq-email-1", func(b *testing.B) {
		for b.Loop() {
			benchDo(b, r, "GET", "contacts?$select=fullname&$filter=emailaddress1%20eq%20'p054321@example.com'", "")
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
}
