package dataverse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
)

// BatchRequest is a $batch: independent parts run in order; each change set
// runs as one transaction.
type BatchRequest struct {
	// ContinueOnError sends Prefer: odata.continue-on-error, so a failed part
	// does not stop the parts after it (a failed change set still rolls back
	// as a whole). Default false: processing stops at the first failure.
	ContinueOnError bool
	Parts           []BatchPart
}

// BatchPart is either a single operation or an atomic change set; set
// exactly one.
type BatchPart struct {
	Op        *BatchOp
	ChangeSet []BatchOp // no GETs; all succeed or none do
}

// BatchOp is one request inside a batch.
type BatchOp struct {
	Method string // GET, POST, PATCH, PUT, DELETE
	// Path is relative to the service root ("contacts", "contacts(<id>)"),
	// or a Content-ID reference inside a change set ("$1", "$1/parentcustomerid_account/$ref").
	Path    string
	Body    any         // JSON body; nil for none
	Headers http.Header // extra headers, e.g. If-Match, Prefer
	// ContentID names the op so later ops in the change set can reference it
	// as "$<ContentID>" in Path or in @odata.bind values. Ops in change sets
	// without one get a number.
	ContentID string
}

// BatchResult is the outcome of one BatchOp, in request order (change-set
// ops flattened in place).
type BatchResult struct {
	ContentID  string
	StatusCode int // 424 when the op did not run (the batch stopped earlier, or its change set rolled back)
	Header     http.Header
	Body       json.RawMessage // response body, if any
	EntityID   string          // id from OData-EntityId / Location (creates)
	Err        *Error          // non-nil when StatusCode >= 400
}

// maxBatchOps is Dataverse's limit of requests per batch.
const maxBatchOps = 1000

// FirstError returns the first failed result's error (wrapped with its
// position), or nil when every op succeeded.
func FirstError(results []BatchResult) error {
	for i, r := range results {
		if r.Err != nil {
			return fmt.Errorf("batch op %d (content-id %q): %w", i, r.ContentID, r.Err)
		}
	}
	return nil
}

