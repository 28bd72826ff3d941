package dataverse

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
)

// applyWrite copies WriteOptions onto a call: Prefer, $select, conditional
// and extra headers.
func (cl *call) applyWrite(o *WriteOptions) {
	if o == nil {
		return
	}
	for k, v := range o.Headers {
		cl.header[http.CanonicalHeaderKey(k)] = v
	}
	if o.Return {
		cl.header.Set("Prefer", "return=representation")
		if len(o.Select) > 0 {
			cl.url += "?$select=" + escapeQueryValue(strings.Join(o.Select, ","))
		}
	}
	if o.IfMatch != "" {
		cl.header.Set("If-Match", o.IfMatch)
	}
	if o.IfNoneMatch != "" {
		cl.header.Set("If-None-Match", o.IfNoneMatch)
	}
}

// decodeRecord decodes a 200/201 body; an empty body (204) gives nil.
func decodeRecord(body []byte) (Record, error) {
	if isEmptyBody(body) {
		return nil, nil
	}
	var r Record
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	return r, nil
}

// Create inserts a row into set and returns its id, plus the row itself when
// o.Return is set (nil otherwise).
//
// By default the client picks the id (o.ID, or a new GUID) and sends a
// create-only upsert, PATCH <set>(<id>) with If-None-Match: *, so a retry
// after a lost response can never create a second row: if the first attempt
// did land, the retry's 412 is recognised as this call's own success. With
// o.IDColumn set it POSTs the body with that column set to the id instead
// (deep inserts, tables without upsert), and a retry answered "duplicate" is
// likewise success. See the package doc, "Creating safely".
//
// Errors: *Error (400 validation, 403, 412/duplicate when o.ID already
// exists, 429 after retries, ...), a transport error, or ctx.Err(), each
// wrapped as "create <set>: ...".
func (c *Client) Create(ctx context.Context, set string, body any, o *WriteOptions) (string, Record, error) {
	op := "create " + set
	if o == nil {
		o = &WriteOptions{}
	}
	id := strings.Trim(o.ID, "{}")
	var cl *call
	if o.IDColumn != "" {
		b, bodyID, err := withID(body, o.IDColumn, id)
		if err != nil {
			return "", nil, wrap(op, err)
		}
		id = bodyID
		cl = c.newCall(op, "create", set, http.MethodPost, c.apiURL+escapeSegment(set))
		cl.body = b
		cl.header.Set("Content-Type", "application/json; charset=utf-8")
	} else {
		if id == "" {
			id = NewGUID()
		}
		cl = c.newCall(op, "create", set, http.MethodPatch, c.apiURL+entityPath(set, id))
		if err := cl.setJSON(body); err != nil {
			return "", nil, wrap(op, err)
		}
	}
	// The id makes every attempt carry the same row, so resending is safe.
	cl.replayable = true
	oo := *o
	oo.IfMatch, oo.IfNoneMatch = "", ""
	cl.applyWrite(&oo)
	if o.IDColumn == "" {
		cl.header.Set("If-None-Match", "*")
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		if cl.uncertain && (IsDuplicate(err) || IsPreconditionFailed(err)) {
			c.log.InfoContext(ctx, "dataverse create: earlier attempt had succeeded", "op", op, "id", id)
			if o.Return {
				rec, rerr := c.Retrieve(ctx, set, id, &Query{Select: o.Select})
				return id, rec, rerr
			}
			return id, nil, nil
		}
		return "", nil, err
	}
	if h := resp.header.Get("OData-EntityId"); h != "" {
		if got := guidFromEntityID(h); got != "" {
			id = got
		}
	}
	rec, err := decodeRecord(resp.body)
	if err != nil {
		return id, nil, wrap(op, err)
	}
	if rec == nil && o.Return { // server ignored the preference
		rec, err = c.Retrieve(ctx, set, id, &Query{Select: o.Select})
		return id, rec, err
	}
	return id, rec, nil
}

