package emulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// dispatch routes one Web API operation.
func (s *Server) dispatch(req *request) *response {
	segs := splitPath(req.path)
	for i := range segs {
		segs[i] = unescape(segs[i])
	}
	if len(segs) == 0 {
		return s.serviceDocument(req)
	}
	first := segs[0]
	switch first {
	case "$metadata":
		return s.metadataDocument(req)
	case "WhoAmI", "WhoAmI()":
		if req.method != http.MethodGet || len(segs) > 1 {
			return errorResponse(errNoResource(req.base + req.path))
		}
		return s.whoAmI(req)
	case "$batch":
		return errorResponse(errBadRequest("Nested $batch requests are not supported."))
	}
	name, key, hasKey := cutKey(first)
	t, ok := s.reg.sets[name]
	if !ok {
		if hasKey || strings.Contains(name, ".") {
			return errorResponse(errSegment(first))
		}
		return errorResponse(errSegment(name))
	}
	if !hasKey {
		switch {
		case len(segs) == 1 && req.method == http.MethodGet:
			req.route = t.set
			return s.serveQuery(req, t, nil, "")
		case len(segs) == 1 && req.method == http.MethodPost:
			return s.serveCreate(req, t)
		case len(segs) == 2 && segs[1] == "$count" && req.method == http.MethodGet:
			return s.serveCount(req, t)
		case len(segs) == 1:
			return errorResponse(newErr(http.StatusMethodNotAllowed, "", "The requested resource does not support http method '%s'.", req.method))
		}
		return errorResponse(errSegment(segs[1]))
	}
	if len(segs) == 1 {
		switch req.method {
		case http.MethodGet:
			return s.serveRetrieve(req, t, key)
		case http.MethodPatch:
			return s.serveUpdate(req, t, key)
		case http.MethodDelete:
			return s.serveDelete(req, t, key)
		}
		return errorResponse(newErr(http.StatusMethodNotAllowed, "", "The requested resource does not support http method '%s'.", req.method))
	}
	seg := segs[1]
	if strings.HasPrefix(seg, "Microsoft.Dynamics.CRM.") {
		return s.serveBoundAction(req, t, key, strings.TrimPrefix(seg, "Microsoft.Dynamics.CRM."), segs[2:])
	}
	navName, navKey, navHasKey := cutKey(seg)
	isRef := len(segs) == 3 && segs[2] == "$ref"
	if len(segs) > 3 || (len(segs) == 3 && !isRef) {
		return errorResponse(errSegment(segs[len(segs)-1]))
	}
	if isRef {
		return s.serveRef(req, t, key, navName, navKey, navHasKey)
	}
	if navHasKey {
		return errorResponse(errSegment(seg))
	}
	if _, ok := t.navMulti[navName]; ok {
		return s.serveNavigation(req, t, key, navName)
	}
	if _, ok := t.navColl[navName]; ok {
		return s.serveNavigation(req, t, key, navName)
	}
	if _, ok := t.navNN[navName]; ok {
		return s.serveNavigation(req, t, key, navName)
	}
	return s.serveProperty(req, t, key, navName)
}

func decodeBody(t *table, b []byte) (map[string]any, *apiError) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		set := ""
		if t != nil {
			set = t.set
		}
		return nil, newErr(http.StatusBadRequest, codePayload,
			"Error identified in Payload provided by the user for Entity :'%s'  ---->  InnerException : Microsoft.OData.ODataException: Invalid JSON. A token was not recognized in the JSON content.", set)
	}
	return m, nil
}

// findRow resolves a key segment (GUID or alternate key) to a row. The caller holds the
// store lock. alt is non-nil for alternate keys (for upsert-create).
func (s *Server) findRow(t *table, key string) (*row, map[string]any, *apiError) {
	key = strings.TrimSpace(key)
	td := s.st.data[t.logical]
	if g := normGUID(strings.TrimPrefix(key, t.pk+"=")); isGUID(g) {
		return td.rows[g], nil, nil
	}
	vals := map[string]any{}
	var names []string
	for _, part := range splitTop(key, ',') {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, nil, errSyntax("Bad Request - Error in query syntax.")
		}
		k = strings.TrimSpace(k)
		var c *Column
		if cc, ok := t.columnForProperty(k); ok {
			c = cc
		} else {
			return nil, nil, errProperty(t, k)
		}
		lit := strings.TrimSpace(v)
		var val any
		switch {
		case strings.HasPrefix(lit, "'") && strings.HasSuffix(lit, "'") && len(lit) >= 2:
			val = strings.ReplaceAll(lit[1:len(lit)-1], "''", "'")
		case c.Type == TypeLookup || c.Type == TypeUniqueIdentifier:
			val = normGUID(lit)
		default:
			val = json.Number(lit)
		}
		conv := c
		if c.Type == TypeLookup {
			conv = &Column{Name: c.Name, Type: TypeUniqueIdentifier}
		}
		sv, err := convertIn(t, conv, val)
		if err != nil {
			return nil, nil, errSyntax("Bad Request - Error in query syntax.")
		}
		if c.Type == TypeLookup {
			sv = ref{table: c.Targets[0], id: sv.(string)}
		}
		vals[c.Name] = sv
		names = append(names, c.Name)
	}
	slices.Sort(names)
	var key0 *altKey
	for i := range t.keys {
		cols := slices.Clone(t.keys[i].columns)
		slices.Sort(cols)
		if slices.Equal(cols, names) {
			key0 = &t.keys[i]
			break
		}
	}
	if key0 == nil {
		return nil, nil, newErr(http.StatusBadRequest, codeInvalidArgument,
			"The specified key attributes are not a defined key for the %s entity", t.logical)
	}
	return s.findByValues(td, vals), vals, nil
}

