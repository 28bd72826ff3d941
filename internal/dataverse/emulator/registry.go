package emulator

import (
	"fmt"
	"sort"
	"strings"
)

// ColumnType is the Dataverse attribute type of a column.
type ColumnType int

// Column types. Values are stored as: string (String, Memo, UniqueIdentifier), int
// (Integer, Picklist, State, Status), int64 (BigInt), bool (Boolean), time.Time
// (DateTime, DateOnly), float64 (Decimal, Money) and a lookup reference (Lookup).
const (
	TypeString ColumnType = iota + 1
	TypeMemo
	TypeInteger
	TypeBigInt
	TypeBoolean
	TypeDateTime
	TypeDateOnly // DateOnly behaviour: serialized as "2006-01-02"
	TypePicklist
	TypeState
	TypeStatus
	TypeLookup
	TypeUniqueIdentifier
	TypeDecimal
	TypeMoney
)

func (t ColumnType) String() string {
	switch t {
	case TypeString:
		return "String"
	case TypeMemo:
		return "Memo"
	case TypeInteger:
		return "Integer"
	case TypeBigInt:
		return "BigInt"
	case TypeBoolean:
		return "Boolean"
	case TypeDateTime, TypeDateOnly:
		return "DateTime"
	case TypePicklist:
		return "Picklist"
	case TypeState:
		return "State"
	case TypeStatus:
		return "Status"
	case TypeLookup:
		return "Lookup"
	case TypeUniqueIdentifier:
		return "Uniqueidentifier"
	case TypeDecimal:
		return "Decimal"
	case TypeMoney:
		return "Money"
	}
	return fmt.Sprintf("ColumnType(%d)", int(t))
}

// Column declares a column of a table. DefineColumn accepts String, Memo, Integer, BigInt,
// Boolean, DateTime, DateOnly, Picklist, Decimal, Money, UniqueIdentifier and Lookup
// columns (a lookup needs Targets; NavProperty defaults to the column name).
type Column struct {
	Name      string         // logical name, e.g. "pinv_portalinvitestatus"
	Type      ColumnType     //
	MaxLength int            // String/Memo; 0 = 100 for String, 2000 for Memo
	Options   map[int]string // Picklist/State/Status labels (nil = any integer accepted)
	Targets   []string       // Lookup: target table logical names
	// NavProperty is the single-valued navigation property (case-sensitive) of a Lookup
	// with one target; polymorphic lookups use "<column>_<target>".
	NavProperty string
	Default     any // value set on create when the request does not provide one

	readOnly  bool        // not valid for create/update (createdon, fullname, ...)
	writeOnly bool        // never returned (serviceendpoint.authvalue)
	stateOf   map[int]int // Status: status value -> state value
	defStatus map[int]int // State: state value -> default status value
	lookups   []*lookupNav
}

// lookupNav is one target of a lookup column: the single-valued navigation property on the
// referencing table and the collection-valued one on the target table.
type lookupNav struct {
	column     *Column
	from       *table // referencing table
	target     string // target table logical name
	nav        string // single-valued nav prop on `from`
	collection string // 1:N collection nav prop on the target ("" = none)
	cascade    bool   // deleting the target deletes the referencing row (else RemoveLink)
}

// manyToMany is an N:N relationship; its schema name is the navigation property on both sides.
type manyToMany struct {
	name         string
	table1       string
	table2       string
	attr1, attr2 string // intersect attribute names
}

type table struct {
	logical     string
	set         string
	pk          string
	primaryName string
	userOwned   bool
	activity    bool
	changeTrack bool

	columns map[string]*Column
	order   []string // column declaration order (stable output)

	navSingle map[string]*lookupNav // nav prop -> lookup target (several targets may share one nav, e.g. ownerid)
	navMulti  map[string][]*lookupNav
	navColl   map[string]*lookupNav  // 1:N collection nav prop -> referencing lookup
	navNN     map[string]*manyToMany // N:N nav prop -> relationship
	keys      []altKey
	computed  func(row map[string]any)
}

