package emulator

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/d365portal/connector/internal/dataverse/emulator/schema"
)

// ColumnType is the Dataverse attribute type of a column.
type ColumnType int

// Column types. Values are stored as: string (String, Memo, UniqueIdentifier), int
// (Integer, Picklist, State, Status), int64 (BigInt), bool (Boolean), time.Time
// (DateTime, DateOnly), float64 (Decimal, Double, Money) and a lookup reference (Lookup).
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
	TypeDouble
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
	case TypeDouble:
		return "Double"
	}
	return fmt.Sprintf("ColumnType(%d)", int(t))
}

// Column declares a column of a table. DefineColumn accepts String, Memo, Integer, BigInt,
// Boolean, DateTime, DateOnly, Picklist, Decimal, Double, Money, UniqueIdentifier and Lookup
// columns (a lookup needs Targets; NavProperty defaults to the column name).
type Column struct {
	Name      string         // logical name, e.g. "pinv_portalinvitestatus"
	Type      ColumnType     //
	MaxLength int            // String/Memo; 0 = unlimited (DefineColumn: 100 for String, 2000 for Memo)
	Options   map[int]string // Picklist/State/Status labels (nil = any integer accepted)
	Targets   []string       // Lookup: target table logical names
	// NavProperty is the single-valued navigation property (case-sensitive) of a Lookup
	// with one target; polymorphic lookups use "<column>_<target>".
	NavProperty string
	Default     any // value set on create when the request does not provide one

	readOnly   bool         // not valid for create/update (createdon, fullname, ...)
	writeOnly  bool         // IsValidForRead false: accepted, never returned (serviceendpoint.authvalue)
	stateOf    map[int]int  // Status: status value -> state value
	defStatus  map[int]int  // State: state value -> default status value
	boolLabels [2]string    // Boolean: false, true labels (formatted values)
	lookups    []*lookupNav // Lookup: one per target table
}

// lookupNav is one target of a lookup column: the single-valued navigation property on the
// referencing table and the collection-valued one on the target table. Either may be
// empty where the reference names none (the lookup is then read and filtered, not bound).
type lookupNav struct {
	column     *Column
	from       *table // referencing table
	target     string // target table logical name
	nav        string // single-valued nav prop on `from` ("" = none)
	navType    string // the nav's declared type: the target, or "owner" for ownerid
	collection string // 1:N collection nav prop on the target ("" = none)
	cascade    bool   // deleting the target deletes the referencing row (else RemoveLink)
}

// manyToMany is an N:N relationship between two tables, by schema name. Each side
// carries the navigation property its table's reference page prints (navNN).
type manyToMany struct {
	name   string
	table1 string
	table2 string
}