// Batch sends req as one multipart/mixed $batch request and maps the
// response parts back to the ops, by position and Content-ID. A batch counts
// as one request for service protection, but every op still runs and counts
// toward execution time; keep batches small (tens of ops).
//
// The returned error covers the batch as a whole: validation (empty, over
// 1000 ops, a GET in a change set), *Error when the service rejected the
// batch without per-op responses (401, 429 after retries, ...), a malformed
// response, a transport error, or ctx.Err(), wrapped as "batch: ...".
// Per-op failures are in BatchResult.Err (see FirstError). A batch with only
// GETs is retried like a read; any other batch is resent only when the
// service surely did not run it (429, 503, failure before sending).
func (c *Client) Batch(ctx context.Context, req *BatchRequest) ([]BatchResult, error) {
	const op = "batch"
	if req == nil || len(req.Parts) == 0 {
		return nil, wrap(op, errors.New("no parts"))
	}
	boundary := "batch_" + NewGUID()
	body, ops, readOnly, err := c.encodeBatch(req, boundary)
	if err != nil {
		return nil, wrap(op, err)
	}
	cl := c.newCall(op, "batch", "$batch", http.MethodPost, c.apiURL+"$batch")
	cl.body = body
	cl.header.Set("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	if req.ContinueOnError {
		cl.header.Set("Prefer", "odata.continue-on-error")
	}
	cl.replayable = readOnly
	cl.accept = func(r *response) bool { // stop-on-error batches answer 4xx with a multipart body
		mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
		return mt == "multipart/mixed"
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	groups, err := parseBatchResponse(resp.header.Get("Content-Type"), resp.body)
	if err != nil {
		return nil, wrap(op, err)
	}
	return mapBatchResults(req, ops, groups), nil
}

// encodeBatch writes the multipart body. ops holds the flattened ops with
// their final Content-IDs.
func (c *Client) encodeBatch(req *BatchRequest, boundary string) (body []byte, ops []BatchOp, readOnly bool, err error) {
	used := map[string]bool{}
	total := 0
	for i, p := range req.Parts {
		if (p.Op == nil) == (len(p.ChangeSet) == 0) {
			return nil, nil, false, fmt.Errorf("part %d: set exactly one of Op and ChangeSet", i)
		}
		if p.Op != nil {
			total++
			if p.Op.ContentID != "" {
				used[p.Op.ContentID] = true
			}
		}
		for _, o := range p.ChangeSet {
			total++
			if o.Method == http.MethodGet || o.Method == "" {
				return nil, nil, false, fmt.Errorf("part %d: change sets cannot hold GET requests", i)
			}
			if o.ContentID != "" {
				if used[o.ContentID] {
					return nil, nil, false, fmt.Errorf("part %d: duplicate Content-ID %q", i, o.ContentID)
				}
				used[o.ContentID] = true
			}
		}
	}
	if total > maxBatchOps {
		return nil, nil, false, fmt.Errorf("%d ops exceed the limit of %d per batch", total, maxBatchOps)
	}
	next := 1
	autoID := func() string {
		for used[strconv.Itoa(next)] {
			next++
		}
		id := strconv.Itoa(next)
		used[id] = true
		return id
	}
	readOnly = true
	var b bytes.Buffer
	for _, p := range req.Parts {
		b.WriteString("--" + boundary + "\r\n")
		if p.Op != nil {
			o := *p.Op
			if o.Method == "" {
				o.Method = http.MethodGet
			}
			readOnly = readOnly && o.Method == http.MethodGet
			if err := c.writeBatchOp(&b, o); err != nil {
				return nil, nil, false, err
			}
			ops = append(ops, o)
			continue
		}
		readOnly = false
		cs := "changeset_" + NewGUID()
		b.WriteString(`Content-Type: multipart/mixed; boundary="` + cs + "\"\r\n\r\n")
		for _, o := range p.ChangeSet {
			if o.ContentID == "" {
				o.ContentID = autoID()
			}
			b.WriteString("--" + cs + "\r\n")
			if err := c.writeBatchOp(&b, o); err != nil {
				return nil, nil, false, err
			}
			ops = append(ops, o)
		}
		b.WriteString("--" + cs + "--\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes(), ops, readOnly, nil
}

func (c *Client) writeBatchOp(b *bytes.Buffer, o BatchOp) error {
	b.WriteString("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n")
	if o.ContentID != "" {
		b.WriteString("Content-ID: " + o.ContentID + "\r\n")
	}
	b.WriteString("\r\n")
	target := o.Path
	switch {
	case strings.HasPrefix(target, "$"), strings.HasPrefix(target, "https://"), strings.HasPrefix(target, "http://"):
	case strings.HasPrefix(target, "/"):
		// already an absolute path
	default:
		target = c.apiPath + target
	}
	if strings.ContainsAny(target, " \r\n") {
		return fmt.Errorf("op %s %q: path must be URL-escaped", o.Method, o.Path)
	}
	b.WriteString(o.Method + " " + target + " HTTP/1.1\r\n")
	var payload []byte
	if o.Body != nil {
		var err error
		if payload, err = marshalBody(o.Body); err != nil {
			return fmt.Errorf("op %s %s: %w", o.Method, o.Path, err)
		}
		b.WriteString("Content-Type: application/json; type=entry\r\n")
	}
	if o.Method == http.MethodGet && o.Headers.Get("Accept") == "" {
		b.WriteString("Accept: application/json\r\n")
	}
	keys := make([]string, 0, len(o.Headers))
	for k := range o.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range o.Headers[k] {
			if strings.ContainsAny(k+v, "\r\n") {
				return fmt.Errorf("op %s %s: header %s has a line break", o.Method, o.Path, k)
			}
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if payload != nil {
		b.Write(payload)
		b.WriteString("\r\n")
	}
	return nil
}

// batchPart is one parsed response; a change set response is a group of them.
type batchPart struct {
	contentID string
	status    int
	header    http.Header
	body      []byte
}

type batchGroup struct {
	changeSet bool
	parts     []batchPart
}

// parseBatchResponse reads a multipart/mixed batch response into groups, one
// per top-level part, in order.
func parseBatchResponse(contentType string, body []byte) ([]batchGroup, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return nil, fmt.Errorf("batch response is %q, not multipart/mixed", contentType)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var groups []batchGroup
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return groups, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read batch response: %w", err)
		}
		pmt, pparams, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if pmt == "multipart/mixed" {
			g := batchGroup{changeSet: true}
			inner := multipart.NewReader(p, pparams["boundary"])
			for {
				ip, err := inner.NextRawPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					return nil, fmt.Errorf("read change set response: %w", err)
				}
				bp, err := readHTTPPart(ip.Header, ip)
				if err != nil {
					return nil, err
				}
				g.parts = append(g.parts, bp)
			}
			groups = append(groups, g)
			continue
		}
		bp, err := readHTTPPart(p.Header, p)
		if err != nil {
			return nil, err
		}
		groups = append(groups, batchGroup{parts: []batchPart{bp}})
	}
}

func readHTTPPart(h textproto.MIMEHeader, r io.Reader) (batchPart, error) {
	resp, err := http.ReadResponse(bufio.NewReader(r), nil)
	if err != nil {
		return batchPart{}, fmt.Errorf("read batch part: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return batchPart{}, fmt.Errorf("read batch part body: %w", err)
	}
	id := h.Get("Content-ID")
	if id == "" {
		id = resp.Header.Get("Content-ID")
	}
	return batchPart{contentID: id, status: resp.StatusCode, header: resp.Header, body: bytes.TrimSpace(body)}, nil
}

// mapBatchResults pairs response groups with request parts in order; inside
// a change set, responses are matched by Content-ID, falling back to order.
func mapBatchResults(req *BatchRequest, ops []BatchOp, groups []batchGroup) []BatchResult {
	results := make([]BatchResult, 0, len(ops))
	oi := 0
	for pi, p := range req.Parts {
		n := 1
		if p.Op == nil {
			n = len(p.ChangeSet)
		}
		partOps := ops[oi : oi+n]
		oi += n
		if pi >= len(groups) {
			for _, o := range partOps {
				results = append(results, notRun(o, "not run: the batch stopped at an earlier failure"))
			}
			continue
		}
		g := groups[pi]
		if len(g.parts) == 0 { // an empty response group answers nothing
			for _, o := range partOps {
				results = append(results, notRun(o, "no response for this op"))
			}
			continue
		}
		if p.Op != nil {
			results = append(results, toResult(partOps[0], g.parts[0]))
			continue
		}
		if !g.changeSet { // the change set failed and rolled back as a whole
			failed := g.parts[0]
			culprit := slices.IndexFunc(partOps, func(o BatchOp) bool { return o.ContentID == failed.contentID })
			for i, o := range partOps {
				if culprit >= 0 && i != culprit {
					results = append(results, notRun(o, "rolled back: another op in the change set failed"))
					continue
				}
				r := toResult(o, failed)
				r.ContentID = o.ContentID
				results = append(results, r)
			}
			continue
		}
		// Match by Content-ID first; an op whose id has no response falls back
		// to its position, but never to a response another op already took.
		byID := make(map[string]int, len(g.parts))
		for i, bp := range g.parts {
			if bp.contentID != "" {
				byID[bp.contentID] = i
			}
		}
		taken := make([]bool, len(g.parts))
		match := make([]int, len(partOps))
		for i, o := range partOps {
			match[i] = -1
			if j, ok := byID[o.ContentID]; ok && o.ContentID != "" && !taken[j] {
				match[i], taken[j] = j, true
			}
		}
		for i := range partOps {
			if match[i] < 0 && i < len(g.parts) && !taken[i] {
				match[i], taken[i] = i, true
			}
		}
		for i, o := range partOps {
			if match[i] >= 0 {
				results = append(results, toResult(o, g.parts[match[i]]))
			} else {
				results = append(results, notRun(o, "no response for this op"))
			}
		}
	}
	return results
}

func toResult(o BatchOp, bp batchPart) BatchResult {
	r := BatchResult{ContentID: o.ContentID, StatusCode: bp.status, Header: bp.header}
	if r.ContentID == "" {
		r.ContentID = bp.contentID
	}
	if len(bp.body) > 0 {
		r.Body = json.RawMessage(bp.body)
	}
	if v := bp.header.Get("OData-EntityId"); v != "" {
		r.EntityID = guidFromEntityID(v)
	} else if v := bp.header.Get("Location"); v != "" {
		r.EntityID = guidFromEntityID(v)
	}
	if bp.status >= 400 {
		r.Err = newError("batch "+o.Method+" "+o.Path, bp.status, bp.header, bp.body)
	}
	return r
}

func notRun(o BatchOp, msg string) BatchResult {
	return BatchResult{ContentID: o.ContentID, StatusCode: http.StatusFailedDependency,
		Err: &Error{StatusCode: http.StatusFailedDependency, Message: msg, Op: "batch " + o.Method + " " + o.Path}}
}
