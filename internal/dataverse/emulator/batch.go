package emulator

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
)

const maxBatchRequests = 1000

// batchOp is one application/http part of a $batch request.
type batchOp struct {
	method    string
	target    string // URL as written (absolute, /api/data/..., relative or $n)
	header    http.Header
	body      []byte
	contentID string
}

type batchPart struct {
	op        *batchOp
	changeSet []*batchOp
}

func parseBatch(contentType string, body []byte) ([]batchPart, *apiError) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return nil, errBadRequest("The content type '%s' is not valid for a $batch request; use multipart/mixed with a boundary.", contentType)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var parts []batchPart
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errBadRequest("The $batch request body is malformed: %v", err)
		}
		raw, err := io.ReadAll(p)
		if err != nil {
			return nil, errBadRequest("The $batch request body is malformed: %v", err)
		}
		pct := p.Header.Get("Content-Type")
		if strings.HasPrefix(strings.ToLower(pct), "multipart/mixed") {
			_, cparams, err := mime.ParseMediaType(pct)
			if err != nil || cparams["boundary"] == "" {
				return nil, errBadRequest("A change set has no boundary.")
			}
			cr := multipart.NewReader(bytes.NewReader(raw), cparams["boundary"])
			var ops []*batchOp
			for {
				cp, err := cr.NextRawPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					return nil, errBadRequest("The change set is malformed: %v", err)
				}
				craw, err := io.ReadAll(cp)
				if err != nil {
					return nil, errBadRequest("The change set is malformed: %v", err)
				}
				op, aerr := parseHTTPPart(craw)
				if aerr != nil {
					return nil, aerr
				}
				op.contentID = strings.TrimSpace(cp.Header.Get("Content-ID"))
				if op.contentID == "" {
					op.contentID = strings.TrimSpace(op.header.Get("Content-ID"))
				}
				ops = append(ops, op)
			}
			parts = append(parts, batchPart{changeSet: ops})
			continue
		}
		op, aerr := parseHTTPPart(raw)
		if aerr != nil {
			return nil, aerr
		}
		op.contentID = strings.TrimSpace(p.Header.Get("Content-ID"))
		parts = append(parts, batchPart{op: op})
	}
	return parts, nil
}

// parseHTTPPart reads an embedded HTTP request: request line, headers, blank line, body.
func parseHTTPPart(raw []byte) (*batchOp, *apiError) {
	br := bufio.NewReader(bytes.NewReader(raw))
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	for err == nil && strings.TrimSpace(line) == "" {
		line, err = tp.ReadLine()
	}
	if err != nil {
		return nil, errBadRequest("A $batch part has no request line.")
	}
	fs := strings.Fields(line)
	if len(fs) < 2 {
		return nil, errBadRequest("The $batch part request line '%s' is not valid.", line)
	}
	mh, err := tp.ReadMIMEHeader()
	if err != nil && err != io.EOF {
		return nil, errBadRequest("The $batch part headers are malformed: %v", err)
	}
	body, _ := io.ReadAll(br)
	target := fs[1]
	if len(fs) > 2 && strings.HasPrefix(fs[len(fs)-1], "HTTP/") {
		// Be lenient with unescaped spaces in the URL.
		target = strings.Join(fs[1:len(fs)-1], "%20")
	}
	return &batchOp{method: strings.ToUpper(fs[0]), target: target, header: http.Header(mh), body: bytes.TrimRight(body, "\r\n")}, nil
}

// serveBatch executes a $batch: parts in order, change sets atomically. The whole batch
// is one request for the service protection request count; every operation's execution
// time counts (the caller reports req.cost).
func (s *Server) serveBatch(req *request) *response {
	if req.method != http.MethodPost {
		return errorResponse(errNoResource(req.base + "$batch"))
	}
	parts, err := parseBatch(req.header.Get("Content-Type"), req.body)
	if err != nil {
		return errorResponse(err)
	}
	n := 0
	for _, p := range parts {
		if p.op != nil {
			n++
		}
		n += len(p.changeSet)
		for _, op := range p.changeSet {
			if op.method == http.MethodGet {
				return errorResponse(errBadRequest("GET requests are not allowed in a change set."))
			}
		}
	}
	if n > maxBatchRequests {
		// UNCONFIRMED: the exact code Dataverse uses for this limit.
		return errorResponse(newErr(http.StatusBadRequest, codeInvalidArgument,
			"The maximum number of requests in a batch is %d. This batch contains %d requests.", maxBatchRequests, n))
	}
	pf := parsePrefer(req.header)
	boundary := "batchresponse_" + newGUID()
	var out bytes.Buffer
	status := http.StatusOK
	for _, p := range parts {
		if p.op != nil {
			resp := s.runBatchOp(req, p.op, nil, nil)
			writePart(&out, boundary, resp, "")
			if resp.status >= 400 && !pf.continueOnError {
				status = resp.status
				break
			}
			continue
		}
		resp, failed := s.runChangeSet(req, p.changeSet, boundary, &out)
		if failed && !pf.continueOnError {
			status = resp
			break
		}
	}
	fmt.Fprintf(&out, "--%s--\r\n", boundary)
	r := newResponse(status)
	r.header.Set("Content-Type", "multipart/mixed; boundary="+boundary)
	r.header.Set("OData-Version", "4.0")
	if pf.continueOnError {
		r.header.Set("Preference-Applied", "odata.continue-on-error")
	}
	r.body = out.Bytes()
	return r
}