// withID sets column=id in a JSON object body, keeping an id the body
// already has. It returns the encoded body and the id used.
func withID(body any, column, id string) ([]byte, string, error) {
	var m map[string]any
	switch v := body.(type) {
	case Record:
		m = maps.Clone(map[string]any(v))
	case map[string]any:
		m = maps.Clone(v)
	default:
		b, err := marshalBody(body)
		if err != nil {
			return nil, "", err
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, "", fmt.Errorf("body must be a JSON object: %w", err)
		}
		m = make(map[string]any, len(raw)+1)
		for k, v := range raw {
			m[k] = v
		}
	}
	if m == nil {
		m = map[string]any{}
	}
	switch v := m[column].(type) {
	case string:
		if v != "" {
			id = v
		}
	case json.RawMessage:
		var s string
		if json.Unmarshal(v, &s) == nil && s != "" {
			id = s
		}
	}
	if id == "" {
		id = NewGUID()
	}
	m[column] = id
	b, err := json.Marshal(m)
	if err != nil {
		return nil, "", fmt.Errorf("encode body: %w", err)
	}
	return b, id, nil
}

// Retrieve reads one row by id. q's Select, Expand and Annotations apply
// (other options are ignored by the service for single rows).
//
// Errors: *Error with 404 (IsNotFound) when the row does not exist, other
// *Error statuses, a transport error, or ctx.Err(), wrapped as
// "retrieve <set>: ...".
func (c *Client) Retrieve(ctx context.Context, set, id string, q *Query) (Record, error) {
	return c.retrieve(ctx, "retrieve "+set, set, entityPath(set, id), q)
}

// RetrieveByKey reads one row by alternate key, e.g.
// Key{"emailaddress1": "a@b.c"} → contacts(emailaddress1='a@b.c'). String
// values are quoted, embedded quotes doubled; use Literal for verbatim values.
//
// Errors: as Retrieve (404 when no row has the key; 400 when the table has no
// such key), wrapped as "retrieve <set> by key: ...".
func (c *Client) RetrieveByKey(ctx context.Context, set string, key Key, q *Query) (Record, error) {
	op := "retrieve " + set + " by key"
	p, err := keyPath(set, key)
	if err != nil {
		return nil, wrap(op, err)
	}
	return c.retrieve(ctx, op, set, p, q)
}