func (s *Server) findByValues(td *tableData, vals map[string]any) *row {
	var first string
	for k := range vals {
		first = k
		break
	}
	for r := range s.st.index(td, first)[indexKey(vals[first])] {
		match := true
		for k, v := range vals {
			if compareValues(r.vals[k], v) != 0 {
				match = false
				break
			}
		}
		if match {
			return r
		}
	}
	return nil
}

// resolveRef turns an @odata.bind / @odata.id value into a table and row id. The caller
// holds the store lock.
func (s *Server) resolveRef(req *request, raw string) (*table, string, *apiError) {
	v := strings.TrimSpace(raw)
	if strings.HasPrefix(v, "$") && !strings.HasPrefix(v, "$metadata") {
		id, rest, _ := strings.Cut(v[1:], "/")
		u, ok := req.contentIDs[id]
		if !ok {
			return nil, "", newErr(http.StatusBadRequest, codeBatchContentIDNotExists, "Content-ID Reference: '$%s' does not exist in the batch context.", id)
		}
		v = u
		if rest != "" {
			v += "/" + rest
		}
	}
	if i := strings.Index(v, "/api/data/v"); i >= 0 {
		v = v[i+len("/api/data/v"):]
		if j := strings.IndexByte(v, '/'); j >= 0 {
			v = v[j+1:]
		}
	}
	v = unescape(strings.TrimPrefix(v, "/"))
	name, key, ok := cutKey(v)
	if !ok {
		return nil, "", errBadRequest("The URI '%s' is not valid because it is not based on '%s'.", raw, req.base)
	}
	t, ok := s.reg.sets[name]
	if !ok {
		return nil, "", errSegment(name)
	}
	r, _, err := s.findRow(t, key)
	if err != nil {
		return nil, "", err
	}
	if r == nil {
		if g := normGUID(key); isGUID(g) {
			return nil, "", errNotFound(t, g)
		}
		return nil, "", errKeyNotFound(t)
	}
	return t, r.id, nil
}

func (s *Server) entityURL(req *request, t *table, id string) string {
	return req.base + t.set + "(" + id + ")"
}

// parsedBody is a create/update payload split by kind.
type parsedBody struct {
	cols      map[string]any
	sent      []string
	deepOne   []deepOne
	collBinds []collOp
	collDeep  []collOp
	pkID      string
}

type deepOne struct {
	l    *lookupNav
	body map[string]any
}

type collOp struct {
	nav    string
	coll   *lookupNav
	nn     *manyToMany
	refs   []string
	bodies []map[string]any
}

func (s *Server) parseBody(req *request, t *table, body map[string]any, create bool) (*parsedBody, *apiError) {
	pb := &parsedBody{cols: map[string]any{}}
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := body[k]
		if strings.HasPrefix(k, "@") {
			continue
		}
		if prop, ann, ok := strings.Cut(k, "@"); ok {
			if ann != "odata.bind" {
				continue
			}
			if ls, ok := t.navMulti[prop]; ok {
				col := ls[0].column
				if v == nil {
					pb.cols[col.Name] = nil
					pb.sent = append(pb.sent, col.Name)
					continue
				}
				sv, ok := v.(string)
				if !ok {
					return nil, errBadRequest("The value of '%s' must be a string URI.", k)
				}
				tt, id, err := s.resolveRef(req, sv)
				if err != nil {
					return nil, err
				}
				l, ok := t.resolveNav(prop, tt.logical)
				if !ok {
					return nil, errBadRequest("A navigation property '%s' of type '%s' cannot be bound to an entity of type '%s'.", prop, ls[0].target, tt.logical)
				}
				pb.cols[l.column.Name] = ref{table: tt.logical, id: id}
				pb.sent = append(pb.sent, l.column.Name)
				continue
			}
			op, ok := collNav(t, prop)
			if !ok {
				return nil, errUndeclaredNav(t, prop)
			}
			if !create {
				return nil, errBadRequest("Collection-valued navigation property '%s' cannot be bound in an update; associate with '%s/$ref' instead.", prop, prop)
			}
			arr, ok := v.([]any)
			if !ok {
				return nil, errBadRequest("The value of '%s' must be an array of URIs.", k)
			}
			for _, e := range arr {
				sv, ok := e.(string)
				if !ok {
					return nil, errBadRequest("The value of '%s' must be an array of URIs.", k)
				}
				op.refs = append(op.refs, sv)
			}
			pb.collBinds = append(pb.collBinds, op)
			continue
		}
		if ls, ok := t.navMulti[k]; ok {
			switch x := v.(type) {
			case nil:
				pb.cols[ls[0].column.Name] = nil
				pb.sent = append(pb.sent, ls[0].column.Name)
			case map[string]any:
				pb.deepOne = append(pb.deepOne, deepOne{l: ls[0], body: x})
			default:
				return nil, errPayloadProperty(t, k)
			}
			continue
		}
		if op, ok := collNav(t, k); ok {
			arr, ok := v.([]any)
			if !ok {
				return nil, errBadRequest("The value of '%s' must be an array.", k)
			}
			for _, e := range arr {
				m, ok := e.(map[string]any)
				if !ok {
					return nil, errBadRequest("The value of '%s' must be an array of objects.", k)
				}
				op.bodies = append(op.bodies, m)
			}
			pb.collDeep = append(pb.collDeep, op)
			continue
		}
		if k == t.pk {
			sv, _ := v.(string)
			if g := normGUID(sv); isGUID(g) {
				pb.pkID = g
				continue
			}
			return nil, errPayloadProperty(t, k)
		}
		c, ok := t.columns[k]
		if !ok || c.Type == TypeLookup {
			return nil, errPayloadProperty(t, k)
		}
		if c.readOnly {
			continue // Dataverse ignores values for read-only columns
		}
		val, err := convertIn(t, c, v)
		if err != nil {
			return nil, err
		}
		pb.cols[k] = val
		pb.sent = append(pb.sent, k)
	}
	return pb, nil
}

