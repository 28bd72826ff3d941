package emulator

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Direct access for tests and the demo. These bypass HTTP, auth, limits and faults and
// fire no webhooks; writes still get versions, so change tracking sees them.

// DefineColumn declares a custom column (e.g. the contact invite columns). It panics on an
// invalid declaration, which is a programming error in the test or seed that calls it.
func (s *Server) DefineColumn(table string, c Column) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if err := s.reg.defineColumn(table, c); err != nil {
		panic(err)
	}
}

// DefineKey declares an alternate key over columns of a table (Dataverse defines none on
// these tables by default).
func (s *Server) DefineKey(table, name string, columns ...string) error {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	t, ok := s.reg.tables[table]
	if !ok {
		return fmt.Errorf("define key %s on %s: unknown table", name, table)
	}
	for _, c := range columns {
		if _, ok := t.columns[c]; !ok {
			return fmt.Errorf("define key %s on %s: unknown column %s", name, table, c)
		}
	}
	t.keys = append(t.keys, altKey{name: name, columns: slices.Clone(columns)})
	return nil
}

// Insert creates a row. Keys are logical column names (or nav@odata.bind); lookup values
// may be a GUID (the target table is inferred) or "<set>(<guid>)"; values may be Go
// strings, ints, floats, bools and time.Time. Unlike the API, Insert sets read-only
// columns too, as the platform would.
func (s *Server) Insert(table string, row map[string]any) (string, error) {
	t, ok := s.reg.tables[table]
	if !ok {
		return "", fmt.Errorf("insert %s: unknown table", table)
	}
	tx := s.st.begin(s.now(), &caller{userID: s.appUser, principal: s.appUser})
	body := map[string]any{}
	preset := map[string]any{}
	for k, v := range row {
		c, ok := t.columns[k]
		if ok && c.Type == TypeLookup {
			if v == nil {
				continue
			}
			sv := fmt.Sprint(v)
			target := ""
			if name, key, ok := cutKey(sv); ok {
				if tt, ok := s.reg.sets[name]; ok {
					target, sv = tt.logical, key
				}
			}
			sv = normGUID(sv)
			if target == "" {
				target = c.Targets[0]
				for _, tg := range c.Targets {
					if td, ok := s.st.data[tg]; ok {
						if _, ok := td.rows[sv]; ok {
							target = tg
							break
						}
					}
				}
			}
			if _, ok := lookupFor(c, target); !ok {
				tx.rollback()
				return "", fmt.Errorf("insert %s: %s cannot reference %s", table, k, target)
			}
			preset[k] = ref{table: target, id: sv}
			continue
		}
		if ok && c.readOnly {
			// Seeds set what the platform maintains (systemuser.fullname, the
			// organization's settings): past the API's read-only rule.
			sv, err := convertIn(t, c, directValue(v))
			if err != nil {
				tx.rollback()
				return "", fmt.Errorf("insert %s: %s", table, err.message)
			}
			preset[k] = sv
			continue
		}
		body[k] = directValue(v)
	}
	req := &request{base: "/api/data/v9.2/", caller: tx.caller, reqID: newGUID(), corrID: newGUID()}
	r, err := s.createRow(tx, req, t, body, "", preset)
	if err != nil {
		tx.rollback()
		return "", fmt.Errorf("insert %s: %s", table, err.message)
	}
	id := r.id
	tx.commit()
	return id, nil
}

func directValue(v any) any {
	switch x := v.(type) {
	case int:
		return json.Number(strconv.Itoa(x))
	case int32:
		return json.Number(strconv.Itoa(int(x)))
	case int64:
		return json.Number(strconv.FormatInt(x, 10))
	case float64:
		return json.Number(strconv.FormatFloat(x, 'f', -1, 64))
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return v
}

// Row returns a copy of a row keyed by logical column names; lookups are GUID strings,
// dates time.Time, choices int, bigints int64.
func (s *Server) Row(table, id string) (map[string]any, bool) {
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	td, ok := s.st.data[table]
	if !ok {
		return nil, false
	}
	r, ok := td.rows[normGUID(id)]
	if !ok {
		return nil, false
	}
	return plainRow(r), true
}

func plainRow(r *row) map[string]any {
	out := make(map[string]any, len(r.vals))
	for k, v := range r.vals {
		if rv, ok := v.(ref); ok {
			out[k] = rv.id
			continue
		}
		out[k] = v
	}
	return out
}

// Rows returns copies of all rows of a table in creation order.
func (s *Server) Rows(table string) []map[string]any {
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	td, ok := s.st.data[table]
	if !ok {
		return nil
	}
	var out []map[string]any
	for _, r := range td.live() {
		if !r.deleted {
			out = append(out, plainRow(r))
		}
	}
	return out
}

// Associated returns the ids related to id through an N:N relationship (either side).
func (s *Server) Associated(relationship, id string) []string {
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	m, ok := s.reg.nn[relationship]
	if !ok {
		return nil
	}
	id = normGUID(id)
	d := s.st.nn[m.name]
	var out []string
	for k := range d.fwd[id] {
		out = append(out, k)
	}
	for k := range d.rev[id] {
		out = append(out, k)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Associate links two rows through an N:N relationship directly (ids in either order of
// the relationship's tables: the first belongs to table1).
func (s *Server) Associate(relationship, id1, id2 string) error {
	m, ok := s.reg.nn[relationship]
	if !ok {
		return fmt.Errorf("associate %s: unknown relationship", relationship)
	}
	tx := s.st.begin(s.now(), &caller{userID: s.appUser})
	a, b := normGUID(id1), normGUID(id2)
	if _, ok := s.st.data[m.table1].rows[a]; !ok {
		a, b = b, a
	}
	if _, ok := s.st.data[m.table1].rows[a]; !ok {
		tx.rollback()
		return fmt.Errorf("associate %s: no %s row among %s, %s", relationship, m.table1, id1, id2)
	}
	if _, ok := s.st.data[m.table2].rows[b]; !ok {
		tx.rollback()
		return fmt.Errorf("associate %s: no %s row %s", relationship, m.table2, b)
	}
	tx.associate(m, a, b)
	tx.commit()
	return nil
}

// Outbox returns the emails handed over with SendEmail (IssueSend=true), oldest
// first, each with its delivery state: an email is in the outbox from the
// moment SendEmail commits, whether or not its mailbox ever sends it.
func (s *Server) Outbox() []SentEmail {
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	out := slices.Clone(s.st.outbox)
	for i := range out {
		out[i].To = slices.Clone(out[i].To)
		out[i].CC = slices.Clone(out[i].CC)
		out[i].BCC = slices.Clone(out[i].BCC)
	}
	return out
}
