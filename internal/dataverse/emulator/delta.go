package emulator

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const deltaTimeLayout = "01/02/2006 15:04:05"

// serveDelta handles change tracking: the initial Prefer: odata.track-changes query (full
// result, paged, with @odata.deltaLink on the last page) and GETs of a delta link.
func (s *Server) serveDelta(req *request, t *table, pf prefer) *response {
	for _, opt := range []string{"$filter", "$orderby", "$expand", "$top"} {
		if req.query.Has(opt) {
			// Message from the change-tracking docs; the error code is UNCONFIRMED.
			return errorResponse(newErr(http.StatusBadRequest, codeInvalidArgument,
				"The \"%s\" query parameter isn't supported when Change Tracking is enabled.", opt))
		}
	}
	if !t.changeTrack {
		return errorResponse(errBadRequest("Change tracking is not enabled for entity '%s'.", t.logical))
	}
	q, err := s.parseQuery(t, queryValues(req.query), false)
	if err != nil {
		return errorResponse(err)
	}
	if tok := req.query.Get("$deltatoken"); tok != "" {
		return s.serveDeltaChanges(req, t, q, pf, tok)
	}
	pageSize := maxPageSize
	if pf.maxPageSize > 0 {
		pageSize = min(pf.maxPageSize, maxPageSize)
	}
	var after *cursor
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	snapshot := s.st.version
	if tok := req.query.Get("$skiptoken"); tok != "" {
		c, ok := decodeSkipToken(tok)
		if !ok {
			return errorResponse(errBadRequest("The $skiptoken value is not valid."))
		}
		after = &c
		if v, err := strconv.ParseInt(req.query.Get("$snapshot"), 10, 64); err == nil {
			snapshot = v
		}
	}
	td := s.st.data[t.logical]
	rows, _, next := s.page(td, q, nil, nil, pageSize, after)
	z := &serializer{s: s, an: pf.annots, base: req.base}
	list := make([]*obj, len(rows))
	for i, r := range rows {
		list[i] = z.row(t, r, q)
	}
	o := &obj{}
	o.set("@odata.context", req.base+"$metadata#"+t.set+contextSelect(q))
	o.set("value", list)
	if next != nil {
		// The snapshot version rides along so the delta link of the last page covers
		// every change made while the client was paging.
		link := nextLink(req, encodeSkipToken(*next))
		if !req.query.Has("$snapshot") {
			link += "&$snapshot=" + strconv.FormatInt(snapshot, 10)
		}
		o.set("@odata.nextLink", link)
	} else {
		o.set("@odata.deltaLink", s.deltaLink(req, q, snapshot))
	}
	req.cost += s.costs.Query + time.Duration(len(rows)/100)*time.Millisecond
	resp := jsonResponse(http.StatusOK, appendJSON(nil, o))
	resp.header.Set("Preference-Applied", "odata.track-changes")
	return resp
}

func (s *Server) deltaLink(req *request, q *queryOpts, version int64) string {
	tok := strconv.FormatInt(version, 10) + "!" + s.now().UTC().Format(deltaTimeLayout)
	link := req.base + q.t.set + "?"
	if len(q.selNames) > 0 {
		link += "$select=" + strings.Join(q.selNames, ",") + "&"
	}
	return link + "$deltatoken=" + url.QueryEscape(tok)
}

func parseDeltaToken(tok string) (int64, time.Time, bool) {
	v, ts, ok := strings.Cut(tok, "!")
	if !ok {
		return 0, time.Time{}, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, time.Time{}, false
	}
	tm, err := time.Parse(deltaTimeLayout, ts)
	if err != nil {
		return 0, time.Time{}, false
	}
	return n, tm, true
}

func (s *Server) serveDeltaChanges(req *request, t *table, q *queryOpts, pf prefer, tok string) *response {
	version, issued, ok := parseDeltaToken(tok)
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	// Dataverse answers an expired token with ExpiredVersionStamp; the emulator gives the
	// same answer for a token it never issued (UNCONFIRMED what the service says there).
	if !ok || version > s.st.version || version < 0 || s.now().Sub(issued) > s.opts.ChangeTrackingExpiry {
		return errorResponse(newErr(http.StatusBadRequest, codeExpiredVersionStamp,
			"Version stamp associated with the client has expired. Please perform a full sync."))
	}
	td := s.st.data[t.logical]
	var changed []*row
	for _, r := range td.live() {
		if r.deleted {
			continue
		}
		if v, _ := r.vals["versionnumber"].(int64); v > version {
			changed = append(changed, r)
		}
	}
	slices.SortFunc(changed, func(a, b *row) int {
		va, _ := a.vals["versionnumber"].(int64)
		vb, _ := b.vals["versionnumber"].(int64)
		return int(va - vb)
	})
	z := &serializer{s: s, an: pf.annots, base: req.base}
	list := make([]*obj, 0, len(changed))
	for _, r := range changed {
		list = append(list, z.row(t, r, q))
	}
	// New/updated rows first, then deletions (as the docs describe).
	seen := map[string]bool{}
	for _, tb := range td.tombs {
		if tb.version <= version || seen[tb.id] {
			continue
		}
		if _, alive := td.rows[tb.id]; alive {
			continue
		}
		seen[tb.id] = true
		d := &obj{}
		d.set("@odata.context", req.base+"$metadata#"+t.set+"/$deletedEntity")
		d.set("id", tb.id)
		d.set("reason", "deleted")
		list = append(list, d)
	}
	o := &obj{}
	o.set("@odata.context", req.base+"$metadata#"+t.set+contextSelect(q)+"/$delta")
	o.set("@odata.deltaLink", s.deltaLink(req, q, s.st.version))
	o.set("value", list)
	req.cost += s.costs.Query + time.Duration(len(list)/100)*time.Millisecond
	return jsonResponse(http.StatusOK, appendJSON(nil, o))
}
