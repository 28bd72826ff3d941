package emulator

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// ref is a stored lookup value.
type ref struct {
	table, id string
}

type row struct {
	seq     uint64
	id      string
	vals    map[string]any
	deleted bool
}

type tomb struct {
	id      string
	version int64
}

type tableData struct {
	t       *table
	rows    map[string]*row
	bySeq   []*row // insertion order; deleted rows are skipped and compacted lazily
	dead    int
	indexes map[string]map[any]map[*row]struct{}
	tombs   []tomb // deletions in version order, for change tracking
}

type nnData struct {
	fwd map[string]map[string]struct{} // table1 id -> table2 ids
	rev map[string]map[string]struct{} // table2 id -> table1 ids
}

// store holds all rows. One RWMutex: writes (and whole change sets) hold it exclusively.
type store struct {
	mu       sync.RWMutex
	idxMu    sync.Mutex // serialises lazy index creation by concurrent readers
	reg      *registry
	data     map[string]*tableData
	nn       map[string]*nnData
	version  int64
	seq      uint64
	outbox   []SentEmail
	outboxAt map[string]int // email id -> index in outbox
	started  time.Time
}

func newStore(reg *registry, now time.Time) *store {
	s := &store{reg: reg, data: map[string]*tableData{}, nn: map[string]*nnData{}, version: 1000, started: now, outboxAt: map[string]int{}}
	for name, t := range reg.tables {
		s.data[name] = &tableData{t: t, rows: map[string]*row{}, indexes: map[string]map[any]map[*row]struct{}{}}
	}
	for name := range reg.nn {
		s.nn[name] = &nnData{fwd: map[string]map[string]struct{}{}, rev: map[string]map[string]struct{}{}}
	}
	return s
}

type nilKey struct{}

// indexKey normalises a stored value for hash lookup. Dataverse string comparison is
// case-insensitive, so strings (and GUIDs) are lower-cased.
func indexKey(v any) any {
	switch x := v.(type) {
	case nil:
		return nilKey{}
	case string:
		return strings.ToLower(x)
	case ref:
		return strings.ToLower(x.id)
	case int:
		return int64(x)
	case int64:
		return x
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
		return x
	case bool:
		return x
	case time.Time:
		return x.UnixNano()
	}
	return v
}

// index returns (building on first use) the hash index of a column. Callers hold s.mu
// (read or write); building under a read lock is guarded by idxMu.
func (s *store) index(td *tableData, col string) map[any]map[*row]struct{} {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	if ix, ok := td.indexes[col]; ok {
		return ix
	}
	ix := map[any]map[*row]struct{}{}
	for _, r := range td.rows {
		k := indexKey(r.vals[col])
		set := ix[k]
		if set == nil {
			set = map[*row]struct{}{}
			ix[k] = set
		}
		set[r] = struct{}{}
	}
	td.indexes[col] = ix
	return ix
}

func (td *tableData) indexAdd(r *row) {
	for col, ix := range td.indexes {
		k := indexKey(r.vals[col])
		set := ix[k]
		if set == nil {
			set = map[*row]struct{}{}
			ix[k] = set
		}
		set[r] = struct{}{}
	}
}

func (td *tableData) indexRemove(r *row) {
	for col, ix := range td.indexes {
		k := indexKey(r.vals[col])
		if set := ix[k]; set != nil {
			delete(set, r)
			if len(set) == 0 {
				delete(ix, k)
			}
		}
	}
}

// live returns the rows in insertion order.
func (td *tableData) live() []*row {
	if td.dead > 64 && td.dead > len(td.bySeq)/4 {
		td.bySeq = slices.DeleteFunc(td.bySeq, func(r *row) bool { return r.deleted })
		td.dead = 0
	}
	return td.bySeq
}

func copyVals(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// tx is a write transaction: it holds the store lock and an undo journal so a $batch change
// set can roll back. Webhook events are collected and fired only after Commit.
type tx struct {
	s      *store
	undo   []func()
	events []*event
	now    time.Time
	caller *caller
	done   bool
	// mail holds the emails handed to server-side sync, queued after commit;
	// mailboxChanged says a mailbox's sending settings may have changed.
	mail           []*queuedEmail
	mailboxChanged bool
}

func (s *store) begin(now time.Time, c *caller) *tx {
	s.mu.Lock()
	return &tx{s: s, now: now, caller: c}
}

func (t *tx) commit() []*event {
	if t.done {
		return nil
	}
	t.done = true
	t.s.mu.Unlock()
	return t.events
}

func (t *tx) rollback() {
	if t.done {
		return
	}
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.undo[i]()
	}
	t.done = true
	t.events = nil
	t.mail = nil
	t.s.mu.Unlock()
}

// savepoint/rollbackTo let a single failing operation inside a larger transaction undo
// only its own partial writes (deep insert that fails half way).
func (t *tx) savepoint() (int, int, int) { return len(t.undo), len(t.events), len(t.mail) }