type table struct {
	logical     string
	set         string
	pk          string
	primaryName string
	userOwned   bool
	activity    bool // primary key activityid: an activity table
	changeTrack bool

	columns map[string]*Column
	order   []string // column order (stable output): primary key, then by name

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

// newRegistry builds the tables from the schema facts and adds the behaviour the facts
// do not give (behaviour.go).
func newRegistry(sc *schema.Schema) (*registry, error) {
	r := &registry{tables: map[string]*table{}, sets: map[string]*table{}, nn: map[string]*manyToMany{}}
	for _, name := range sc.TableNames() {
		if err := r.addTable(sc.Tables[name]); err != nil {
			return nil, err
		}
	}
	for _, name := range sc.TableNames() {
		if err := r.addRelationships(sc.Tables[name]); err != nil {
			return nil, err
		}
	}
	for _, t := range r.tables {
		for _, c := range t.columns {
			r.linkColumn(t, c)
		}
	}
	addBehaviour(r)
	return r, nil
}

func (r *registry) addTable(ft *schema.Table) error {
	t := &table{
		logical: ft.LogicalName, set: ft.EntitySetName, pk: ft.PrimaryIDAttribute,
		userOwned: ft.OwnershipType == "UserOwned", activity: ft.PrimaryIDAttribute == "activityid",
		columns: map[string]*Column{}, navSingle: map[string]*lookupNav{}, navMulti: map[string][]*lookupNav{},
		navColl: map[string]*lookupNav{}, navNN: map[string]*manyToMany{},
	}
	if _, ok := ft.Columns[ft.PrimaryNameAttribute]; ok {
		t.primaryName = ft.PrimaryNameAttribute
	}
	_, t.changeTrack = ft.Columns["versionnumber"]
	names := make([]string, 0, len(ft.Columns))
	for n := range ft.Columns {
		if n != t.pk {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range append([]string{t.pk}, names...) {
		c, err := columnFromFacts(n, ft.Columns[n])
		if err != nil {
			return fmt.Errorf("emulator schema: %s.%s: %w", t.logical, n, err)
		}
		t.add(c)
	}
	r.tables[t.logical] = t
	r.sets[t.set] = t
	return nil
}

var columnTypes = map[string]ColumnType{
	"String": TypeString, "EntityName": TypeString, "Memo": TypeMemo, "Integer": TypeInteger, "BigInt": TypeBigInt,
	"Boolean": TypeBoolean, "DateTime": TypeDateTime, "Picklist": TypePicklist, "State": TypeState, "Status": TypeStatus,
	"Lookup": TypeLookup, "Owner": TypeLookup, "Customer": TypeLookup, "Uniqueidentifier": TypeUniqueIdentifier,
	"Decimal": TypeDecimal, "Double": TypeDouble, "Money": TypeMoney,
}

func columnFromFacts(name string, fc *schema.Column) (*Column, error) {
	typ, ok := columnTypes[fc.Type]
	if !ok {
		return nil, fmt.Errorf("type %s is not served (add it to exceptions.json omitTypes)", fc.Type)
	}
	if typ == TypeDateTime && fc.DateTimeBehavior == "DateOnly" {
		typ = TypeDateOnly
	}
	c := &Column{Name: name, Type: typ, MaxLength: fc.MaxLength, readOnly: fc.ReadOnly(), writeOnly: !fc.Readable()}
	switch typ {
	case TypePicklist, TypeState, TypeStatus:
		if len(fc.Options) > 0 {
			c.Options = map[int]string{}
		}
		if typ == TypeState {
			c.defStatus = map[int]int{}
		}
		if typ == TypeStatus {
			c.stateOf = map[int]int{}
		}
		for _, o := range fc.Options {
			f, ok := o.Value.(float64)
			if !ok || f != float64(int(f)) {
				return nil, fmt.Errorf("option value %v is not an integer", o.Value)
			}
			v := int(f)
			c.Options[v] = o.Label
			if typ == TypeState && o.DefaultStatus != nil {
				c.defStatus[v] = *o.DefaultStatus
			}
			if typ == TypeStatus && o.State != nil {
				c.stateOf[v] = *o.State
			}
		}
	case TypeBoolean:
		c.boolLabels = [2]string{"No", "Yes"}
		for _, o := range fc.Options {
			if b, ok := o.Value.(bool); ok && o.Label != "" {
				if b {
					c.boolLabels[1] = o.Label
				} else {
					c.boolLabels[0] = o.Label
				}
			}
		}
		if b, ok := fc.DefaultValue.(bool); ok {
			c.Default = b
		}
	}
	return c, nil
}

// addRelationships attaches the reference's navigation properties: single-valued ones
// from the table's N:1 list, collection-valued ones from its 1:N list (on the
// referencing lookup), and its side of each N:N.
func (r *registry) addRelationships(ft *schema.Table) error {
	t := r.tables[ft.LogicalName]
	for _, c := range t.columns {
		if c.Type != TypeLookup {
			continue
		}
		for _, tg := range ft.Columns[c.Name].Targets {
			if _, ok := r.tables[tg]; ok {
				lookupTarget(t, c, tg)
			}
		}
	}
	for _, m := range ft.ManyToOne {
		c := t.columns[m.ReferencingAttribute]
		targets := []string{m.ReferencedEntity}
		if m.ReferencedEntity == "owner" {
			targets = c.Targets
		}
		for _, tg := range targets {
			l := lookupTarget(t, c, tg)
			if l.nav != "" && l.nav != m.NavigationProperty {
				return fmt.Errorf("emulator schema: %s.%s -> %s: navigation %s and %s", t.logical, c.Name, tg, l.nav, m.NavigationProperty)
			}
			l.nav, l.navType = m.NavigationProperty, m.ReferencedEntity
		}
	}
	for _, o := range ft.OneToMany {
		from := r.tables[o.ReferencingEntity]
		l := lookupTarget(from, from.columns[o.ReferencingAttribute], t.logical)
		l.collection = o.NavigationProperty
	}
	for _, n := range ft.ManyToMany {
		m, ok := r.nn[n.SchemaName]
		if !ok {
			m = &manyToMany{name: n.SchemaName, table1: t.logical, table2: n.OtherEntity}
			r.nn[n.SchemaName] = m
		} else if otherSide(m, t.logical) != n.OtherEntity {
			return fmt.Errorf("emulator schema: N:N %s: %s and %s disagree on its tables", n.SchemaName, m.table1, t.logical)
		}
		t.navNN[n.NavigationProperty] = m
	}
	return nil
}

// lookupTarget returns (adding when new) the target entry of a lookup column.
func lookupTarget(t *table, c *Column, target string) *lookupNav {
	if l, ok := lookupFor(c, target); ok {
		return l
	}
	l := &lookupNav{column: c, from: t, target: target}
	c.lookups = append(c.lookups, l)
	c.Targets = append(c.Targets, target)
	return l
}

func (t *table) add(c *Column) *Column {
	if _, ok := t.columns[c.Name]; !ok {
		t.order = append(t.order, c.Name)
	}
	t.columns[c.Name] = c
	return c
}

func (r *registry) linkColumn(t *table, c *Column) {
	for _, l := range c.lookups {
		if l.nav != "" {
			if !slices.Contains(t.navMulti[l.nav], l) {
				t.navMulti[l.nav] = append(t.navMulti[l.nav], l)
			}
			// A nav shared by several targets (ownerid: systemuser|team) expands and
			// filters through its first target.
			if _, ok := t.navSingle[l.nav]; !ok {
				t.navSingle[l.nav] = l
			}
		}
		if tt, ok := r.tables[l.target]; ok && l.collection != "" {
			tt.navColl[l.collection] = l
		}
	}
	if len(c.lookups) == 1 {
		c.NavProperty = c.lookups[0].nav
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
	col.boolLabels = [2]string{"No", "Yes"}
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
			col.lookups = append(col.lookups, &lookupNav{from: t, target: tg, nav: nav, navType: tg})
		}
	case TypeInteger, TypeBigInt, TypeBoolean, TypeDateTime, TypeDateOnly, TypePicklist,
		TypeUniqueIdentifier, TypeDecimal, TypeDouble, TypeMoney:
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

// resolveNav returns the lookup target for a single-valued nav prop given the bound set.
func (t *table) resolveNav(nav, targetTable string) (*lookupNav, bool) {
	ls := t.navMulti[nav]
	for _, l := range ls {
		if targetTable == "" || l.target == targetTable {
			return l, true
		}
	}
	return nil, false
}

// readable returns the readable columns in declaration order.
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