type altKey struct {
	name    string
	columns []string
}

func (t *table) typeName() string { return "Microsoft.Dynamics.CRM." + t.logical }

type registry struct {
	tables map[string]*table // by logical name
	sets   map[string]*table // by entity set name
	nn     map[string]*manyToMany
}

func newRegistry() *registry {
	r := &registry{tables: map[string]*table{}, sets: map[string]*table{}, nn: map[string]*manyToMany{}}
	defineSchema(r)
	r.link()
	return r
}

func (r *registry) table(logical, set, pk, primaryName string) *table {
	t := &table{
		logical: logical, set: set, pk: pk, primaryName: primaryName, changeTrack: true,
		columns: map[string]*Column{}, navSingle: map[string]*lookupNav{}, navMulti: map[string][]*lookupNav{},
		navColl: map[string]*lookupNav{}, navNN: map[string]*manyToMany{},
	}
	r.tables[logical] = t
	r.sets[set] = t
	t.add(&Column{Name: pk, Type: TypeUniqueIdentifier})
	return t
}

func (t *table) add(c *Column) *Column {
	if _, ok := t.columns[c.Name]; !ok {
		t.order = append(t.order, c.Name)
	}
	t.columns[c.Name] = c
	return c
}

func (t *table) str(name string, max int) *Column {
	return t.add(&Column{Name: name, Type: TypeString, MaxLength: max})
}
func (t *table) memo(name string, max int) *Column {
	return t.add(&Column{Name: name, Type: TypeMemo, MaxLength: max})
}
func (t *table) integer(name string) *Column { return t.add(&Column{Name: name, Type: TypeInteger}) }
func (t *table) boolean(name string, def any) *Column {
	return t.add(&Column{Name: name, Type: TypeBoolean, Default: def})
}
func (t *table) datetime(name string) *Column { return t.add(&Column{Name: name, Type: TypeDateTime}) }
func (t *table) guid(name string) *Column {
	return t.add(&Column{Name: name, Type: TypeUniqueIdentifier})
}
func (t *table) picklist(name string, def any, opts map[int]string) *Column {
	return t.add(&Column{Name: name, Type: TypePicklist, Options: opts, Default: def})
}
func (t *table) ro(c *Column) *Column { c.readOnly = true; return c }

// states declares statecode/statuscode. Each status is {value, state, label}; the first
// status listed for a state is that state's default.
func (t *table) states(states map[int]string, statuses [][3]any) {
	st := t.add(&Column{Name: "statecode", Type: TypeState, Options: states, defStatus: map[int]int{}, Default: 0})
	ss := t.add(&Column{Name: "statuscode", Type: TypeStatus, Options: map[int]string{}, stateOf: map[int]int{}})
	for _, s := range statuses {
		v, state, label := s[0].(int), s[1].(int), s[2].(string)
		ss.Options[v] = label
		ss.stateOf[v] = state
		if _, ok := st.defStatus[state]; !ok {
			st.defStatus[state] = v
		}
	}
}

// target describes one target of a lookup for the schema DSL.
type target struct {
	table, nav, coll string
	cascade          bool
}

func (t *table) lookup(name string, targets ...target) *Column {
	c := t.add(&Column{Name: name, Type: TypeLookup})
	for _, tg := range targets {
		c.Targets = append(c.Targets, tg.table)
		c.lookups = append(c.lookups, &lookupNav{column: c, from: t, target: tg.table, nav: tg.nav, collection: tg.coll, cascade: tg.cascade})
	}
	if len(targets) == 1 {
		c.NavProperty = targets[0].nav
	}
	return c
}

func (r *registry) manyToMany(name, t1, t2, a1, a2 string) {
	r.nn[name] = &manyToMany{name: name, table1: t1, table2: t2, attr1: a1, attr2: a2}
}

// link builds the navigation maps once all tables exist.
func (r *registry) link() {
	for _, t := range r.tables {
		for _, c := range t.columns {
			r.linkColumn(t, c)
		}
	}
	for _, m := range r.nn {
		r.tables[m.table1].navNN[m.name] = m
		r.tables[m.table2].navNN[m.name] = m
	}
}