func collNav(t *table, nav string) (collOp, bool) {
	if l, ok := t.navColl[nav]; ok {
		return collOp{nav: nav, coll: l}, true
	}
	if m, ok := t.navNN[nav]; ok {
		return collOp{nav: nav, nn: m}, true
	}
	return collOp{}, false
}

// applyState keeps statecode/statuscode a valid pair.
func applyState(t *table, vals map[string]any, sentState, sentStatus bool, id string) *apiError {
	st, ok := t.columns["statecode"]
	ss, ok2 := t.columns["statuscode"]
	if !ok || !ok2 {
		return nil
	}
	state, _ := vals["statecode"].(int)
	status, hasStatus := vals["statuscode"].(int)
	switch {
	case sentStatus && !sentState && hasStatus:
		vals["statecode"] = ss.stateOf[status]
	case sentState && !sentStatus:
		vals["statuscode"] = st.defStatus[state]
	case sentState && sentStatus && hasStatus:
		if ss.stateOf[status] != state {
			// UNCONFIRMED: exact code; the message follows Dataverse's wording.
			return newErr(http.StatusBadRequest, codeInvalidArgument, "%d is not a valid status code for state code %sState.%s on %s with Id %s.",
				status, strings.ToUpper(t.logical[:1])+t.logical[1:], st.Options[state], t.logical, id)
		}
	}
	if _, ok := vals["statecode"].(int); !ok {
		vals["statecode"] = 0
	}
	if _, ok := vals["statuscode"].(int); !ok {
		vals["statuscode"] = st.defStatus[vals["statecode"].(int)]
	}
	return nil
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }

// checkKeys enforces alternate-key uniqueness (null key values are not indexed).
func (s *Server) checkKeys(t *table, vals map[string]any, self string) *apiError {
	td := s.st.data[t.logical]
	for _, k := range t.keys {
		kv := map[string]any{}
		complete := true
		for _, c := range k.columns {
			if vals[c] == nil {
				complete = false
				break
			}
			kv[c] = vals[c]
		}
		if !complete {
			continue
		}
		if r := s.findByValues(td, kv); r != nil && r.id != self {
			return newErr(http.StatusPreconditionFailed, codeDuplicateAlternateKey,
				"A record that has the attribute values %s already exists. The entity key %s requires that this set of attributes contains unique values. Select unique values and try again.",
				strings.Join(k.columns, ", "), k.name)
		}
	}
	return nil
}

