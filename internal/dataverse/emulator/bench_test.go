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

// BenchmarkSendEmailThroughSync creates an email and sends it with
// IssueSend=true, the emulated sync delivering it before SendEmail returns
// (Delay 0, limits off): the emulator's own cost per delivered email.
func BenchmarkSendEmailThroughSync(b *testing.B) {
	r, err := Start(Options{Auth: AuthOptions{Disabled: true}, RequestLogSize: 1000,
		EmailSync: EmailSyncOptions{Limits: MailboxLimits{Messages: -1, Recipients: -1}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close() })
	user, err := r.Insert("systemuser", map[string]any{"fullname": "Bench", "internalemailaddress": "bench@contoso.example"})
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		id := newGUID()
		benchDo(b, r, "POST", "emails", fmt.Sprintf(`{"activityid":"%s","subject":"s%d","email_activity_parties":[`+
			`{"participationtypemask":1,"partyid_systemuser@odata.bind":"/systemusers(%s)"},`+
			`{"participationtypemask":2,"addressused":"r%d@example.com"}]}`, id, i, user, i))
		benchDo(b, r, "POST", "emails("+id+")/Microsoft.Dynamics.CRM.SendEmail", `{"IssueSend":true}`)
	}
	b.StopTimer()
	if row, _ := r.Row("email", r.Outbox()[len(r.Outbox())-1].ID); row["statuscode"] != EmailSent {
		b.Fatalf("last email in status %v", row["statuscode"])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "emails/s")
}
