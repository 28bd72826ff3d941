package dataverse

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strings"
)

// collection is a page of rows as the Web API returns it.
type collection struct {
	Value     []Record `json:"value"`
	NextLink  string   `json:"@odata.nextLink"`
	DeltaLink string   `json:"@odata.deltaLink"`
	Count     *int     `json:"@odata.count"`
}

// Query returns an iterator over every row matching q, fetching pages lazily
// and following @odata.nextLink verbatim. Stopping the loop early stops the
// paging. On failure the iterator yields (nil, err) once and ends; err is as
// for QueryPage.
//
//	for rec, err := range c.Query(ctx, "contacts", &dataverse.Query{Select: []string{"fullname"}}) {
//		if err != nil { return err }
//		...
//	}
func (c *Client) Query(ctx context.Context, set string, q *Query) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		link := ""
		for {
			p, err := c.QueryPage(ctx, set, q, link)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, r := range p.Records {
				if !yield(r, nil) {
					return
				}
			}
			if p.NextLink == "" {
				return
			}
			link = p.NextLink
		}
	}
}

// QueryPage fetches one page: the first when nextLink is "", otherwise the
// page at nextLink (a previous Page.NextLink, used verbatim with q's page
// size and annotation preferences). set may also be a navigation path such
// as "adx_invitations(<id>)/adx_invitation_webrole".
//
// Errors: *Error (400 for a bad query, 404 for an unknown set, ...), an
// error when nextLink points at another host, a transport error, or
// ctx.Err(), wrapped as "query <set>: ...".
func (c *Client) QueryPage(ctx context.Context, set string, q *Query, nextLink string) (*Page, error) {
	op := "query " + set
	u := nextLink
	if u == "" {
		u = c.apiURL + escapePath(set)
		if qs := q.encode(); qs != "" {
			u += "?" + qs
		}
	} else {
		var err error
		if u, err = c.resolveLink(nextLink); err != nil {
			return nil, wrap(op, err)
		}
	}
	cl := c.newCall(op, "query", set, http.MethodGet, u)
	if p := q.prefer(); p != "" {
		cl.header.Set("Prefer", p)
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	var coll collection
	if err := json.Unmarshal(resp.body, &coll); err != nil {
		return nil, wrap(op, fmt.Errorf("decode page: %w", err))
	}
	p := &Page{Records: coll.Value, NextLink: coll.NextLink, Count: -1}
	if coll.Count != nil {
		p.Count = *coll.Count
	}
	return p, nil
}

// resolveLink accepts an absolute link on the environment's own host (never
// sending the token elsewhere) or one relative to the service root.
func (c *Client) resolveLink(link string) (string, error) {
	if strings.HasPrefix(link, c.origin+"/") {
		return link, nil
	}
	u, err := url.Parse(link)
	if err != nil {
		return "", fmt.Errorf("bad link %q: %w", link, err)
	}
	if u.IsAbs() || u.Host != "" {
		return "", fmt.Errorf("link %q is not on %s", u.Scheme+"://"+u.Host, c.origin)
	}
	if strings.HasPrefix(link, "/") {
		return c.origin + link, nil
	}
	return c.apiURL + link, nil
}

// DeltaResult is the outcome of a change-tracking read.
type DeltaResult struct {
	Changed   []Record // created or updated rows (all rows on the first call)
	Deleted   []string // ids of rows deleted since the delta link
	DeltaLink string   // store it and pass it to the next Delta call
}

// Delta reads changes to set with change tracking. With deltaLink "" it
// returns every row (selectCols columns) and the first delta link; with a
// stored link it returns what changed since, including deleted ids. Pages
// are followed to the end. The table must have change tracking enabled.
//
// Errors: *Error; IsDeltaTokenExpired(err) when the link expired or is
// invalid (start over with ""), 400 when the table is not change-tracked; an
// error when deltaLink points at another host; a transport error or
// ctx.Err(); wrapped as "delta <set>: ...".
func (c *Client) Delta(ctx context.Context, set string, selectCols []string, deltaLink string) (*DeltaResult, error) {
	op := "delta " + set
	var u string
	if deltaLink == "" {
		u = c.apiURL + escapeSegment(set)
		if len(selectCols) > 0 {
			u += "?$select=" + escapeQueryValue(strings.Join(selectCols, ","))
		}
	} else {
		var err error
		if u, err = c.resolveLink(deltaLink); err != nil {
			return nil, wrap(op, err)
		}
	}
	res := &DeltaResult{}
	for {
		cl := c.newCall(op, "delta", set, http.MethodGet, u)
		cl.header.Set("Prefer", "odata.track-changes")
		resp, err := c.do(ctx, cl)
		if err != nil {
			return nil, err
		}
		var coll collection
		if err := json.Unmarshal(resp.body, &coll); err != nil {
			return nil, wrap(op, fmt.Errorf("decode page: %w", err))
		}
		for _, r := range coll.Value {
			if isDeleted(r) {
				if id := r.Str("id"); id != "" {
					res.Deleted = append(res.Deleted, id)
				}
				continue
			}
			res.Changed = append(res.Changed, r)
		}
		if coll.NextLink != "" {
			if u, err = c.resolveLink(coll.NextLink); err != nil {
				return nil, wrap(op, err)
			}
			continue
		}
		if coll.DeltaLink == "" {
			return nil, wrap(op, fmt.Errorf("response has neither @odata.nextLink nor @odata.deltaLink (is change tracking enabled?)"))
		}
		res.DeltaLink = coll.DeltaLink
		return res, nil
	}
}

// isDeleted recognises a $deletedEntity entry:
// {"@odata.context":"...#contacts/$deletedEntity","id":"...","reason":"deleted"}.
func isDeleted(r Record) bool {
	if ctx := r.Str("@odata.context"); strings.HasSuffix(ctx, "/$deletedEntity") {
		return true
	}
	if _, ok := r["@removed"]; ok { // OData 4.01 JSON form
		return true
	}
	reason := r.Str("reason")
	return (reason == "deleted" || reason == "changed") && r.Str("id") != "" && len(r) <= 3
}
