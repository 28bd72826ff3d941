package emulator

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

// batchBuilder writes a $batch body the way the docs show it.
type batchBuilder struct {
	b        strings.Builder
	boundary string
}

func newBatch() *batchBuilder { return &batchBuilder{boundary: "batch_test123"} }

func (bb *batchBuilder) op(method, url, body string) *batchBuilder {
	fmt.Fprintf(&bb.b, "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n%s %s HTTP/1.1\r\n", bb.boundary, method, url)
	if body != "" {
		fmt.Fprintf(&bb.b, "Content-Type: application/json; type=entry\r\n\r\n%s\r\n", body)
	} else {
		bb.b.WriteString("\r\n\r\n")
	}
	return bb
}

type csOp struct{ id, method, url, body string }

func (bb *batchBuilder) changeSet(name string, ops ...csOp) *batchBuilder {
	fmt.Fprintf(&bb.b, "--%s\r\nContent-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", bb.boundary, name)
	for _, o := range ops {
		fmt.Fprintf(&bb.b, "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: %s\r\n\r\n%s %s HTTP/1.1\r\nContent-Type: application/json\r\n\r\n%s\r\n", name, o.id, o.method, o.url, o.body)
	}
	fmt.Fprintf(&bb.b, "--%s--\r\n", name)
	return bb
}

func (bb *batchBuilder) body() string { return bb.b.String() + "--" + bb.boundary + "--\r\n" }

type batchPartResp struct {
	contentID string
	status    int
	header    http.Header
	body      string
}

// sendBatch posts a batch and parses the multipart response (nested change sets flattened).
func sendBatch(t *testing.T, c *client, bb *batchBuilder, hdr ...string) (int, []batchPartResp, *result) {
	t.Helper()
	hdr = append(hdr, "Content-Type", `multipart/mixed; boundary="`+bb.boundary+`"`)
	res := c.do("POST", "$batch", bb.body(), hdr...)
	if res.json != nil { // whole-batch error
		return res.status, nil, res
	}
	_, params, err := mime.ParseMediaType(res.header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(params["boundary"], "batchresponse_") {
		t.Fatalf("batch content type %q", res.header.Get("Content-Type"))
	}
	var out []batchPartResp
	var walk func(r *multipart.Reader)
	walk = func(r *multipart.Reader) {
		for {
			p, err := r.NextPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ct := p.Header.Get("Content-Type")
			if strings.HasPrefix(ct, "multipart/mixed") {
				_, cp, _ := mime.ParseMediaType(ct)
				if !strings.HasPrefix(cp["boundary"], "changesetresponse_") {
					t.Fatalf("change set boundary %q", cp["boundary"])
				}
				walk(multipart.NewReader(p, cp["boundary"]))
				continue
			}
			resp, err := http.ReadResponse(bufio.NewReader(p), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			out = append(out, batchPartResp{contentID: p.Header.Get("Content-ID"), status: resp.StatusCode, header: resp.Header, body: string(bytes.TrimSpace(body))})
		}
	}
	walk(multipart.NewReader(bytes.NewReader(res.body), params["boundary"]))
	return res.status, out, res
}

func TestBatchChangeSetsAndContentID(t *testing.T) {
	c := startPlain(t, Options{})
	bb := newBatch().changeSet("changeset_a",
		csOp{"1", "POST", "/api/data/v9.2/accounts", `{"name":"Batch Account"}`},
		csOp{"2", "POST", c.r.APIURL + "contacts", `{"lastname":"Batch","parentcustomerid_account@odata.bind":"$1"}`},
		csOp{"3", "PATCH", "$1", `{"primarycontactid@odata.bind":"$2"}`},
		csOp{"4", "PUT", "$2/jobtitle", `{"value":"Buyer"}`},
	).op("GET", "/api/data/v9.2/contacts?$select=lastname,jobtitle&$filter=lastname eq 'Batch'", "")
	status, parts, whole := sendBatch(t, c, bb)
	if status != 200 || len(parts) != 5 {
		t.Fatalf("status %d parts %+v %s", status, parts, whole.body)
	}
	for i, p := range parts[:4] {
		if p.status != 204 || p.contentID != fmt.Sprint(i+1) {
			t.Fatalf("part %d: %+v", i, p)
		}
	}
	if parts[0].header.Get("Location") == "" || parts[0].header.Get("OData-EntityId") == "" {
		t.Fatalf("create part headers: %v", parts[0].header)
	}
	if parts[4].status != 200 || !strings.Contains(parts[4].body, `"jobtitle":"Buyer"`) {
		t.Fatalf("GET part: %+v", parts[4])
	}
	accs := c.r.Rows("account")
	if len(accs) != 1 || accs[0]["primarycontactid"] == nil {
		t.Fatalf("accounts: %v", accs)
	}

	// A failing change set rolls back everything in it and stops the batch.
	before := len(c.r.Rows("contact"))
	bb = newBatch().changeSet("changeset_b",
		csOp{"1", "POST", "contacts", `{"lastname":"Rolled back"}`},
		csOp{"2", "POST", "contacts", `{"nosuchcolumn":"x"}`},
	).op("POST", "contacts", `{"lastname":"Never"}`)
	status, parts, _ = sendBatch(t, c, bb)
	if status != 400 || len(parts) != 1 || parts[0].status != 400 || !strings.Contains(parts[0].body, "0x80048d19") {
		t.Fatalf("failed change set: %d %+v", status, parts)
	}
	if after := len(c.r.Rows("contact")); after != before {
		t.Fatalf("rollback: %d -> %d contacts", before, after)
	}

	// Forward references are rejected.
	bb = newBatch().changeSet("changeset_c",
		csOp{"2", "POST", "contacts", `{"lastname":"x","parentcustomerid_account@odata.bind":"$1"}`},
		csOp{"1", "POST", "accounts", `{"name":"y"}`})
	status, parts, _ = sendBatch(t, c, bb)
	if status != 400 || !strings.Contains(parts[0].body, "Content-ID Reference: '$1' does not exist in the batch context.") {
		t.Fatalf("forward ref: %d %+v", status, parts)
	}

	// continue-on-error: each part answers on its own and the batch is 200.
	bb = newBatch().op("POST", "contacts", `{"firstname":"`+strings.Repeat("x", 60)+`"}`).op("POST", "contacts", `{"lastname":"Second"}`)
	status, parts, res := sendBatch(t, c, bb, "Prefer", "odata.continue-on-error")
	if status != 200 || len(parts) != 2 || parts[0].status != 400 || parts[1].status != 204 ||
		!strings.Contains(parts[0].body, "0x80044331") || parts[0].header.Get("REQ_ID") == "" {
		t.Fatalf("continue-on-error: %d %+v", status, parts)
	}
	if res.header.Get("Preference-Applied") != "odata.continue-on-error" {
		t.Fatalf("Preference-Applied: %v", res.header)
	}

	// GET in a change set and more than 1000 requests are refused.
	bb = newBatch().changeSet("changeset_d", csOp{"1", "GET", "contacts", ""})
	if status, _, _ := sendBatch(t, c, bb); status != 400 {
		t.Fatalf("GET in change set: %d", status)
	}
	bb = newBatch()
	for range 1001 {
		bb.op("GET", "WhoAmI", "")
	}
	if status, _, res := sendBatch(t, c, bb); status != 400 || !strings.Contains(res.errMessage(), "1000") {
		t.Fatalf("limit: %d", status)
	}
	st := c.r.Stats()
	if st.Count("POST", "$batch") == 0 || st.Count("POST", "contacts") == 0 {
		t.Fatalf("stats: %+v", st.ByRoute)
	}
}
