package bulk

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadCSV(t *testing.T) {
	in := "\ufeffEmail,Portal,Roles\n" +
		"maria@fabrikam.example,,\n" +
		"\n" + // blank lines are skipped and do not shift line numbers
		"nancy@adventure-works.example,Customer Portal,Customers; Authenticated Users\n" +
		",Customer Portal,Customers\n" + // no contact: skipped
		"\"paul@alpineskihouse.example\",,\"Partners|\nAuthenticated Users\"\n" +
		"rene@treyresearch.example\n" // short row: defaults
	d := Defaults{Portal: "Partner Portal", Roles: []string{"Partners"}}
	rows, err := ReadCSV(strings.NewReader(in), "contacts.csv", d)
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{Line: 2, Contact: "maria@fabrikam.example", Portal: "Partner Portal", Roles: []string{"Partners"}},
		{Line: 4, Contact: "nancy@adventure-works.example", Portal: "Customer Portal", Roles: []string{"Customers", "Authenticated Users"}},
		{Line: 6, Contact: "paul@alpineskihouse.example", Portal: "Partner Portal", Roles: []string{"Partners", "Authenticated Users"}},
		{Line: 8, Contact: "rene@treyresearch.example", Portal: "Partner Portal", Roles: []string{"Partners"}},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows:\n%+v\nwant:\n%+v", rows, want)
	}
	if k1, k2 := (Row{Contact: "A@x.example", Portal: "P", Roles: []string{"r"}}).Key(), (Row{Contact: "a@X.example", Portal: "P", Roles: []string{"r"}}).Key(); k1 != k2 {
		t.Errorf("keys differ by case: %q %q", k1, k2)
	}
}

func TestReadCSVErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "contacts.csv: read header: EOF"},
		{"no contact column", "name,portal\nMaria,P\n", "contacts.csv: the header needs a contact (or contactid, email) column"},
		{"bad quote names the line", "email,portal\na@x.example,P\nb@x.example,P\"Q\n", "contacts.csv: parse error on line 3, column 14: bare \" in non-quoted-field"},
		{"unterminated quote names the line", "email\na@x.example\n\"b@x.example\n", "contacts.csv: parse error on line 3, column 14: extraneous or missing \" in quoted-field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(tc.in), "contacts.csv", Defaults{})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := ReadCSVFile(filepath.Join(t.TempDir(), "missing.csv"), Defaults{}); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}
