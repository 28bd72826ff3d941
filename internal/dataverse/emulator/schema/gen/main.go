// Command gen copies the facts the emulator needs from Microsoft's Dataverse
// table reference (a JSON extract of the generated table pages) into
// tables.json: per table its names, ownership, columns (type, max length,
// read-only, targets, options, defaults) and relationships with their exact
// navigation property names. Descriptions and other prose are left behind.
//
// Only the selected tables are copied, and only the relationships between
// them (plus the tables exceptions.json adds), so the emulator serves the
// reference's names for every table it has and nothing it cannot back. On
// pages whose column list is filtered, a many-to-one relationship whose
// referencing attribute is not listed still proves a lookup of that name: the
// column is copied as a Lookup marked "derivedFrom": "manyToOne".
//
// Usage (see the go:generate line in ../schema.go):
//
//	go run ./gen -ref <dataverse-tables.json> -exceptions exceptions.json -out tables.json
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
)

// The tables the emulator serves that the reference describes. mspp_webrole
// is left out on purpose: it is a virtual table over powerpagecomponent rows.
const defaultTables = "account,activityparty,adx_externalidentity,adx_invitation,adx_inviteredemption,adx_webrole,adx_website," +
	"businessunit,contact,email,mailbox,powerpagecomponent,powerpagesite,queue,sdkmessage,sdkmessagefilter," +
	"sdkmessageprocessingstep,sdkmessageprocessingstepimage,serviceendpoint,systemuser,team,workflow"