func (r *registry) linkColumn(t *table, c *Column) {
	for _, l := range c.lookups {
		t.navMulti[l.nav] = append(t.navMulti[l.nav], l)
		t.navSingle[l.nav] = l
		if tt, ok := r.tables[l.target]; ok && l.collection != "" {
			tt.navColl[l.collection] = l
		}
	}
}

// defineColumn adds a custom column at run time.
func (r *registry) defineColumn(tableName string, c Column) error {
	t, ok := r.tables[tableName]
	if !ok {
		return fmt.Errorf("define column %s.%s: unknown table", tableName, c.Name)
	}
	if c.Name == "" || strings.ToLower(c.Name) != c.Name {
		return fmt.Errorf("define column %s.%s: logical names are lower case", tableName, c.Name)
	}
	col := c
	col.readOnly, col.writeOnly, col.stateOf, col.defStatus, col.lookups = false, false, nil, nil, nil
	switch col.Type {
	case TypeString:
		if col.MaxLength == 0 {
			col.MaxLength = 100
		}
	case TypeMemo:
		if col.MaxLength == 0 {
			col.MaxLength = 2000
		}
	case TypeLookup:
		if len(col.Targets) == 0 {
			return fmt.Errorf("define column %s.%s: lookup without targets", tableName, c.Name)
		}
		for _, tg := range col.Targets {
			if _, ok := r.tables[tg]; !ok {
				return fmt.Errorf("define column %s.%s: unknown target %s", tableName, c.Name, tg)
			}
			nav := col.NavProperty
			if nav == "" || len(col.Targets) > 1 {
				nav = col.Name
				if len(col.Targets) > 1 {
					nav = col.Name + "_" + tg
				}
			}
			col.lookups = append(col.lookups, &lookupNav{from: t, target: tg, nav: nav})
		}
	case TypeInteger, TypeBigInt, TypeBoolean, TypeDateTime, TypeDateOnly, TypePicklist,
		TypeUniqueIdentifier, TypeDecimal, TypeMoney:
	default:
		return fmt.Errorf("define column %s.%s: type %v cannot be declared", tableName, c.Name, c.Type)
	}
	if old, ok := t.columns[col.Name]; ok && old.Type == TypeLookup {
		return fmt.Errorf("define column %s.%s: cannot redefine a lookup", tableName, c.Name)
	}
	p := &col
	for _, l := range p.lookups {
		l.column = p
	}
	t.add(p)
	r.linkColumn(t, p)
	return nil
}

// lookupTargetNav returns the lookup target for a single-valued nav prop given the bound set.
func (t *table) resolveNav(nav, targetTable string) (*lookupNav, bool) {
	ls := t.navMulti[nav]
	for _, l := range ls {
		if targetTable == "" || l.target == targetTable {
			return l, true
		}
	}
	return nil, false
}

// columnNames returns the readable columns in declaration order.
func (t *table) readable() []*Column {
	out := make([]*Column, 0, len(t.order))
	for _, n := range t.order {
		if c := t.columns[n]; !c.writeOnly {
			out = append(out, c)
		}
	}
	return out
}

// propertyName is the Web API property of a column (_x_value for lookups).
func propertyName(c *Column) string {
	if c.Type == TypeLookup {
		return "_" + c.Name + "_value"
	}
	return c.Name
}

// columnForProperty maps a Web API property name to its column.
func (t *table) columnForProperty(p string) (*Column, bool) {
	if strings.HasPrefix(p, "_") && strings.HasSuffix(p, "_value") {
		c, ok := t.columns[p[1:len(p)-len("_value")]]
		if ok && c.Type == TypeLookup {
			return c, true
		}
		return nil, false
	}
	c, ok := t.columns[p]
	if !ok || c.Type == TypeLookup || c.writeOnly {
		return nil, false
	}
	return c, true
}

func sortedKeys[V any](m map[int]V) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}
