package dataverse

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

const benchEntity = `{"@odata.context":"http://x/api/data/v9.2/$metadata#contacts(fullname,emailaddress1)/$entity","@odata.etag":"W/\"1234567\"","fullname":"Avery Howard","emailaddress1":"avery@example.com","contactid":"00000000-0000-0000-0000-0000000000c1"}`

// benchmarkPair measures the same GET through the Client and through a bare
// net/http request with the same headers, once reading the body only and
// once also decoding it into a map as the Client does into a Record. The
// difference to net_http_decode is the client's own overhead: URL building,
// token, limiter, pacing, retry bookkeeping, hooks, resty.
func benchmarkPair(b *testing.B, apiURL string, hc *http.Client, c *Client) {
	ctx := context.Background()
	id := "00000000-0000-0000-0000-0000000000c1"
	b.Run("client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rec, err := c.Retrieve(ctx, "contacts", id, &Query{Select: []string{"fullname", "emailaddress1"}})
			if err != nil || rec == nil {
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
			u := apiURL + "contacts(" + id + ")?$select=fullname,emailaddress1"
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
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if decode && err == nil {
					var rec map[string]any
					err = json.Unmarshal(body, &rec)
				}
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(resp.StatusCode, err)
				}
			}
		})
	}
}

func BenchmarkRetrieveHTTPTest(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
		io.WriteString(w, benchEntity)
	}))
	defer srv.Close()
	hc := srv.Client()
	c, err := New(Config{URL: srv.URL}, &staticCred{token: "t"}, &Options{HTTPClient: hc})
	if err != nil {
		b.Fatal(err)
	}
	benchmarkPair(b, c.APIURL(), hc, c)
}