// runChangeSet runs ops in one transaction. On failure it rolls back and writes only the
// failing response; it returns that status and true.
func (s *Server) runChangeSet(req *request, ops []*batchOp, boundary string, out *bytes.Buffer) (int, bool) {
	tx := s.st.begin(s.now(), req.caller)
	defer func() {
		if p := recover(); p != nil {
			tx.rollback()
			panic(p)
		}
	}()
	ids := map[string]string{}
	resps := make([]*response, 0, len(ops))
	for _, op := range ops {
		resp := s.runBatchOp(req, op, tx, ids)
		if resp.status >= 400 {
			tx.rollback()
			writePart(out, boundary, resp, "")
			return resp.status, true
		}
		if op.contentID != "" {
			loc := resp.header.Get("Location")
			if loc == "" {
				loc = resp.header.Get("OData-EntityId")
			}
			if loc != "" {
				ids[op.contentID] = loc
			}
		}
		resps = append(resps, resp)
	}
	s.committed(tx)
	cs := "changesetresponse_" + newGUID()
	fmt.Fprintf(out, "--%s\r\nContent-Type: multipart/mixed; boundary=%s\r\n\r\n", boundary, cs)
	for i, resp := range resps {
		writePart(out, cs, resp, ops[i].contentID)
	}
	fmt.Fprintf(out, "--%s--\r\n", cs)
	return http.StatusOK, false
}

// runBatchOp executes one part as a sub-request of the batch.
func (s *Server) runBatchOp(parent *request, op *batchOp, tx *tx, ids map[string]string) *response {
	target := op.target
	if strings.HasPrefix(target, "$") {
		id, rest, _ := strings.Cut(target[1:], "/")
		loc, ok := ids[id]
		if !ok {
			return errorResponse(newErr(http.StatusBadRequest, codeBatchContentIDNotExists, "Content-ID Reference: '$%s' does not exist in the batch context.", id))
		}
		target = loc
		if rest != "" {
			target += "/" + rest
		}
	}
	if i := strings.Index(target, "/api/data/v"); i >= 0 {
		target = target[i+len("/api/data/v"):]
		if j := strings.IndexByte(target, '/'); j >= 0 {
			target = target[j+1:]
		} else {
			target = ""
		}
	}
	target = strings.TrimPrefix(target, "/")
	path, rawQuery, _ := strings.Cut(target, "?")
	q := parseRawQuery(rawQuery)
	h := op.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	route, set := routeOf(op.method, path)
	sub := &request{
		method: op.method, path: path, rawQuery: rawQuery, query: q, header: h, body: op.body,
		base: parent.base, caller: parent.caller, reqID: newGUID(), corrID: parent.corrID,
		contentIDs: ids, tx: tx, route: route, set: set, inBatch: true,
	}
	var resp *response
	if path == "$batch" {
		resp = errorResponse(errBadRequest("Nested $batch requests are not supported."))
	} else {
		resp = s.dispatch(sub)
	}
	parent.cost += sub.cost
	if resp.header.Get("REQ_ID") == "" && resp.status >= 400 {
		resp.header.Set("REQ_ID", sub.reqID)
	}
	s.record(LoggedRequest{Time: s.now(), Method: op.method, Path: "/api/data/v9.2/" + target, Route: route, Set: set,
		Status: resp.status, Caller: parent.caller.userID, RequestID: sub.reqID, InBatch: true})
	return resp
}

func writePart(out *bytes.Buffer, boundary string, resp *response, contentID string) {
	fmt.Fprintf(out, "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n", boundary)
	if contentID != "" {
		fmt.Fprintf(out, "Content-ID: %s\r\n", contentID)
	}
	fmt.Fprintf(out, "\r\nHTTP/1.1 %d %s\r\n", resp.status, http.StatusText(resp.status))
	for _, k := range []string{"REQ_ID", "Content-Type", "OData-Version", "Location", "OData-EntityId", "Preference-Applied", "ETag"} {
		if v := resp.header.Get(k); v != "" {
			fmt.Fprintf(out, "%s: %s\r\n", k, v)
		}
	}
	out.WriteString("\r\n")
	if len(resp.body) > 0 {
		out.Write(resp.body)
	}
	out.WriteString("\r\n")
}
