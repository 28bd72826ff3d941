package emulator

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const maxPageSize = 5000

type orderKey struct {
	col  *Column
	desc bool
}

// queryOpts are the parsed system query options for one table (also nested in $expand).
type queryOpts struct {
	t        *table
	sel      []*Column // nil = all readable columns
	selNames []string
	filter   pred
	hints    []eqHint
	orderby  []orderKey
	top      int // -1 = none
	count    bool
	expand   []*expandOpt
}

type expandOpt struct {
	nav    string
	single *lookupNav // single-valued
	coll   *lookupNav // 1:N: the referencing lookup on the related table
	nn     *manyToMany
	target *table
	opts   *queryOpts
}

// annots are the annotations requested with Prefer: odata.include-annotations.
type annots struct {
	formatted, lookupName, assocNav bool
	raw                             string
}

func (a annots) any() bool { return a.formatted || a.lookupName || a.assocNav }

// prefer is the parsed Prefer header.
type prefer struct {
	returnRep       bool
	maxPageSize     int
	trackChanges    bool
	continueOnError bool
	annots          annots
}

func parsePrefer(h http.Header) prefer {
	var p prefer
	for _, line := range h.Values("Prefer") {
		for _, part := range splitTop(line, ',') {
			part = strings.TrimSpace(part)
			k, v, _ := strings.Cut(part, "=")
			k = strings.TrimSpace(k)
			v = strings.Trim(strings.TrimSpace(v), `"`)
			switch strings.ToLower(k) {
			case "return":
				p.returnRep = v == "representation"
			case "odata.maxpagesize":
				if n, err := strconv.Atoi(v); err == nil && n > 0 {
					p.maxPageSize = n
				}
			case "odata.track-changes":
				p.trackChanges = true
			case "odata.continue-on-error":
				p.continueOnError = true
			case "odata.include-annotations":
				p.annots = parseAnnotations(v)
			}
		}
	}
	return p
}

func parseAnnotations(v string) annots {
	a := annots{raw: v}
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		match := func(full string) bool {
			if n == "*" || n == full {
				return true
			}
			if p, ok := strings.CutSuffix(n, "*"); ok && strings.HasPrefix(full, p) {
				return true
			}
			return false
		}
		a.formatted = a.formatted || match("OData.Community.Display.V1.FormattedValue")
		a.lookupName = a.lookupName || match("Microsoft.Dynamics.CRM.lookuplogicalname")
		a.assocNav = a.assocNav || match("Microsoft.Dynamics.CRM.associatednavigationproperty")
	}
	return a
}