// createRow inserts a row (with deep inserts and collection binds) inside tx.
func (s *Server) createRow(tx *tx, req *request, t *table, body map[string]any, id string, preset map[string]any) (*row, *apiError) {
	pb, err := s.parseBody(req, t, body, true)
	if err != nil {
		return nil, err
	}
	td := s.st.data[t.logical]
	for _, d := range pb.deepOne {
		tt := s.reg.tables[d.l.target]
		child, err := s.createRow(tx, req, tt, d.body, "", nil)
		if err != nil {
			return nil, err
		}
		pb.cols[d.l.column.Name] = ref{table: tt.logical, id: child.id}
		pb.sent = append(pb.sent, d.l.column.Name)
	}
	if id == "" {
		id = pb.pkID
	}
	if id == "" {
		id = newGUID()
	}
	if _, exists := td.rows[id]; exists {
		return nil, newErr(http.StatusPreconditionFailed, codeDuplicateRecord, "Cannot insert duplicate key.")
	}
	vals := make(map[string]any, len(t.columns))
	for _, c := range t.columns {
		if c.Default != nil {
			vals[c.Name] = c.Default
		}
	}
	for k, v := range preset {
		vals[k] = v
		pb.sent = append(pb.sent, k)
	}
	for k, v := range pb.cols {
		vals[k] = v
	}
	s.stampCreate(tx, t, vals)
	if err := s.addDefaultMailbox(tx, req, t, id, vals); err != nil {
		return nil, err
	}
	_, sentState := pb.cols["statecode"]
	_, sentStatus := pb.cols["statuscode"]
	if err := applyState(t, vals, sentState, sentStatus, id); err != nil {
		return nil, err
	}
	if t.computed != nil {
		t.computed(vals)
	}
	for k, v := range vals {
		if v == nil {
			delete(vals, k)
		}
	}
	if err := s.checkKeys(t, vals, id); err != nil {
		return nil, err
	}
	r := tx.insert(td, id, vals)
	for _, op := range pb.collBinds {
		for _, raw := range op.refs {
			tt, cid, err := s.resolveRef(req, raw)
			if err != nil {
				return nil, err
			}
			if err := s.link(tx, req, t, r.id, op, tt, cid); err != nil {
				return nil, err
			}
		}
	}
	for _, op := range pb.collDeep {
		for _, b := range op.bodies {
			if op.coll != nil {
				if _, err := s.createRow(tx, req, op.coll.from, b, "", map[string]any{op.coll.column.Name: ref{table: t.logical, id: r.id}}); err != nil {
					return nil, err
				}
				continue
			}
			other := otherSide(op.nn, t.logical)
			child, err := s.createRow(tx, req, s.reg.tables[other], b, "", nil)
			if err != nil {
				return nil, err
			}
			if err := s.link(tx, req, t, r.id, op, s.reg.tables[other], child.id); err != nil {
				return nil, err
			}
		}
	}
	req.cost += s.costs.Create
	s.event(tx, req, "Create", t, r, nil, nil)
	return r, nil
}

func otherSide(m *manyToMany, tableName string) string {
	if m.table1 == tableName {
		return m.table2
	}
	return m.table1
}

// link associates (N:N) or sets the referencing lookup (1:N) for a collection nav.
func (s *Server) link(tx *tx, req *request, t *table, id string, op collOp, tt *table, otherID string) *apiError {
	if op.nn != nil {
		if tt.logical != otherSide(op.nn, t.logical) {
			return errBadRequest("The entity type '%s' is not valid for the navigation property '%s'.", tt.logical, op.nav)
		}
		a, b := pairFor(op.nn, t.logical, id, otherID)
		if !tx.associate(op.nn, a, b) {
			return newErr(http.StatusPreconditionFailed, codeDuplicateRecord, "Cannot insert duplicate key.")
		}
		req.cost += s.costs.Associate
		return nil
	}
	if tt.logical != op.coll.from.logical {
		return errBadRequest("The entity type '%s' is not valid for the navigation property '%s'.", tt.logical, op.nav)
	}
	td := s.st.data[tt.logical]
	rr := td.rows[otherID]
	return s.updateValues(tx, req, tt, rr, map[string]any{op.coll.column.Name: ref{table: t.logical, id: id}}, []string{op.coll.column.Name})
}

func (s *Server) stampCreate(tx *tx, t *table, vals map[string]any) {
	user := ref{table: "systemuser", id: tx.caller.userID}
	now := tx.now.UTC().Truncate(time.Second)
	set := func(col string, v any) {
		if _, ok := t.columns[col]; ok {
			vals[col] = v
		}
	}
	if _, seeded := vals["createdon"].(time.Time); !seeded { // Insert may seed it
		set("createdon", now)
	}
	if _, seeded := vals["modifiedon"].(time.Time); !seeded {
		set("modifiedon", now)
	}
	set("createdby", user)
	set("modifiedby", user)
	if ov, ok := vals["overriddencreatedon"].(time.Time); ok {
		set("createdon", ov)
	}
	if t.userOwned {
		if _, ok := vals["ownerid"].(ref); !ok {
			vals["ownerid"] = user
		}
		stampOwner(t, vals, vals["ownerid"].(ref))
		set("owningbusinessunit", ref{table: "businessunit", id: BusinessUnitID})
	}
	if c, ok := t.columns["organizationid"]; ok && c.Type == TypeLookup && slices.Contains(c.Targets, "organization") {
		vals["organizationid"] = ref{table: "organization", id: OrganizationID}
	}
	if t.activity {
		set("activitytypecode", t.logical)
	}
}

// stampOwner keeps owninguser/owningteam/owneridtype in step with ownerid.
func stampOwner(t *table, vals map[string]any, o ref) {
	delete(vals, "owninguser")
	delete(vals, "owningteam")
	if o.table == "systemuser" {
		vals["owninguser"] = o
	} else {
		vals["owningteam"] = o
	}
	if _, ok := t.columns["owneridtype"]; ok {
		vals["owneridtype"] = o.table
	}
}

