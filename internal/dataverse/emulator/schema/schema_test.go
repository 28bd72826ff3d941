package schema

import (
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if stale := s.Stale(); len(stale) > 0 {
		t.Fatalf("stale exceptions: %q", stale)
	}
	email := s.Tables["email"]
	if email == nil || email.EntitySetName != "emails" || email.PrimaryIDAttribute != "activityid" {
		t.Fatalf("email: %+v", email)
	}
	navs := map[string]string{}
	for _, m := range email.ManyToOne {
		navs[m.NavigationProperty] = m.ReferencingAttribute
	}
	if navs["ownerid_email"] != "ownerid" || navs["ownerid"] != "" {
		t.Fatalf("email owner navigation: %v", navs)
	}
	for _, c := range email.Columns {
		if c.Type == "PartyList" {
			t.Fatal("an omitted type is served")
		}
	}
	// Exception tables and N:N are merged in.
	if s.Tables["organization"] == nil || s.Tables["tracelog"].EntitySetName != "tracelogs" {
		t.Fatal("exception tables missing")
	}
	found := false
	for _, n := range s.Tables["contact"].ManyToMany {
		found = found || n.NavigationProperty == "adx_webrole_contact"
	}
	if !found {
		t.Fatal("contact lacks adx_webrole_contact")
	}
	if _, ok := s.Tables["systemuser"].Columns["organizationid"]; ok {
		t.Fatal("omitted column served")
	}
}

func TestStaleDetected(t *testing.T) {
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	// An omission of a name the facts lack and an addition the facts have.
	s.ex.Omit = append(s.ex.Omit, s.ex.Omit[0])
	s.ex.Omit[len(s.ex.Omit)-1].Name = "nosuchcolumn"
	s.ex.ManyToMany = append(s.ex.ManyToMany, s.ex.ManyToMany[0])
	s.ex.ManyToMany[len(s.ex.ManyToMany)-1].Table = "adx_webrole"
	got := strings.Join(s.Stale(), "\n")
	for _, want := range []string{"omit column systemuser.nosuchcolumn is not in tables.json", "N:N adx_webrole.adx_webrole_contact is in tables.json"} {
		if !strings.Contains(got, want) {
			t.Errorf("stale report lacks %q:\n%s", want, got)
		}
	}
}

func TestEdmTypes(t *testing.T) {
	for typ, want := range map[string]string{
		"String": "Edm.String", "Memo": "Edm.String", "EntityName": "Edm.String", "Lookup": "Edm.Guid", "Owner": "Edm.Guid",
		"Customer": "Edm.Guid", "Uniqueidentifier": "Edm.Guid", "Picklist": "Edm.Int32", "State": "Edm.Int32", "BigInt": "Edm.Int64",
		"Boolean": "Edm.Boolean", "DateTime": "Edm.DateTimeOffset", "Decimal": "Edm.Decimal", "Double": "Edm.Double",
	} {
		if got := (&Column{Type: typ}).EdmType(); got != want {
			t.Errorf("%s: %s, want %s", typ, got, want)
		}
	}
	if PropertyName("ownerid", &Column{Type: "Owner"}) != "_ownerid_value" {
		t.Error("lookup property name")
	}
}