func (t *tx) rollbackTo(u, e, m int) {
	for i := len(t.undo) - 1; i >= u; i-- {
		t.undo[i]()
	}
	t.undo = t.undo[:u]
	t.events = t.events[:e]
	t.mail = t.mail[:m]
}

func (t *tx) nextVersion() int64 {
	t.s.version++
	return t.s.version
}

func (t *tx) insert(td *tableData, id string, vals map[string]any) *row {
	t.s.seq++
	vals[td.t.pk] = id
	if _, ok := td.t.columns["versionnumber"]; ok {
		vals["versionnumber"] = t.nextVersion()
	}
	r := &row{seq: t.s.seq, id: id, vals: vals}
	td.rows[id] = r
	td.bySeq = append(td.bySeq, r)
	td.indexAdd(r)
	t.undo = append(t.undo, func() {
		td.indexRemove(r)
		delete(td.rows, id)
		r.deleted = true
		td.dead++
	})
	return r
}

// update replaces the values of a row (the caller passes the complete new map).
func (t *tx) update(td *tableData, r *row, vals map[string]any) {
	old := r.vals
	td.indexRemove(r)
	if _, ok := td.t.columns["versionnumber"]; ok {
		vals["versionnumber"] = t.nextVersion()
	}
	r.vals = vals
	td.indexAdd(r)
	t.undo = append(t.undo, func() {
		td.indexRemove(r)
		r.vals = old
		td.indexAdd(r)
	})
}

func (t *tx) remove(td *tableData, r *row) {
	td.indexRemove(r)
	delete(td.rows, r.id)
	r.deleted = true
	td.dead++
	td.tombs = append(td.tombs, tomb{id: r.id, version: t.nextVersion()})
	t.undo = append(t.undo, func() {
		td.tombs = td.tombs[:len(td.tombs)-1]
		r.deleted = false
		td.dead--
		td.rows[r.id] = r
		td.indexAdd(r)
	})
}

func (t *tx) associate(rel *manyToMany, id1, id2 string) bool {
	d := t.s.nn[rel.name]
	if _, ok := d.fwd[id1][id2]; ok {
		return false
	}
	add := func(m map[string]map[string]struct{}, a, b string) {
		if m[a] == nil {
			m[a] = map[string]struct{}{}
		}
		m[a][b] = struct{}{}
	}
	add(d.fwd, id1, id2)
	add(d.rev, id2, id1)
	t.undo = append(t.undo, func() { delete(d.fwd[id1], id2); delete(d.rev[id2], id1) })
	return true
}

func (t *tx) disassociate(rel *manyToMany, id1, id2 string) bool {
	d := t.s.nn[rel.name]
	if _, ok := d.fwd[id1][id2]; !ok {
		return false
	}
	delete(d.fwd[id1], id2)
	delete(d.rev[id2], id1)
	t.undo = append(t.undo, func() {
		if d.fwd[id1] == nil {
			d.fwd[id1] = map[string]struct{}{}
		}
		if d.rev[id2] == nil {
			d.rev[id2] = map[string]struct{}{}
		}
		d.fwd[id1][id2] = struct{}{}
		d.rev[id2][id1] = struct{}{}
	})
	return true
}

// send hands an email to server-side sync: it enters the outbox now and the
// sync's queue when the transaction commits (q nil: no mailbox will send it).
func (t *tx) send(e SentEmail, q *queuedEmail) {
	t.s.outboxAt[e.ID] = len(t.s.outbox)
	t.s.outbox = append(t.s.outbox, e)
	t.undo = append(t.undo, func() {
		t.s.outbox = t.s.outbox[:len(t.s.outbox)-1]
		delete(t.s.outboxAt, e.ID)
	})
	if q != nil {
		t.mail = append(t.mail, q)
	}
}

// outboxEntry is the outbox entry of an email (nil: not handed over). The
// caller holds the store lock for writing.
func (s *store) outboxEntry(id string) *SentEmail {
	i, ok := s.outboxAt[id]
	if !ok {
		return nil
	}
	return &s.outbox[i]
}

// related returns the ids on the other side of an N:N relationship for a row of tableName.
func (s *store) related(rel *manyToMany, tableName, id string) []string {
	d := s.nn[rel.name]
	var m map[string]struct{}
	if rel.table1 == tableName {
		m = d.fwd[strings.ToLower(id)]
	} else {
		m = d.rev[strings.ToLower(id)]
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// isRelated reports whether the two rows are associated (a belongs to tableName).
func (s *store) isRelated(rel *manyToMany, tableName, a, b string) bool {
	d := s.nn[rel.name]
	if rel.table1 == tableName {
		_, ok := d.fwd[a][b]
		return ok
	}
	_, ok := d.rev[a][b]
	return ok
}

// pairFor orders (this side, other side) ids as (table1 id, table2 id).
func pairFor(rel *manyToMany, tableName, a, b string) (string, string) {
	if rel.table1 == tableName {
		return a, b
	}
	return b, a
}