// updateRow applies a PATCH body to an existing row.
func (s *Server) updateRow(tx *tx, req *request, t *table, r *row, body map[string]any) *apiError {
	pb, err := s.parseBody(req, t, body, false)
	if err != nil {
		return err
	}
	for _, d := range pb.deepOne {
		tt := s.reg.tables[d.l.target]
		child, err := s.createRow(tx, req, tt, d.body, "", nil)
		if err != nil {
			return err
		}
		pb.cols[d.l.column.Name] = ref{table: tt.logical, id: child.id}
		pb.sent = append(pb.sent, d.l.column.Name)
	}
	for _, op := range pb.collDeep {
		for _, b := range op.bodies {
			if op.coll == nil {
				return errBadRequest("Deep insert of '%s' is not supported in an update.", op.nav)
			}
			if _, err := s.createRow(tx, req, op.coll.from, b, "", map[string]any{op.coll.column.Name: ref{table: t.logical, id: r.id}}); err != nil {
				return err
			}
		}
	}
	return s.updateValues(tx, req, t, r, pb.cols, pb.sent)
}

// updateValues writes column values (stored form) and fires Update.
func (s *Server) updateValues(tx *tx, req *request, t *table, r *row, cols map[string]any, sent []string) *apiError {
	old := r.vals
	vals := copyVals(old)
	for k, v := range cols {
		vals[k] = v
	}
	if _, ok := t.columns["modifiedon"]; ok {
		vals["modifiedon"] = tx.now.UTC().Truncate(time.Second)
	}
	if _, ok := t.columns["modifiedby"]; ok {
		vals["modifiedby"] = ref{table: "systemuser", id: tx.caller.userID}
	}
	if o, ok := cols["ownerid"].(ref); ok && t.userOwned {
		stampOwner(t, vals, o)
	}
	_, sentState := cols["statecode"]
	_, sentStatus := cols["statuscode"]
	if err := applyState(t, vals, sentState, sentStatus, r.id); err != nil {
		return err
	}
	if t.computed != nil {
		t.computed(vals)
	}
	for k, v := range vals {
		if v == nil {
			delete(vals, k)
		}
	}
	if err := s.checkKeys(t, vals, r.id); err != nil {
		return err
	}
	td := s.st.data[t.logical]
	tx.update(td, r, vals)
	req.cost += s.costs.Update
	changed := slices.Clone(sent)
	for _, k := range []string{"statecode", "statuscode"} {
		if compareValues(old[k], vals[k]) != 0 && !contains(changed, k) {
			changed = append(changed, k)
		}
	}
	s.event(tx, req, "Update", t, r, old, changed)
	return s.mailboxUpdated(tx, req, t, r, cols)
}

// deleteRow removes a row with Dataverse's cascade rules: referencing rows are deleted
// (Cascade) or their lookup is cleared (RemoveLink); N:N links are removed.
func (s *Server) deleteRow(tx *tx, req *request, t *table, r *row) {
	td := s.st.data[t.logical]
	old := r.vals
	tx.remove(td, r)
	for _, m := range t.navNN {
		for _, other := range s.st.related(m, t.logical, r.id) {
			a, b := pairFor(m, t.logical, r.id, other)
			tx.disassociate(m, a, b)
		}
	}
	for _, l := range s.incoming(t.logical) {
		ftd := s.st.data[l.from.logical]
		var refs []*row
		for rr := range s.st.index(ftd, l.column.Name)[strings.ToLower(r.id)] {
			if rv, ok := rr.vals[l.column.Name].(ref); ok && rv.table == t.logical {
				refs = append(refs, rr)
			}
		}
		slices.SortFunc(refs, func(a, b *row) int { return cmpU(a.seq, b.seq) })
		for _, rr := range refs {
			if rr.deleted {
				continue
			}
			if l.cascade {
				s.deleteRow(tx, req, l.from, rr)
			} else {
				_ = s.updateValues(tx, req, l.from, rr, map[string]any{l.column.Name: nil}, []string{l.column.Name})
			}
		}
	}
	req.cost += s.costs.Delete
	s.event(tx, req, "Delete", t, r, old, nil)
}

// incoming lists lookups (on any table) that can target the given table.
func (s *Server) incoming(target string) []*lookupNav {
	var out []*lookupNav
	for _, name := range sortedTableNames(s.reg) {
		t := s.reg.tables[name]
		for _, cn := range t.order {
			c := t.columns[cn]
			if c.Type != TypeLookup || c.readOnly {
				continue
			}
			for _, l := range c.lookups {
				if l.target == target {
					out = append(out, l)
					break
				}
			}
		}
	}
	return out
}

