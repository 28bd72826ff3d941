package schema

import (
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

const typePrefix = "Microsoft.Dynamics.CRM."

// csdl is the part of a $metadata document Drift reads.
type csdl struct {
	Schemas []struct {
		EntityTypes []struct {
			Name string `xml:"Name,attr"`
			Key  []struct {
				Name string `xml:"Name,attr"`
			} `xml:"Key>PropertyRef"`
			Properties []struct {
				Name string `xml:"Name,attr"`
				Type string `xml:"Type,attr"`
			} `xml:"Property"`
			Navs []struct {
				Name string `xml:"Name,attr"`
				Type string `xml:"Type,attr"`
			} `xml:"NavigationProperty"`
		} `xml:"EntityType"`
		Sets []struct {
			Name       string `xml:"Name,attr"`
			EntityType string `xml:"EntityType,attr"`
		} `xml:"EntityContainer>EntitySet"`
	} `xml:"DataServices>Schema"`
}

// Drift compares a $metadata document with the schema and returns every
// difference, one line each, sorted: entity sets and keys, properties (columns
// with their Edm types, lookups as _x_value), single-valued navigation
// properties (N:1), and collection-valued ones (1:N and N:N), names in exact
// case, on every table. custom reports properties the caller added on purpose
// (a solution's own columns); they are not differences.
func Drift(metadata io.Reader, s *Schema, custom func(table, property string) bool) ([]string, error) {
	var doc csdl
	if err := xml.NewDecoder(metadata).Decode(&doc); err != nil {
		return nil, fmt.Errorf("schema drift: decode $metadata: %w", err)
	}
	got := map[string]string{}     // "table kind name" -> detail
	gotSets := map[string]string{} // table -> entity set
	for _, sc := range doc.Schemas {
		for _, et := range sc.EntityTypes {
			t := et.Name
			got[t+" entity"] = ""
			for _, k := range et.Key {
				got[t+" key "+k.Name] = ""
			}
			for _, p := range et.Properties {
				if custom != nil && custom(t, p.Name) {
					continue
				}
				got[t+" property "+p.Name] = p.Type
			}
			for _, n := range et.Navs {
				kind := "single"
				if strings.HasPrefix(n.Type, "Collection(") {
					kind = "collection"
				}
				got[t+" "+kind+" "+n.Name] = n.Type
			}
		}
		for _, es := range sc.Sets {
			gotSets[strings.TrimPrefix(es.EntityType, typePrefix)] = es.Name
		}
	}
	want := map[string]string{}
	for _, name := range s.TableNames() {
		t := s.Tables[name]
		want[name+" entity"] = ""
		want[name+" key "+t.PrimaryIDAttribute] = ""
		for cn, c := range t.Columns {
			want[name+" property "+PropertyName(cn, c)] = c.EdmType()
		}
		for _, m := range t.ManyToOne {
			// One navigation may serve several targets (email.acceptingentityid:
			// queue|systemuser); its declared type is then any one of them.
			k := name + " single " + m.NavigationProperty
			if w, ok := want[k]; ok {
				want[k] = w + "|mscrm." + m.ReferencedEntity
			} else {
				want[k] = "mscrm." + m.ReferencedEntity
			}
		}
		for _, o := range t.OneToMany {
			want[name+" collection "+o.NavigationProperty] = "Collection(mscrm." + o.ReferencingEntity + ")"
		}
		for _, n := range t.ManyToMany {
			want[name+" collection "+n.NavigationProperty] = "Collection(mscrm." + n.OtherEntity + ")"
		}
	}
	var out []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			out = append(out, "missing: "+k+detail(w))
		case !slices.Contains(strings.Split(w, "|"), g):
			out = append(out, fmt.Sprintf("type: %s is %s, want %s", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			out = append(out, "not in the reference: "+k+detail(g))
		}
	}
	for _, name := range s.TableNames() {
		if set := gotSets[name]; set != s.Tables[name].EntitySetName {
			out = append(out, fmt.Sprintf("entity set of %s is %q, want %q", name, set, s.Tables[name].EntitySetName))
		}
		delete(gotSets, name)
	}
	for name, set := range gotSets {
		out = append(out, fmt.Sprintf("not in the reference: entity set %s of %s", set, name))
	}
	sort.Strings(out)
	return out, nil
}

func detail(typ string) string {
	if typ == "" {
		return ""
	}
	return " (" + typ + ")"
}