func main() {
	ref := flag.String("ref", "", "path of the reference's dataverse-tables.json")
	exc := flag.String("exceptions", "exceptions.json", "exceptions file (its tables count as selected)")
	out := flag.String("out", "tables.json", "output file")
	tables := flag.String("tables", defaultTables, "comma-separated logical names to copy")
	flag.Parse()
	if *ref == "" {
		fmt.Fprintln(os.Stderr, "gen: -ref is required")
		os.Exit(2)
	}
	if err := run(*ref, *exc, *out, splitList(*tables)); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

func run(refPath, excPath, outPath string, names []string) error {
	raw, err := os.ReadFile(refPath)
	if err != nil {
		return fmt.Errorf("read reference: %w", err)
	}
	var ref struct {
		Tables map[string]refTable `json:"tables"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		return fmt.Errorf("decode reference %s: %w", refPath, err)
	}
	selected := map[string]bool{}
	for _, n := range names {
		if _, ok := ref.Tables[n]; !ok {
			return fmt.Errorf("table %s is not in the reference", n)
		}
		selected[n] = true
	}
	if excPath != "" {
		extra, err := exceptionTables(excPath)
		if err != nil {
			return err
		}
		for _, n := range extra {
			selected[n] = true
		}
	}
	outTables := map[string]*table{}
	for n := range selected {
		rt, ok := ref.Tables[n]
		if !ok {
			continue // an exceptions table: its facts live in exceptions.json
		}
		outTables[n] = copyTable(rt, selected)
	}
	out, err := format(outTables)
	if err != nil {
		return err
	}
	if err := os.WriteFile(outPath, out, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", outPath, err)
	}
	return nil
}

// format writes one line per column and relationship so a regenerated file
// diffs line by line; keys are sorted.
func format(tables map[string]*table) ([]byte, error) {
	compact := func(v any) (string, error) {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return "", fmt.Errorf("encode: %w", err)
		}
		return strings.TrimSuffix(b.String(), "\n"), nil
	}
	var b bytes.Buffer
	b.WriteString("{\n \"tables\": {\n")
	names := make([]string, 0, len(tables))
	for n := range tables {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		t := tables[n]
		h, err := compact(tableHead{t.LogicalName, t.EntitySetName, t.PrimaryIDAttribute, t.PrimaryNameAttribute, t.OwnershipType, t.Source})
		if err != nil {
			return nil, err
		}
		// The header object without its closing brace, then the lists.
		fmt.Fprintf(&b, "  %q: %s,\n", n, strings.TrimSuffix(h, "}"))
		b.WriteString("   \"columns\": {\n")
		cols := make([]string, 0, len(t.Columns))
		for c := range t.Columns {
			cols = append(cols, c)
		}
		sort.Strings(cols)
		for j, c := range cols {
			v, err := compact(t.Columns[c])
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, "    %q: %s%s\n", c, v, sep(j, len(cols)))
		}
		b.WriteString("   },\n")
		lists := []struct {
			key  string
			n    int
			item func(int) any
		}{
			{"manyToOne", len(t.ManyToOne), func(k int) any { return t.ManyToOne[k] }},
			{"oneToMany", len(t.OneToMany), func(k int) any { return t.OneToMany[k] }},
			{"manyToMany", len(t.ManyToMany), func(k int) any { return t.ManyToMany[k] }},
		}
		for li, l := range lists {
			fmt.Fprintf(&b, "   %q: [", l.key)
			if l.n > 0 {
				b.WriteString("\n")
			}
			for k := 0; k < l.n; k++ {
				v, err := compact(l.item(k))
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(&b, "    %s%s\n", v, sep(k, l.n))
			}
			if l.n > 0 {
				b.WriteString("   ")
			}
			fmt.Fprintf(&b, "]%s\n", sep(li, len(lists)))
		}
		fmt.Fprintf(&b, "  }%s\n", sep(i, len(names)))
	}
	b.WriteString(" }\n}\n")
	var check map[string]any
	if err := json.Unmarshal(b.Bytes(), &check); err != nil {
		return nil, fmt.Errorf("formatted output is not JSON: %w", err)
	}
	return b.Bytes(), nil
}

func sep(i, n int) string {
	if i < n-1 {
		return ","
	}
	return ""
}

func exceptionTables(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read exceptions: %w", err)
	}
	var ex struct {
		Tables []struct {
			Table struct {
				LogicalName string `json:"logicalName"`
			} `json:"table"`
		} `json:"tables"`
	}
	if err := json.Unmarshal(raw, &ex); err != nil {
		return nil, fmt.Errorf("decode exceptions %s: %w", path, err)
	}
	var out []string
	for _, t := range ex.Tables {
		out = append(out, t.Table.LogicalName)
	}
	return out, nil
}

// refTable is the part of a reference entry that is copied.
type refTable struct {
	LogicalName          string               `json:"logicalName"`
	EntitySetName        string               `json:"entitySetName"`
	PrimaryIDAttribute   string               `json:"primaryIdAttribute"`
	PrimaryNameAttribute string               `json:"primaryNameAttribute"`
	OwnershipType        string               `json:"ownershipType"`
	Columns              map[string]refColumn `json:"columns"`
	ManyToOne            []manyToOne          `json:"manyToOne"`
	OneToMany            []oneToMany          `json:"oneToMany"`
	ManyToMany           []manyToMany         `json:"manyToMany"`
	Source               *source              `json:"source"`
}

type refColumn struct {
	Type             string   `json:"type"`
	MaxLength        int      `json:"maxLength"`
	Section          string   `json:"section"`
	ValidForRead     *bool    `json:"validForRead"`
	Targets          []string `json:"targets"`
	Options          []option `json:"options"`
	DefaultValue     any      `json:"defaultValue"`
	DateTimeBehavior string   `json:"dateTimeBehavior"`
	Flavour          string   `json:"flavour"`
}

type source struct {
	Repo   string `json:"repo"`
	Path   string `json:"path"`
	Commit string `json:"commit"`
}

// Output shapes: the reference's own field names, facts only.
type table struct {
	LogicalName          string             `json:"logicalName"`
	EntitySetName        string             `json:"entitySetName"`
	PrimaryIDAttribute   string             `json:"primaryIdAttribute"`
	PrimaryNameAttribute string             `json:"primaryNameAttribute,omitempty"`
	OwnershipType        string             `json:"ownershipType"`
	Source               *source            `json:"source,omitempty"`
	Columns              map[string]*column `json:"columns"`
	ManyToOne            []manyToOne        `json:"manyToOne"`
	OneToMany            []oneToMany        `json:"oneToMany"`
	ManyToMany           []manyToMany       `json:"manyToMany"`
}

// tableHead is a table without its lists (format writes those line by line).
type tableHead struct {
	LogicalName          string  `json:"logicalName"`
	EntitySetName        string  `json:"entitySetName"`
	PrimaryIDAttribute   string  `json:"primaryIdAttribute"`
	PrimaryNameAttribute string  `json:"primaryNameAttribute,omitempty"`
	OwnershipType        string  `json:"ownershipType"`
	Source               *source `json:"source,omitempty"`
}

type column struct {
	Type             string   `json:"type"`
	MaxLength        int      `json:"maxLength,omitempty"`
	Section          string   `json:"section,omitempty"`
	ValidForRead     *bool    `json:"validForRead,omitempty"` // only when false
	Targets          []string `json:"targets,omitempty"`
	Options          []option `json:"options,omitempty"`
	DefaultValue     any      `json:"defaultValue,omitempty"`
	DateTimeBehavior string   `json:"dateTimeBehavior,omitempty"`
	DerivedFrom      string   `json:"derivedFrom,omitempty"`
	Flavour          string   `json:"flavour,omitempty"`
}

type option struct {
	Value         any    `json:"value"`
	Label         string `json:"label,omitempty"`
	State         *int   `json:"state,omitempty"`
	DefaultStatus *int   `json:"defaultStatus,omitempty"`
}

type manyToOne struct {
	SchemaName           string `json:"schemaName"`
	ReferencingAttribute string `json:"referencingAttribute"`
	ReferencedEntity     string `json:"referencedEntity"`
	NavigationProperty   string `json:"navigationProperty"`
	Flavour              string `json:"flavour,omitempty"`
}

type oneToMany struct {
	SchemaName           string `json:"schemaName"`
	ReferencingEntity    string `json:"referencingEntity"`
	ReferencingAttribute string `json:"referencingAttribute"`
	NavigationProperty   string `json:"navigationProperty"`
	Flavour              string `json:"flavour,omitempty"`
}

type manyToMany struct {
	SchemaName         string `json:"schemaName"`
	IntersectAttribute string `json:"intersectAttribute"`
	OtherEntity        string `json:"otherEntity"`
	NavigationProperty string `json:"navigationProperty"`
	Flavour            string `json:"flavour,omitempty"`
}

func copyTable(rt refTable, selected map[string]bool) *table {
	t := &table{
		LogicalName: rt.LogicalName, EntitySetName: rt.EntitySetName, PrimaryIDAttribute: rt.PrimaryIDAttribute,
		PrimaryNameAttribute: rt.PrimaryNameAttribute, OwnershipType: rt.OwnershipType, Source: rt.Source,
		Columns: map[string]*column{}, ManyToOne: []manyToOne{}, OneToMany: []oneToMany{}, ManyToMany: []manyToMany{},
	}
	for name, rc := range rt.Columns {
		c := &column{
			Type: rc.Type, MaxLength: rc.MaxLength, Section: rc.Section, Targets: rc.Targets, Options: rc.Options,
			DefaultValue: rc.DefaultValue, DateTimeBehavior: rc.DateTimeBehavior, Flavour: rc.Flavour,
		}
		if rc.ValidForRead != nil && !*rc.ValidForRead {
			c.ValidForRead = rc.ValidForRead
		}
		t.Columns[name] = c
	}
	for _, m := range rt.ManyToOne {
		if selected[m.ReferencedEntity] || m.ReferencedEntity == "owner" {
			t.ManyToOne = append(t.ManyToOne, m)
		}
	}
	for _, o := range rt.OneToMany {
		if selected[o.ReferencingEntity] {
			t.OneToMany = append(t.OneToMany, o)
		}
	}
	for _, n := range rt.ManyToMany {
		if selected[n.OtherEntity] {
			t.ManyToMany = append(t.ManyToMany, n)
		}
	}
	// A kept N:1 relationship whose referencing attribute the (filtered) column
	// list does not print still names a lookup column of this table.
	derived := map[string][]string{}
	for _, m := range t.ManyToOne {
		if _, ok := t.Columns[m.ReferencingAttribute]; ok {
			continue
		}
		if !slices.Contains(derived[m.ReferencingAttribute], m.ReferencedEntity) {
			derived[m.ReferencingAttribute] = append(derived[m.ReferencingAttribute], m.ReferencedEntity)
		}
	}
	for name, targets := range derived {
		sort.Strings(targets)
		t.Columns[name] = &column{Type: "Lookup", Targets: targets, DerivedFrom: "manyToOne"}
	}
	return t
}