func sortedTableNames(r *registry) []string {
	out := make([]string, 0, len(r.tables))
	for n := range r.tables {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// write runs fn in the request's change set, or in its own transaction.
func (s *Server) write(req *request, fn func(tx *tx) (*response, *apiError)) *response {
	if req.tx != nil {
		u, e, m := req.tx.savepoint()
		resp, err := fn(req.tx)
		if err != nil {
			req.tx.rollbackTo(u, e, m)
			return errorResponse(err)
		}
		return resp
	}
	tx := s.st.begin(s.now(), req.caller)
	resp, err := func() (resp *response, err *apiError) {
		defer func() {
			if p := recover(); p != nil {
				tx.rollback()
				panic(p)
			}
		}()
		return fn(tx)
	}()
	if err != nil {
		tx.rollback()
		return errorResponse(err)
	}
	s.committed(tx)
	return resp
}

// representation builds the body for Prefer: return=representation (honours $select).
func (s *Server) representation(req *request, t *table, r *row, pf prefer) (*obj, *apiError) {
	q, err := s.parseQuery(t, queryValues(req.query), false)
	if err != nil {
		return nil, err
	}
	q.expand = nil // $expand is ignored on write representations
	z := &serializer{s: s, an: pf.annots, base: req.base}
	o := z.row(t, r, q)
	out := &obj{}
	out.set("@odata.context", req.base+"$metadata#"+t.set+contextSelect(q)+"/$entity")
	out.keys = append(out.keys, o.keys...)
	out.vals = append(out.vals, o.vals...)
	return out, nil
}

func (s *Server) serveCreate(req *request, t *table) *response {
	body, err := decodeBody(t, req.body)
	if err != nil {
		return errorResponse(err)
	}
	pf := parsePrefer(req.header)
	return s.write(req, func(tx *tx) (*response, *apiError) {
		r, err := s.createRow(tx, req, t, body, "", nil)
		if err != nil {
			return nil, err
		}
		return s.writeResult(req, t, r, pf, http.StatusCreated)
	})
}

// writeResult is the response to a successful create/update/upsert.
func (s *Server) writeResult(req *request, t *table, r *row, pf prefer, repStatus int) (*response, *apiError) {
	loc := s.entityURL(req, t, r.id)
	if pf.returnRep {
		o, err := s.representation(req, t, r, pf)
		if err != nil {
			return nil, err
		}
		resp := jsonResponse(repStatus, appendJSON(nil, o))
		applied := []string{"return=representation"}
		if pf.annots.raw != "" {
			applied = append(applied, `odata.include-annotations="`+pf.annots.raw+`"`)
		}
		resp.header.Set("Preference-Applied", strings.Join(applied, ","))
		if req.inBatch {
			resp.header.Set("Location", loc)
		}
		return resp, nil
	}
	resp := newResponse(http.StatusNoContent)
	resp.header.Set("OData-Version", "4.0")
	resp.header.Set("OData-EntityId", loc)
	if req.inBatch {
		resp.header.Set("Location", loc)
	}
	return resp, nil
}

func (s *Server) serveRetrieve(req *request, t *table, key string) *response {
	pf := parsePrefer(req.header)
	q, err := s.parseQuery(t, queryValues(req.query), false)
	if err != nil {
		return errorResponse(err)
	}
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	r, _, err := s.findRow(t, key)
	if err != nil {
		return errorResponse(err)
	}
	if r == nil {
		return errorResponse(s.notFound(t, key))
	}
	req.cost += s.costs.Retrieve
	if inm := req.header.Get("If-None-Match"); inm != "" && inm != "null" && len(q.expand) == 0 && !pf.annots.any() {
		if inm == etag(r) || inm == "*" {
			resp := newResponse(http.StatusNotModified)
			resp.header.Set("ETag", etag(r))
			return resp
		}
	}
	z := &serializer{s: s, an: pf.annots, base: req.base}
	o := z.row(t, r, q)
	out := &obj{}
	out.set("@odata.context", req.base+"$metadata#"+t.set+contextSelect(q)+"/$entity")
	out.keys = append(out.keys, o.keys...)
	out.vals = append(out.vals, o.vals...)
	resp := jsonResponse(http.StatusOK, appendJSON(nil, out))
	resp.header.Set("ETag", etag(r))
	preferenceApplied(resp, pf, false)
	return resp
}

func (s *Server) notFound(t *table, key string) *apiError {
	if g := normGUID(strings.TrimPrefix(key, t.pk+"=")); isGUID(g) {
		return errNotFound(t, g)
	}
	return errKeyNotFound(t)
}

// serveUpdate is PATCH: update, or upsert-create when the row does not exist.
func (s *Server) serveUpdate(req *request, t *table, key string) *response {
	body, err := decodeBody(t, req.body)
	if err != nil {
		return errorResponse(err)
	}
	pf := parsePrefer(req.header)
	ifMatch := req.header.Get("If-Match")
	ifNoneMatch := req.header.Get("If-None-Match")
	return s.write(req, func(tx *tx) (*response, *apiError) {
		r, alt, err := s.findRow(t, key)
		if err != nil {
			return nil, err
		}
		if r == nil {
			if ifMatch != "" {
				return nil, s.notFound(t, key)
			}
			id := ""
			if alt == nil {
				id = normGUID(strings.TrimPrefix(key, t.pk+"="))
			}
			nr, err := s.createRow(tx, req, t, body, id, alt)
			if err != nil {
				return nil, err
			}
			return s.writeResult(req, t, nr, pf, http.StatusCreated)
		}
		if ifNoneMatch == "*" {
			return nil, errExists()
		}
		if ifMatch != "" && ifMatch != "*" && ifMatch != etag(r) {
			return nil, errConcurrency()
		}
		if err := s.updateRow(tx, req, t, r, body); err != nil {
			return nil, err
		}
		return s.writeResult(req, t, r, pf, http.StatusOK)
	})
}

func (s *Server) serveDelete(req *request, t *table, key string) *response {
	ifMatch := req.header.Get("If-Match")
	return s.write(req, func(tx *tx) (*response, *apiError) {
		r, _, err := s.findRow(t, key)
		if err != nil {
			return nil, err
		}
		if r == nil {
			return nil, s.notFound(t, key)
		}
		if ifMatch != "" && ifMatch != "*" && ifMatch != etag(r) {
			return nil, errConcurrency()
		}
		s.deleteRow(tx, req, t, r)
		resp := newResponse(http.StatusNoContent)
		resp.header.Set("OData-Version", "4.0")
		return resp, nil
	})
}

func (s *Server) serveCount(req *request, t *table) *response {
	q, err := s.parseQuery(t, queryValues(req.query), false)
	if err != nil {
		return errorResponse(err)
	}
	s.st.mu.RLock()
	_, total, _ := s.page(s.st.data[t.logical], q, nil, nil, 0, nil)
	s.st.mu.RUnlock()
	req.cost += s.costs.Query
	resp := newResponse(http.StatusOK)
	resp.header.Set("Content-Type", "text/plain")
	resp.header.Set("OData-Version", "4.0")
	// $count endpoints answer plain text with a UTF-8 BOM.
	resp.body = append([]byte{0xEF, 0xBB, 0xBF}, strconv.Itoa(min(total, maxPageSize))...)
	return resp
}

// serveNavigation serves GET <set>(<id>)/<nav>.
func (s *Server) serveNavigation(req *request, t *table, key, nav string) *response {
	if req.method != http.MethodGet {
		return errorResponse(newErr(http.StatusMethodNotAllowed, "", "The requested resource does not support http method '%s'.", req.method))
	}
	s.st.mu.RLock()
	r, _, err := s.findRow(t, key)
	if err == nil && r == nil {
		err = s.notFound(t, key)
	}
	if err != nil {
		s.st.mu.RUnlock()
		return errorResponse(err)
	}
	id := r.id
	if ls, ok := t.navMulti[nav]; ok {
		rv, ok := r.vals[ls[0].column.Name].(ref)
		s.st.mu.RUnlock()
		l, okNav := t.resolveNav(nav, rv.table)
		if !ok || !okNav {
			return newResponse(http.StatusNoContent)
		}
		tt := s.reg.tables[l.target]
		return s.serveRetrieve(req, tt, rv.id)
	}
	s.st.mu.RUnlock()
	if l, ok := t.navColl[nav]; ok {
		tt := l.from
		col := l.column.Name
		return s.serveQuery(req, tt, func() []*row {
			td := s.st.data[tt.logical]
			out := []*row{}
			for rr := range s.st.index(td, col)[id] {
				if rv, ok := rr.vals[col].(ref); ok && rv.table == t.logical {
					out = append(out, rr)
				}
			}
			return out
		}, tt.set)
	}
	m := t.navNN[nav]
	tt := s.reg.tables[otherSide(m, t.logical)]
	return s.serveQuery(req, tt, func() []*row {
		td := s.st.data[tt.logical]
		out := []*row{}
		for _, oid := range s.st.related(m, t.logical, id) {
			if rr, ok := td.rows[oid]; ok {
				out = append(out, rr)
			}
		}
		return out
	}, tt.set)
}

// serveProperty handles GET/PUT/DELETE <set>(<id>)/<column>.
func (s *Server) serveProperty(req *request, t *table, key, prop string) *response {
	c, ok := t.columnForProperty(prop)
	if !ok {
		return errorResponse(errSegment(prop))
	}
	switch req.method {
	case http.MethodGet:
		s.st.mu.RLock()
		defer s.st.mu.RUnlock()
		r, _, err := s.findRow(t, key)
		if err == nil && r == nil {
			err = s.notFound(t, key)
		}
		if err != nil {
			return errorResponse(err)
		}
		v := r.vals[c.Name]
		if v == nil {
			return newResponse(http.StatusNoContent)
		}
		o := &obj{}
		o.set("@odata.context", req.base+"$metadata#"+t.set+"("+r.id+")/"+prop)
		o.set("value", jsonValue(c, v))
		req.cost += s.costs.Retrieve
		return jsonResponse(http.StatusOK, appendJSON(nil, o))
	case http.MethodPut, http.MethodDelete:
		if c.Type == TypeLookup {
			return errorResponse(errBadRequest("Lookup properties are set with '<navigation property>/$ref'."))
		}
		var value any
		if req.method == http.MethodPut {
			body, err := decodeBody(t, req.body)
			if err != nil {
				return errorResponse(err)
			}
			value = body["value"]
		}
		return s.write(req, func(tx *tx) (*response, *apiError) {
			r, _, err := s.findRow(t, key)
			if err == nil && r == nil {
				err = s.notFound(t, key)
			}
			if err != nil {
				return nil, err
			}
			if err := s.updateRow(tx, req, t, r, map[string]any{prop: value}); err != nil {
				return nil, err
			}
			resp := newResponse(http.StatusNoContent)
			resp.header.Set("OData-Version", "4.0")
			return resp, nil
		})
	}
	return errorResponse(newErr(http.StatusMethodNotAllowed, "", "The requested resource does not support http method '%s'.", req.method))
}

// serveRef handles associate/disassociate through $ref.
func (s *Server) serveRef(req *request, t *table, key, nav, navKey string, navHasKey bool) *response {
	var target string
	if req.method == http.MethodPost || req.method == http.MethodPut {
		body, err := decodeBody(t, req.body)
		if err != nil {
			return errorResponse(err)
		}
		target, _ = body["@odata.id"].(string)
		if target == "" {
			return errorResponse(errBadRequest("The payload must contain '@odata.id'."))
		}
	}
	if req.method == http.MethodDelete {
		if navHasKey {
			target = navKey
		} else if v := req.query.Get("$id"); v != "" {
			target = v
		}
	}
	return s.write(req, func(tx *tx) (*response, *apiError) {
		r, _, err := s.findRow(t, key)
		if err == nil && r == nil {
			err = s.notFound(t, key)
		}
		if err != nil {
			return nil, err
		}
		ok204 := func() (*response, *apiError) {
			resp := newResponse(http.StatusNoContent)
			resp.header.Set("OData-Version", "4.0")
			return resp, nil
		}
		if ls, ok := t.navMulti[nav]; ok {
			col := ls[0].column.Name
			switch req.method {
			case http.MethodPut:
				tt, id, err := s.resolveRef(req, target)
				if err != nil {
					return nil, err
				}
				l, ok := t.resolveNav(nav, tt.logical)
				if !ok {
					return nil, errBadRequest("A navigation property '%s' cannot be bound to an entity of type '%s'.", nav, tt.logical)
				}
				if err := s.updateValues(tx, req, t, r, map[string]any{l.column.Name: ref{table: tt.logical, id: id}}, []string{l.column.Name}); err != nil {
					return nil, err
				}
				return ok204()
			case http.MethodDelete:
				if err := s.updateValues(tx, req, t, r, map[string]any{col: nil}, []string{col}); err != nil {
					return nil, err
				}
				return ok204()
			}
			return nil, newErr(http.StatusMethodNotAllowed, "", "The requested resource does not support http method '%s'.", req.method)
		}
		op, ok := collNav(t, nav)
		if !ok {
			return nil, errSegment(nav)
		}
		switch req.method {
		case http.MethodPost:
			tt, id, err := s.resolveRef(req, target)
			if err != nil {
				return nil, err
			}
			if err := s.link(tx, req, t, r.id, op, tt, id); err != nil {
				return nil, err
			}
			return ok204()
		case http.MethodDelete:
			if target == "" {
				return nil, errBadRequest("Disassociate requires the related entity id: '%s(<id>)/$ref' or '$ref?$id=<uri>'.", nav)
			}
			var otherID string
			if g := normGUID(target); isGUID(g) {
				otherID = g
			} else {
				_, id, err := s.resolveRef(req, target)
				if err != nil {
					return nil, err
				}
				otherID = id
			}
			if op.nn != nil {
				a, b := pairFor(op.nn, t.logical, r.id, otherID)
				if tx.disassociate(op.nn, a, b) {
					req.cost += s.costs.Associate
				}
				return ok204()
			}
			td := s.st.data[op.coll.from.logical]
			rr, ok := td.rows[otherID]
			if !ok {
				return nil, errNotFound(op.coll.from, otherID)
			}
			if rv, ok := rr.vals[op.coll.column.Name].(ref); ok && rv.id == r.id {
				if err := s.updateValues(tx, req, op.coll.from, rr, map[string]any{op.coll.column.Name: nil}, []string{op.coll.column.Name}); err != nil {
					return nil, err
				}
			}
			return ok204()
		}
		return nil, newErr(http.StatusMethodNotAllowed, "", "The requested resource does not support http method '%s'.", req.method)
	})
}

func (s *Server) serviceDocument(req *request) *response {
	var list []*obj
	for _, n := range sortedTableNames(s.reg) {
		t := s.reg.tables[n]
		o := &obj{}
		o.set("name", t.set)
		o.set("kind", "EntitySet")
		o.set("url", t.set)
		list = append(list, o)
	}
	o := &obj{}
	o.set("@odata.context", req.base+"$metadata")
	o.set("value", list)
	return jsonResponse(http.StatusOK, appendJSON(nil, o))
}