// splitTop splits on sep outside parentheses and quotes.
func splitTop(s string, sep byte) []string {
	var out []string
	depth, inQ, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\'':
			inQ = !inQ
		case '(':
			if !inQ {
				depth++
			}
		case ')':
			if !inQ {
				depth--
			}
		default:
			if s[i] == sep && !inQ && depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// parseQuery reads the system query options. allowPaging=false for single-entity reads.
func (s *Server) parseQuery(t *table, get func(string) (string, bool), nested bool) (*queryOpts, *apiError) {
	q := &queryOpts{t: t, top: -1}
	if v, ok := get("$select"); ok && strings.TrimSpace(v) != "" {
		seen := map[string]bool{}
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			c, ok := t.columnForProperty(p)
			if !ok {
				return nil, errProperty(t, p)
			}
			if !seen[c.Name] {
				seen[c.Name] = true
				q.sel = append(q.sel, c)
				q.selNames = append(q.selNames, p)
			}
		}
	}
	if v, ok := get("$filter"); ok && strings.TrimSpace(v) != "" {
		f, hints, err := compileFilter(s.st, t, v)
		if err != nil {
			return nil, err
		}
		q.filter, q.hints = f, hints
	}
	if v, ok := get("$orderby"); ok && strings.TrimSpace(v) != "" {
		for _, p := range strings.Split(v, ",") {
			fs := strings.Fields(p)
			if len(fs) == 0 || len(fs) > 2 {
				return nil, errSyntax("Syntax error at position 0 in '%s'.", v)
			}
			c, ok := t.columnForProperty(fs[0])
			if !ok {
				return nil, errProperty(t, fs[0])
			}
			k := orderKey{col: c}
			if len(fs) == 2 {
				switch strings.ToLower(fs[1]) {
				case "asc":
				case "desc":
					k.desc = true
				default:
					return nil, errSyntax("Syntax error at position %d in '%s'.", len(fs[0])+1, v)
				}
			}
			q.orderby = append(q.orderby, k)
		}
	}
	if v, ok := get("$top"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return nil, errSyntax("Invalid value '%s' for $top query option found. The $top query option requires a non-negative integer value.", v)
		}
		q.top = n
	}
	if v, ok := get("$count"); ok {
		switch v {
		case "true":
			q.count = true
		case "false":
		default:
			return nil, errSyntax("'%s' is not a valid count option.", v)
		}
	}
	if _, ok := get("$skip"); ok {
		return nil, errSyntax("The query parameter $skip is not supported")
	}
	if _, ok := get("$search"); ok && !nested {
		return nil, errSyntax("The query parameter $search is not supported")
	}
	if v, ok := get("$expand"); ok && strings.TrimSpace(v) != "" {
		for _, item := range splitTop(v, ',') {
			e, err := s.parseExpand(t, strings.TrimSpace(item))
			if err != nil {
				return nil, err
			}
			q.expand = append(q.expand, e)
		}
	}
	return q, nil
}

func (s *Server) parseExpand(t *table, item string) (*expandOpt, *apiError) {
	nav, inner, hasOpts := cutKey(item)
	e := &expandOpt{nav: nav}
	if l, ok := t.navSingle[nav]; ok {
		e.single, e.target = l, s.reg.tables[l.target]
	} else if l, ok := t.navColl[nav]; ok {
		e.coll, e.target = l, l.from
	} else if m, ok := t.navNN[nav]; ok {
		e.nn = m
		other := m.table2
		if m.table1 != t.logical {
			other = m.table1
		}
		e.target = s.reg.tables[other]
	} else {
		return nil, errProperty(t, nav)
	}
	if e.target == nil {
		return nil, errProperty(t, nav)
	}
	vals := map[string]string{}
	if hasOpts {
		for _, part := range splitTop(inner, ';') {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok {
				continue
			}
			vals[k] = v
		}
	}
	q, err := s.parseQuery(e.target, func(k string) (string, bool) { v, ok := vals[k]; return v, ok }, true)
	if err != nil {
		return nil, err
	}
	e.opts = q
	return e, nil
}

// candidates returns rows possibly matching, in insertion order, using the smallest hash
// index among the equality hints.
func (s *Server) candidates(td *tableData, hints []eqHint) []*row {
	var best map[*row]struct{}
	found := false
	for _, h := range hints {
		set := s.st.index(td, h.col)[h.key]
		if !found || len(set) < len(best) {
			best, found = set, true
		}
	}
	if !found || len(best) > len(td.rows)/4 {
		return td.live()
	}
	out := make([]*row, 0, len(best))
	for r := range best {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *row) int { return cmpU(a.seq, b.seq) })
	return out
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cursor is the position after the last row of a page (encoded into $skiptoken).
type cursor struct {
	Seq  uint64 `json:"s"`
	Vals []any  `json:"v,omitempty"`
	Page int    `json:"p"`
}

func encodeSkipToken(c cursor) string {
	raw, _ := json.Marshal(c)
	inner := `<cookie page="` + strconv.Itoa(c.Page) + `"><emulator last="` + base64.RawURLEncoding.EncodeToString(raw) + `" /></cookie>`
	return `<cookie pagenumber="` + strconv.Itoa(c.Page+1) + `" pagingcookie="` + url.QueryEscape(url.QueryEscape(inner)) + `" istracking="False" />`
}

