// Package schema holds the emulator's tables as facts copied from Microsoft's
// Dataverse table reference (tables.json, written by ./gen) and the short,
// reasoned list of places where the emulator departs from them
// (exceptions.json). Load merges the two into the schema the emulator serves;
// Stale and Drift let tests prove that the exceptions are all still needed and
// that the emulator's $metadata serves exactly that schema.
package schema

//go:generate go run ./gen -ref ../../../../../shared/reference/schema/dataverse-tables.json -exceptions exceptions.json -out tables.json

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
)

//go:embed tables.json
var tablesJSON []byte

//go:embed exceptions.json
var exceptionsJSON []byte

// Table is one table's facts. Field names follow the reference.
type Table struct {
	LogicalName          string             `json:"logicalName"`
	EntitySetName        string             `json:"entitySetName"`
	PrimaryIDAttribute   string             `json:"primaryIdAttribute"`
	PrimaryNameAttribute string             `json:"primaryNameAttribute"`
	OwnershipType        string             `json:"ownershipType"` // UserOwned, BusinessOwned, OrganizationOwned, None
	Columns              map[string]*Column `json:"columns"`
	ManyToOne            []ManyToOne        `json:"manyToOne"`
	OneToMany            []OneToMany        `json:"oneToMany"`
	ManyToMany           []ManyToMany       `json:"manyToMany"`
}

// Column is one column's facts.
type Column struct {
	Type             string   `json:"type"` // the reference's AttributeType: String, Lookup, Owner, Picklist, ...
	MaxLength        int      `json:"maxLength"`
	Section          string   `json:"section"`      // "writable" or "readOnly"; "" when derived
	ValidForRead     *bool    `json:"validForRead"` // nil = true
	Targets          []string `json:"targets"`
	Options          []Option `json:"options"`
	DefaultValue     any      `json:"defaultValue"` // Boolean columns only
	DateTimeBehavior string   `json:"dateTimeBehavior"`
	DerivedFrom      string   `json:"derivedFrom"` // "manyToOne": known from a relationship, the page's column list is filtered
}

// Option is a choice value: an integer (Picklist, State, Status) or a bool (Boolean).
type Option struct {
	Value         any    `json:"value"`
	Label         string `json:"label"`
	State         *int   `json:"state"`         // Status: the state it belongs to
	DefaultStatus *int   `json:"defaultStatus"` // State: its default status
}

// ManyToOne is an N:1 relationship seen from the referencing table; NavigationProperty
// is the single-valued navigation property on it.
type ManyToOne struct {
	SchemaName           string `json:"schemaName"`
	ReferencingAttribute string `json:"referencingAttribute"`
	ReferencedEntity     string `json:"referencedEntity"` // "owner" for ownerid
	NavigationProperty   string `json:"navigationProperty"`
}

// OneToMany is a 1:N relationship seen from the referenced table; NavigationProperty
// is the collection-valued navigation property on it.
type OneToMany struct {
	SchemaName           string `json:"schemaName"`
	ReferencingEntity    string `json:"referencingEntity"`
	ReferencingAttribute string `json:"referencingAttribute"`
	NavigationProperty   string `json:"navigationProperty"`
}

// ManyToMany is an N:N relationship as one side's page prints it.
type ManyToMany struct {
	SchemaName         string `json:"schemaName"`
	IntersectAttribute string `json:"intersectAttribute"`
	OtherEntity        string `json:"otherEntity"`
	NavigationProperty string `json:"navigationProperty"`
}

// IsLookup reports whether the column is a lookup (read as _<name>_value).
func (c *Column) IsLookup() bool {
	return c.Type == "Lookup" || c.Type == "Owner" || c.Type == "Customer"
}

// ReadOnly reports whether the column is outside the page's Writable section
// (derived columns count as read-only: the reference does not say otherwise).
func (c *Column) ReadOnly() bool { return c.Section != "writable" }

// Readable reports IsValidForRead (false: write-only, never returned).
func (c *Column) Readable() bool { return c.ValidForRead == nil || *c.ValidForRead }

// EdmType is the property type the Web API gives the column.
func (c *Column) EdmType() string {
	switch c.Type {
	case "Uniqueidentifier", "Lookup", "Owner", "Customer":
		return "Edm.Guid"
	case "Integer", "Picklist", "State", "Status":
		return "Edm.Int32"
	case "BigInt":
		return "Edm.Int64"
	case "Boolean":
		return "Edm.Boolean"
	case "DateTime":
		if c.DateTimeBehavior == "DateOnly" {
			return "Edm.Date"
		}
		return "Edm.DateTimeOffset"
	case "Decimal", "Money":
		return "Edm.Decimal"
	case "Double":
		return "Edm.Double"
	}
	return "Edm.String" // String, Memo, EntityName
}

// PropertyName is the Web API property of a column (_x_value for lookups).
func PropertyName(name string, c *Column) string {
	if c.IsLookup() {
		return "_" + name + "_value"
	}
	return name
}

