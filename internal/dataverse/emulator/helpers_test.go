package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// client is a tiny Web API caller for the conformance tests: every behaviour is checked
// over real HTTP.
type client struct {
	t      *testing.T
	r      *Running
	token  string
	header http.Header
}

func startPlain(t *testing.T, o Options) *client {
	t.Helper()
	o.Auth.Disabled = true
	r, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return &client{t: t, r: r}
}

type result struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (res *result) str(k string) string {
	v, _ := res.json[k].(string)
	return v
}

func (res *result) errCode() string {
	e, _ := res.json["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (res *result) errMessage() string {
	e, _ := res.json["error"].(map[string]any)
	c, _ := e["message"].(string)
	return c
}

func (res *result) values() []map[string]any {
	arr, _ := res.json["value"].([]any)
	out := make([]map[string]any, 0, len(arr))
	for _, v := range arr {
		m, _ := v.(map[string]any)
		out = append(out, m)
	}
	return out
}

// do sends a request; path is relative to the API root unless absolute. hdr is
// alternating header names and values.
func (c *client) do(method, path string, body any, hdr ...string) *result {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = c.r.APIURL + path
	}
	url = strings.ReplaceAll(url, " ", "%20")
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-MaxVersion", "4.0")
	req.Header.Set("OData-Version", "4.0")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.r.HTTPClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	res := &result{status: resp.StatusCode, header: resp.Header, body: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&res.json); err != nil {
			c.t.Fatalf("%s %s: bad json %q: %v", method, path, raw, err)
		}
	}
	return res
}

// must asserts the status and returns the result.
func (c *client) must(status int, method, path string, body any, hdr ...string) *result {
	c.t.Helper()
	res := c.do(method, path, body, hdr...)
	if res.status != status {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.status, status, res.body)
	}
	return res
}

// create posts a row and returns its id from OData-EntityId.
func (c *client) create(set string, body any) string {
	c.t.Helper()
	res := c.must(http.StatusNoContent, http.MethodPost, set, body)
	loc := res.header.Get("OData-EntityId")
	i := strings.LastIndex(loc, "(")
	if i < 0 || !strings.HasSuffix(loc, ")") {
		c.t.Fatalf("create %s: OData-EntityId %q", set, loc)
	}
	return loc[i+1 : len(loc)-1]
}

func wantError(t *testing.T, res *result, status int, code string) {
	t.Helper()
	if res.status != status || res.errCode() != code {
		t.Fatalf("got %d %s (%s), want %d %s", res.status, res.errCode(), res.body, status, code)
	}
}

func num(v any) int {
	switch x := v.(type) {
	case json.Number:
		n, _ := x.Int64()
		return int(n)
	case float64:
		return int(x)
	}
	return -1
}