func decodeSkipToken(tok string) (cursor, bool) {
	var c cursor
	i := strings.Index(tok, `pagingcookie="`)
	if i < 0 {
		return c, false
	}
	rest := tok[i+len(`pagingcookie="`):]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return c, false
	}
	inner, err := url.QueryUnescape(rest[:j])
	if err == nil {
		if in2, err2 := url.QueryUnescape(inner); err2 == nil {
			inner = in2
		}
	}
	k := strings.Index(inner, `last="`)
	if k < 0 {
		return c, false
	}
	v := inner[k+len(`last="`):]
	if e := strings.IndexByte(v, '"'); e >= 0 {
		v = v[:e]
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || json.Unmarshal(raw, &c) != nil {
		return c, false
	}
	return c, true
}

// sortKeyVals are the order-by values of a row in cursor form.
func sortKeyVals(q *queryOpts, r *row) []any {
	out := make([]any, len(q.orderby))
	for i, k := range q.orderby {
		out[i] = jsonValue(k.col, r.vals[k.col.Name])
	}
	return out
}

func (s *Server) orderCmp(q *queryOpts) func(a, b *row) int {
	return func(a, b *row) int {
		for _, k := range q.orderby {
			c := compareValues(a.vals[k.col.Name], b.vals[k.col.Name])
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return cmpU(a.seq, b.seq)
	}
}

// afterCursor reports whether row r sorts strictly after the cursor.
func afterCursor(q *queryOpts, r *row, c cursor) bool {
	for i, k := range q.orderby {
		if i >= len(c.Vals) {
			break
		}
		cv := c.Vals[i]
		var stored any
		if cv != nil {
			// Cursor values are JSON; convert back through the column type.
			if v, err := convertIn(q.t, &Column{Name: k.col.Name, Type: cursorType(k.col), Options: nil}, jsonNum(cv)); err == nil {
				stored = v
			} else {
				stored = cv
			}
		}
		cmp := compareValues(r.vals[k.col.Name], stored)
		if k.desc {
			cmp = -cmp
		}
		if cmp != 0 {
			return cmp > 0
		}
	}
	return r.seq > c.Seq
}

func cursorType(c *Column) ColumnType {
	if c.Type == TypeLookup {
		return TypeUniqueIdentifier
	}
	return c.Type
}

func jsonNum(v any) any {
	if f, ok := v.(float64); ok {
		return json.Number(strconv.FormatFloat(f, 'f', -1, 64))
	}
	return v
}

// page runs a query and returns one page of rows, the total count and the next cursor.
// Callers hold the store read lock.
func (s *Server) page(td *tableData, q *queryOpts, extra pred, restrict []*row, pageSize int, after *cursor) (rows []*row, total int, next *cursor) {
	var cand []*row
	if restrict != nil {
		cand = restrict
	} else {
		cand = s.candidates(td, q.hints)
	}
	matched := make([]*row, 0, min(len(cand), 1024))
	for _, r := range cand {
		if r.deleted {
			continue
		}
		if extra != nil && !extra(r) {
			continue
		}
		if q.filter != nil && !q.filter(r) {
			continue
		}
		matched = append(matched, r)
	}
	total = len(matched)
	if len(q.orderby) > 0 {
		slices.SortStableFunc(matched, s.orderCmp(q))
	} else if restrict != nil {
		slices.SortFunc(matched, func(a, b *row) int { return cmpU(a.seq, b.seq) })
	}
	start := 0
	if after != nil {
		start = len(matched)
		for i, r := range matched {
			if afterCursor(q, r, *after) {
				start = i
				break
			}
		}
	}
	end := len(matched)
	if pageSize > 0 && start+pageSize < end {
		end = start + pageSize
		last := matched[end-1]
		pg := 1
		if after != nil {
			pg = after.Page + 1
		}
		next = &cursor{Seq: last.seq, Vals: sortKeyVals(q, last), Page: pg}
	}
	return matched[start:end], total, next
}

// serializer writes rows as Web API JSON objects.
type serializer struct {
	s      *Server
	an     annots
	base   string
	rowsIn int
}

func etag(r *row) string {
	v, _ := r.vals["versionnumber"].(int64)
	return `W/"` + strconv.FormatInt(v, 10) + `"`
}

func (z *serializer) row(t *table, r *row, q *queryOpts) *obj {
	z.rowsIn++
	o := &obj{keys: make([]string, 0, 16), vals: make([]any, 0, 16)}
	if _, ok := t.columns["versionnumber"]; ok {
		o.set("@odata.etag", etag(r))
	}
	cols := q.sel
	if cols == nil {
		cols = t.readable()
	}
	for _, c := range cols {
		if c.Name == t.pk {
			continue
		}
		z.column(o, t, c, r.vals[c.Name])
	}
	o.set(t.pk, r.id)
	for _, e := range q.expand {
		z.expand(o, t, r, e)
	}
	return o
}

func (z *serializer) column(o *obj, t *table, c *Column, v any) {
	prop := propertyName(c)
	if c.Type == TypeLookup {
		if rv, ok := v.(ref); ok {
			if z.an.formatted {
				if name, ok := z.s.primaryName(rv); ok {
					o.set(prop+"@OData.Community.Display.V1.FormattedValue", name)
				}
			}
			if z.an.assocNav {
				if l, ok := lookupFor(c, rv.table); ok {
					o.set(prop+"@Microsoft.Dynamics.CRM.associatednavigationproperty", l.nav)
				}
			}
			if z.an.lookupName {
				o.set(prop+"@Microsoft.Dynamics.CRM.lookuplogicalname", rv.table)
			}
		}
		o.set(prop, jsonValue(c, v))
		return
	}
	if z.an.formatted {
		if f, ok := formatted(c, v); ok {
			o.set(prop+"@OData.Community.Display.V1.FormattedValue", f)
		}
	}
	o.set(prop, jsonValue(c, v))
}

func lookupFor(c *Column, target string) (*lookupNav, bool) {
	for _, l := range c.lookups {
		if l.target == target {
			return l, true
		}
	}
	return nil, false
}

// primaryName returns the primary name of a referenced row (caller holds the read lock).
func (s *Server) primaryName(rv ref) (string, bool) {
	td, ok := s.st.data[rv.table]
	if !ok {
		return "", false
	}
	r, ok := td.rows[rv.id]
	if !ok || td.t.primaryName == "" {
		return "", false
	}
	n, _ := r.vals[td.t.primaryName].(string)
	return n, true
}

func (z *serializer) expand(o *obj, t *table, r *row, e *expandOpt) {
	s := z.s
	td := s.st.data[e.target.logical]
	switch {
	case e.single != nil:
		rv, ok := r.vals[e.single.column.Name].(ref)
		if !ok || rv.table != e.target.logical {
			o.set(e.nav, nil)
			return
		}
		rr, ok := td.rows[rv.id]
		if !ok {
			o.set(e.nav, nil)
			return
		}
		o.set(e.nav, z.row(e.target, rr, e.opts))
	default:
		var restrict []*row
		if e.coll != nil {
			for rr := range s.st.index(td, e.coll.column.Name)[strings.ToLower(r.id)] {
				if rv, ok := rr.vals[e.coll.column.Name].(ref); ok && rv.table == t.logical {
					restrict = append(restrict, rr)
				}
			}
		} else {
			for _, id := range s.st.related(e.nn, t.logical, r.id) {
				if rr, ok := td.rows[id]; ok {
					restrict = append(restrict, rr)
				}
			}
		}
		if restrict == nil {
			restrict = []*row{}
		}
		size := maxPageSize
		if e.opts.top >= 0 {
			size = e.opts.top
		}
		rows, _, _ := s.page(td, e.opts, nil, restrict, size, nil)
		list := make([]*obj, 0, len(rows))
		for _, rr := range rows {
			list = append(list, z.row(e.target, rr, e.opts))
		}
		o.set(e.nav, list)
	}
}

// contextSelect renders "(a,b,nav(c))" for @odata.context.
func contextSelect(q *queryOpts) string {
	if q == nil || (q.sel == nil && len(q.expand) == 0) {
		return ""
	}
	parts := append([]string{}, q.selNames...)
	if q.sel == nil && len(q.expand) > 0 {
		parts = append(parts, "*")
	}
	for _, e := range q.expand {
		parts = append(parts, e.nav+"("+strings.Trim(contextSelect(e.opts), "()")+")")
	}
	return "(" + strings.Join(parts, ",") + ")"
}

// queryValues adapts url.Values to the parseQuery getter.
func queryValues(v url.Values) func(string) (string, bool) {
	return func(k string) (string, bool) {
		vs, ok := v[k]
		if !ok || len(vs) == 0 {
			return "", false
		}
		return vs[0], true
	}
}

// serveQuery handles GET <set> (and related collections via restrict).
func (s *Server) serveQuery(req *request, t *table, restrict func() []*row, contextPath string) *response {
	pf := parsePrefer(req.header)
	if pf.trackChanges || req.query.Has("$deltatoken") || req.query.Has("$snapshot") {
		return s.serveDelta(req, t, pf)
	}
	q, err := s.parseQuery(t, queryValues(req.query), false)
	if err != nil {
		return errorResponse(err)
	}
	if req.query.Has("fetchXml") {
		return errorResponse(errSyntax("The query parameter fetchXml is not supported by this emulator"))
	}
	pageSize := maxPageSize
	if pf.maxPageSize > 0 {
		pageSize = min(pf.maxPageSize, maxPageSize)
	} else if q.top >= 0 {
		pageSize = min(q.top, maxPageSize)
	}
	var after *cursor
	if tok := req.query.Get("$skiptoken"); tok != "" {
		c, ok := decodeSkipToken(tok)
		if !ok {
			return errorResponse(errBadRequest("The $skiptoken value is not valid."))
		}
		after = &c
	}
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	td := s.st.data[t.logical]
	var rs []*row
	if restrict != nil {
		rs = restrict()
	}
	rows, total, next := s.page(td, q, nil, rs, pageSize, after)
	if pf.maxPageSize == 0 && q.top >= 0 {
		next = nil // $top without paging returns at most $top rows and no nextLink
	}
	z := &serializer{s: s, an: pf.annots, base: req.base}
	list := make([]*obj, len(rows))
	for i, r := range rows {
		list[i] = z.row(t, r, q)
	}
	o := &obj{}
	if contextPath == "" {
		contextPath = t.set
	}
	o.set("@odata.context", req.base+"$metadata#"+contextPath+contextSelect(q))
	if q.count {
		o.set("@odata.count", min(total, maxPageSize))
		if total > maxPageSize && pf.annots.any() {
			o.set("@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded", true)
		}
	}
	o.set("value", list)
	if next != nil {
		o.set("@odata.nextLink", nextLink(req, encodeSkipToken(*next)))
	}
	req.cost += s.costs.Query + time.Duration(len(rows)/100)*time.Millisecond
	resp := jsonResponse(http.StatusOK, appendJSON(nil, o))
	preferenceApplied(resp, pf, pf.maxPageSize > 0)
	return resp
}

func nextLink(req *request, tok string) string {
	var parts []string
	for _, p := range strings.Split(req.rawQuery, "&") {
		if p == "" || strings.HasPrefix(p, "$skiptoken=") || strings.HasPrefix(p, "%24skiptoken=") {
			continue
		}
		parts = append(parts, p)
	}
	parts = append(parts, "$skiptoken="+url.QueryEscape(tok))
	return req.base + req.path + "?" + strings.Join(parts, "&")
}

func preferenceApplied(resp *response, pf prefer, paged bool) {
	var applied []string
	if pf.annots.raw != "" {
		applied = append(applied, `odata.include-annotations="`+pf.annots.raw+`"`)
	}
	if paged {
		applied = append(applied, fmt.Sprintf("odata.maxpagesize=%d", min(pf.maxPageSize, maxPageSize)))
	}
	if len(applied) > 0 {
		resp.header.Set("Preference-Applied", strings.Join(applied, ","))
	}
}