// Exceptions are the emulator's departures from the reference, each with its reason.
type Exceptions struct {
	Tables []struct {
		Reason string `json:"reason"`
		Table  *Table `json:"table"`
	} `json:"tables"`
	Columns []struct {
		Table  string  `json:"table"`
		Column string  `json:"column"`
		Reason string  `json:"reason"`
		Facts  *Column `json:"facts"`
	} `json:"columns"`
	ManyToMany []struct {
		Table  string     `json:"table"`
		Reason string     `json:"reason"`
		Facts  ManyToMany `json:"facts"`
	} `json:"manyToMany"`
	Omit []struct {
		Table  string `json:"table"`
		Kind   string `json:"kind"` // column, navigation (single- or collection-valued), manyToMany
		Name   string `json:"name"`
		Reason string `json:"reason"`
	} `json:"omit"`
	OmitTypes []struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"omitTypes"`
}

// Schema is what the emulator serves: the facts with the exceptions applied.
type Schema struct {
	Tables map[string]*Table

	facts map[string]*Table // tables.json as copied
	ex    *Exceptions
}

// Load decodes the embedded facts and exceptions and merges them. It fails
// when the result is inconsistent (a relationship whose column or table is
// not served), so every such gap has to be named in exceptions.json.
func Load() (*Schema, error) {
	// Decoded twice: the merge edits one copy, Stale compares with the other.
	decode := func() (map[string]*Table, error) {
		var f struct {
			Tables map[string]*Table `json:"tables"`
		}
		if err := json.Unmarshal(tablesJSON, &f); err != nil {
			return nil, fmt.Errorf("schema: decode tables.json: %w", err)
		}
		return f.Tables, nil
	}
	tables, err := decode()
	if err != nil {
		return nil, err
	}
	facts, err := decode()
	if err != nil {
		return nil, err
	}
	ex := &Exceptions{}
	if err := json.Unmarshal(exceptionsJSON, ex); err != nil {
		return nil, fmt.Errorf("schema: decode exceptions.json: %w", err)
	}
	s := &Schema{Tables: tables, facts: facts, ex: ex}
	if err := s.apply(); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// Exceptions returns the decoded exceptions file.
func (s *Schema) Exceptions() *Exceptions { return s.ex }

func (s *Schema) apply() error {
	for _, et := range s.ex.Tables {
		if et.Table == nil || et.Table.LogicalName == "" {
			return fmt.Errorf("schema: exceptions.json: a table entry without a table")
		}
		if _, ok := s.Tables[et.Table.LogicalName]; ok {
			continue // stale; Stale reports it
		}
		t := *et.Table
		if t.Columns == nil {
			t.Columns = map[string]*Column{}
		}
		s.Tables[t.LogicalName] = &t
	}
	for _, ec := range s.ex.Columns {
		t, ok := s.Tables[ec.Table]
		if !ok || ec.Facts == nil {
			return fmt.Errorf("schema: exceptions.json: column %s.%s: unknown table or no facts", ec.Table, ec.Column)
		}
		if _, ok := t.Columns[ec.Column]; !ok {
			t.Columns[ec.Column] = ec.Facts
		}
	}
	for _, en := range s.ex.ManyToMany {
		t, ok := s.Tables[en.Table]
		if !ok {
			return fmt.Errorf("schema: exceptions.json: N:N %s on unknown table %s", en.Facts.SchemaName, en.Table)
		}
		if !slices.ContainsFunc(t.ManyToMany, func(m ManyToMany) bool { return m.NavigationProperty == en.Facts.NavigationProperty }) {
			t.ManyToMany = append(t.ManyToMany, en.Facts)
		}
	}
	omitType := map[string]bool{}
	for _, ot := range s.ex.OmitTypes {
		omitType[ot.Type] = true
	}
	for _, t := range s.Tables {
		for name, c := range t.Columns {
			if omitType[c.Type] {
				delete(t.Columns, name)
			}
		}
	}
	for _, o := range s.ex.Omit {
		t, ok := s.Tables[o.Table]
		if !ok {
			return fmt.Errorf("schema: exceptions.json: omit %s %s on unknown table %s", o.Kind, o.Name, o.Table)
		}
		switch o.Kind {
		case "column":
			delete(t.Columns, o.Name)
		case "navigation":
			t.ManyToOne = slices.DeleteFunc(t.ManyToOne, func(m ManyToOne) bool { return m.NavigationProperty == o.Name })
			t.OneToMany = slices.DeleteFunc(t.OneToMany, func(m OneToMany) bool { return m.NavigationProperty == o.Name })
		case "manyToMany":
			t.ManyToMany = slices.DeleteFunc(t.ManyToMany, func(m ManyToMany) bool { return m.NavigationProperty == o.Name })
		default:
			return fmt.Errorf("schema: exceptions.json: omit kind %q (want column, navigation or manyToMany)", o.Kind)
		}
	}
	return nil
}

// check verifies that every served relationship can be backed: its lookup
// column and the table at its other end are served.
func (s *Schema) check() error {
	sets := map[string]string{}
	for _, name := range s.TableNames() {
		t := s.Tables[name]
		if other, dup := sets[t.EntitySetName]; dup {
			return fmt.Errorf("schema: entity set %s of %s is also %s's", t.EntitySetName, name, other)
		}
		sets[t.EntitySetName] = name
		if pk, ok := t.Columns[t.PrimaryIDAttribute]; !ok || pk.Type != "Uniqueidentifier" {
			return fmt.Errorf("schema: %s: primary key %s is not a Uniqueidentifier column", name, t.PrimaryIDAttribute)
		}
		for _, m := range t.ManyToOne {
			c, ok := t.Columns[m.ReferencingAttribute]
			if !ok || !c.IsLookup() {
				return fmt.Errorf("schema: %s: navigation %s: %s is not a served lookup column (add an omit exception)", name, m.NavigationProperty, m.ReferencingAttribute)
			}
			if _, ok := s.Tables[m.ReferencedEntity]; !ok && m.ReferencedEntity != "owner" {
				return fmt.Errorf("schema: %s: navigation %s: table %s is not served", name, m.NavigationProperty, m.ReferencedEntity)
			}
		}
		for _, o := range t.OneToMany {
			rt, ok := s.Tables[o.ReferencingEntity]
			if !ok {
				return fmt.Errorf("schema: %s: navigation %s: table %s is not served", name, o.NavigationProperty, o.ReferencingEntity)
			}
			if c, ok := rt.Columns[o.ReferencingAttribute]; !ok || !c.IsLookup() {
				return fmt.Errorf("schema: %s: navigation %s: %s.%s is not a served lookup column (add an omit exception)", name, o.NavigationProperty, o.ReferencingEntity, o.ReferencingAttribute)
			}
		}
		for _, n := range t.ManyToMany {
			if _, ok := s.Tables[n.OtherEntity]; !ok {
				return fmt.Errorf("schema: %s: N:N %s: table %s is not served", name, n.NavigationProperty, n.OtherEntity)
			}
			if n.OtherEntity == name {
				return fmt.Errorf("schema: %s: N:N %s is self-referencing (add an omit exception)", name, n.NavigationProperty)
			}
		}
	}
	return nil
}

// TableNames returns the served tables' logical names, sorted.
func (s *Schema) TableNames() []string {
	out := make([]string, 0, len(s.Tables))
	for n := range s.Tables {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Stale lists the exceptions that are no longer needed: additions the facts
// now have, omissions of names the facts do not have.
func (s *Schema) Stale() []string {
	var out []string
	for _, et := range s.ex.Tables {
		if _, ok := s.facts[et.Table.LogicalName]; ok {
			out = append(out, "table "+et.Table.LogicalName+" is in tables.json")
		}
		if et.Reason == "" {
			out = append(out, "table "+et.Table.LogicalName+" has no reason")
		}
	}
	for _, ec := range s.ex.Columns {
		if t, ok := s.facts[ec.Table]; ok {
			if _, ok := t.Columns[ec.Column]; ok {
				out = append(out, "column "+ec.Table+"."+ec.Column+" is in tables.json")
			}
		}
		if ec.Reason == "" {
			out = append(out, "column "+ec.Table+"."+ec.Column+" has no reason")
		}
	}
	for _, en := range s.ex.ManyToMany {
		if t, ok := s.facts[en.Table]; ok && slices.ContainsFunc(t.ManyToMany, func(m ManyToMany) bool { return m.NavigationProperty == en.Facts.NavigationProperty }) {
			out = append(out, "N:N "+en.Table+"."+en.Facts.NavigationProperty+" is in tables.json")
		}
		if en.Reason == "" {
			out = append(out, "N:N "+en.Table+"."+en.Facts.NavigationProperty+" has no reason")
		}
	}
	for _, o := range s.ex.Omit {
		t, ok := s.facts[o.Table]
		found := false
		if ok {
			switch o.Kind {
			case "column":
				_, found = t.Columns[o.Name]
			case "navigation":
				found = slices.ContainsFunc(t.ManyToOne, func(m ManyToOne) bool { return m.NavigationProperty == o.Name }) ||
					slices.ContainsFunc(t.OneToMany, func(m OneToMany) bool { return m.NavigationProperty == o.Name })
			case "manyToMany":
				found = slices.ContainsFunc(t.ManyToMany, func(m ManyToMany) bool { return m.NavigationProperty == o.Name })
			}
		}
		if !found {
			out = append(out, "omit "+o.Kind+" "+o.Table+"."+o.Name+" is not in tables.json")
		}
		if o.Reason == "" {
			out = append(out, "omit "+o.Kind+" "+o.Table+"."+o.Name+" has no reason")
		}
	}
	for _, ot := range s.ex.OmitTypes {
		used := false
		for _, t := range s.facts {
			for _, c := range t.Columns {
				used = used || c.Type == ot.Type
			}
		}
		if !used {
			out = append(out, "omit type "+ot.Type+" has no column in tables.json")
		}
		if ot.Reason == "" {
			out = append(out, "omit type "+ot.Type+" has no reason")
		}
	}
	return out
}