func (c *Client) retrieve(ctx context.Context, op, set, path string, q *Query) (Record, error) {
	u := c.apiURL + path
	if q != nil {
		single := Query{Select: q.Select, Expand: q.Expand}
		if qs := single.encode(); qs != "" {
			u += "?" + qs
		}
	}
	cl := c.newCall(op, "retrieve", set, http.MethodGet, u)
	if p := q.prefer(); p != "" {
		cl.header.Set("Prefer", p)
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	rec, err := decodeRecord(resp.body)
	if err != nil {
		return nil, wrap(op, err)
	}
	return rec, nil
}

// Update changes columns of an existing row. It never creates: If-Match
// defaults to "*" (pass an ETag in o.IfMatch for optimistic concurrency).
// The row is returned only with o.Return.
//
// Errors: *Error with 404 when the row does not exist, 412
// (IsPreconditionFailed) when o.IfMatch no longer matches, other *Error
// statuses, a transport error, or ctx.Err(), wrapped as "update <set>: ...".
func (c *Client) Update(ctx context.Context, set, id string, body any, o *WriteOptions) (Record, error) {
	oo := WriteOptions{}
	if o != nil {
		oo = *o
	}
	if oo.IfMatch == "" {
		oo.IfMatch = "*"
	}
	return c.patch(ctx, "update", set, id, body, &oo)
}

// Upsert creates the row with this id, or updates it when it exists. With
// o.IfNoneMatch "*" it only creates, with o.IfMatch "*" it only updates.
//
// Errors: *Error with 412 (IsPreconditionFailed) when the condition fails,
// 404 for an update-only upsert of a missing row, other *Error statuses, a
// transport error, or ctx.Err(), wrapped as "upsert <set>: ...".
func (c *Client) Upsert(ctx context.Context, set, id string, body any, o *WriteOptions) (Record, error) {
	return c.patch(ctx, "upsert", set, id, body, o)
}

func (c *Client) patch(ctx context.Context, operation, set, id string, body any, o *WriteOptions) (Record, error) {
	op := operation + " " + set
	cl := c.newCall(op, operation, set, http.MethodPatch, c.apiURL+entityPath(set, id))
	if err := cl.setJSON(body); err != nil {
		return nil, wrap(op, err)
	}
	cl.applyWrite(o)
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	rec, err := decodeRecord(resp.body)
	if err != nil {
		return nil, wrap(op, err)
	}
	return rec, nil
}

// Delete removes a row. o.IfMatch (an ETag) makes it conditional. If a retry
// follows an attempt whose outcome was lost, a 404 on the retry counts as
// success.
//
// Errors: *Error with 404 when the row does not exist, 412 when o.IfMatch no
// longer matches, 405/400 when related rows block the delete, a transport
// error, or ctx.Err(), wrapped as "delete <set>: ...".
func (c *Client) Delete(ctx context.Context, set, id string, o *WriteOptions) error {
	op := "delete " + set
	cl := c.newCall(op, "delete", set, http.MethodDelete, c.apiURL+entityPath(set, id))
	if o != nil {
		for k, v := range o.Headers {
			cl.header[http.CanonicalHeaderKey(k)] = v
		}
		if o.IfMatch != "" {
			cl.header.Set("If-Match", o.IfMatch)
		}
	}
	_, err := c.do(ctx, cl)
	if err != nil && cl.uncertain && IsNotFound(err) {
		return nil
	}
	return err
}

// Associate links set(id) to targetSet(targetID) through the collection-valued
// navigation property navProp (N:N or 1:N), POST .../navProp/$ref. If a retry
// follows an attempt whose outcome was lost, a duplicate answer counts as
// success.
//
// Errors: *Error with 404 when either row is missing, a duplicate *Error
// (IsDuplicate) when the pair is already linked, 400 for an unknown navProp,
// a transport error, or ctx.Err(), wrapped as "associate <set>.<navProp>: ...".
func (c *Client) Associate(ctx context.Context, set, id, navProp, targetSet, targetID string) error {
	op := "associate " + set + "." + navProp
	cl := c.newCall(op, "associate", set, http.MethodPost, c.apiURL+entityPath(set, id)+"/"+escapeSegment(navProp)+"/$ref")
	if err := cl.setJSON(map[string]string{"@odata.id": c.apiURL + entityPath(targetSet, targetID)}); err != nil {
		return wrap(op, err)
	}
	cl.replayable = true // linking twice leaves one link; the retry's duplicate answer is handled below
	_, err := c.do(ctx, cl)
	if err != nil && cl.uncertain && IsDuplicate(err) {
		return nil
	}
	return err
}

// Disassociate removes the link from set(id) to the row targetID through
// navProp, DELETE .../navProp(targetID)/$ref. If a retry follows an attempt
// whose outcome was lost, a 404 counts as success.
//
// Errors: *Error with 404 when a row or the link is missing, a transport
// error, or ctx.Err(), wrapped as "disassociate <set>.<navProp>: ...".
func (c *Client) Disassociate(ctx context.Context, set, id, navProp, targetID string) error {
	op := "disassociate " + set + "." + navProp
	cl := c.newCall(op, "disassociate", set, http.MethodDelete,
		c.apiURL+entityPath(set, id)+"/"+escapeSegment(navProp)+"("+escapeSegment(strings.Trim(targetID, "{}"))+")/$ref")
	_, err := c.do(ctx, cl)
	if err != nil && cl.uncertain && IsNotFound(err) {
		return nil
	}
	return err
}
