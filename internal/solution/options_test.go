package solution

import (
	"strings"
	"testing"
)

func TestDefaultOptions(t *testing.T) {
	o := DefaultOptions()
	if o.Prefix != "pinv" || o.Version != "1.0.0.0" || len(o.Portals) != 0 {
		t.Fatalf("DefaultOptions() = %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	// The names the connector's config defaults to (intake.contact.*).
	want := Columns{
		Status:    "pinv_portalinvitestatus",
		Portal:    "pinv_portalname",
		Roles:     "pinv_portalroles",
		InvitedOn: "pinv_lastinvitedon",
		Error:     "pinv_lastinviteerror",
	}
	if got := o.Columns(); got != want {
		t.Errorf("Columns() = %+v, want %+v", got, want)
	}
	if got := (Options{}).Columns(); got != want {
		t.Errorf("zero Options Columns() = %+v, want %+v", got, want)
	}
	if got := ColumnsFor("ACME").Status; got != "acme_portalinvitestatus" {
		t.Errorf("ColumnsFor(ACME).Status = %q", got)
	}
}

func TestWebResourceName(t *testing.T) {
	if got := WebResourceName("", "dialog.html"); got != "pinv_/portalinvite/dialog.html" {
		t.Errorf("WebResourceName = %q", got)
	}
	if got := WebResourceName("acme", "invite.js"); got != "acme_/portalinvite/invite.js" {
		t.Errorf("WebResourceName = %q", got)
	}
}

func TestValidate(t *testing.T) {
	portal := func(name string, roles, defaults []string) PortalChoice {
		return PortalChoice{Name: name, Roles: roles, DefaultRoles: defaults}
	}
	tests := []struct {
		name    string
		opts    Options
		wantErr string // substring; "" means valid
	}{
		{"zero value", Options{}, ""},
		{"prefix upper case is lowered", Options{Prefix: "Acme"}, ""},
		{"prefix with digits", Options{Prefix: "ab12"}, ""},
		{"prefix too short", Options{Prefix: "a"}, `prefix "a"`},
		{"prefix too long", Options{Prefix: "abcdefghi"}, `prefix "abcdefghi"`},
		{"prefix starting with a digit", Options{Prefix: "1abc"}, `prefix "1abc"`},
		{"prefix with underscore", Options{Prefix: "ab_c"}, `prefix "ab_c"`},
		{"prefix mscrm", Options{Prefix: "mscrmx"}, `prefix "mscrmx"`},
		{"semver version", Options{Version: "v2.3.4-rc.1"}, ""},
		{"bad version", Options{Version: "dev"}, `version "dev"`},
		{"portals", Options{Portals: []PortalChoice{
			portal("Partner Portal", []string{"Partners", "Customers"}, []string{"Partners"}),
			portal("Customer Portal", nil, nil),
		}}, ""},
		{"empty portal name", Options{Portals: []PortalChoice{portal("  ", nil, nil)}}, "portals[0]: name is empty"},
		{"long portal name", Options{Portals: []PortalChoice{portal(strings.Repeat("p", 101), nil, nil)}}, "longer than 100"},
		{"duplicate portal", Options{Portals: []PortalChoice{portal("A", nil, nil), portal("a", nil, nil)}}, `portal "a": listed twice`},
		{"comma in role", Options{Portals: []PortalChoice{portal("A", []string{"x,y"}, nil)}}, "contains a comma"},
		{"empty role", Options{Portals: []PortalChoice{portal("A", []string{""}, nil)}}, "empty role name"},
		{"duplicate role", Options{Portals: []PortalChoice{portal("A", []string{"R", "r"}, nil)}}, `role "r" listed twice`},
		{"roles too long", Options{Portals: []PortalChoice{portal("A", manyRoles(120), nil)}}, "the column holds 1000"},
		{"unknown default role", Options{Portals: []PortalChoice{portal("A", []string{"R"}, []string{"S"})}}, `default role "S"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "solution options: ") {
				t.Errorf("error %q lacks the op prefix", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Options{Prefix: "x", Version: "dev", Portals: []PortalChoice{{Name: ""}}}.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	for _, want := range []string{`prefix "x"`, `version "dev"`, "name is empty"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func manyRoles(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "Role number " + strings.Repeat("x", 3) + string(rune('A'+i%26)) + string(rune('a'+i/26))
	}
	return out
}

func TestNormalizeVersion(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"1.0", "1.0.0.0", true},
		{"1.2.3", "1.2.3.0", true},
		{"1.2.3.4", "1.2.3.4", true},
		{"v1.2.3", "1.2.3.0", true},
		{" 2.0.1-rc.1 ", "2.0.1.0", true},
		{"1.2.3+build.5", "1.2.3.0", true},
		{"01.002", "1.2.0.0", true},
		{"1", "", false},
		{"1.2.3.4.5", "", false},
		{"dev", "", false},
		{"1..2", "", false},
		{"1.x", "", false},
		{"1.-2", "", false},
		{"2147483648.0", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, err := NormalizeVersion(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("NormalizeVersion(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestPrefixFromColumns(t *testing.T) {
	if got, err := PrefixFromColumns(ColumnsFor("acme")); got != "acme" || err != nil {
		t.Errorf("PrefixFromColumns(acme) = %q, %v", got, err)
	}
	if got, err := PrefixFromColumns(DefaultOptions().Columns()); got != "pinv" || err != nil {
		t.Errorf("PrefixFromColumns(default) = %q, %v", got, err)
	}
	mixed := ColumnsFor("pinv")
	mixed.Roles = "new_roles"
	if _, err := PrefixFromColumns(mixed); err == nil || !strings.Contains(err.Error(), `roles column "new_roles"`) {
		t.Errorf("PrefixFromColumns(mixed) = %v", err)
	}
	for _, status := range []string{"", "portalinvitestatus", "Bad_portalinvitestatus"} {
		c := ColumnsFor("pinv")
		c.Status = status
		if _, err := PrefixFromColumns(c); err == nil {
			t.Errorf("PrefixFromColumns(status %q) = nil error", status)
		}
	}
}
