package emulator

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

func seedPeople(t *testing.T, c *client) (acc string, ids []string) {
	t.Helper()
	// The reference's contact columns have no date-only one; a custom column
	// (default publisher prefix) covers the Date literal comparisons.
	c.r.DefineColumn("contact", Column{Name: "new_birthdate", Type: TypeDateOnly})
	acc = c.create("accounts", map[string]any{"name": "Northwind"})
	people := []struct {
		first, last, email string
		state              int
		born               string
	}{
		{"Ann", "O'Brien", "ann@northwind.example", 0, "1980-01-02"},
		{"Bob", "Smith", "bob@contoso.example", 0, "1975-06-30"},
		{"Cid", "Jones", "", 1, "1990-12-24"},
		{"Dee", "Smithers", "dee@northwind.example", 0, ""},
		{"Eve", "Adams", "EVE@Northwind.Example", 0, "2001-03-04"},
	}
	for i, p := range people {
		body := map[string]any{"firstname": p.first, "lastname": p.last, "adx_identity_accessfailedcount": i}
		if p.email != "" {
			body["emailaddress1"] = p.email
		}
		if p.born != "" {
			body["new_birthdate"] = p.born
		}
		if p.state == 1 {
			body["statecode"] = 1
		}
		if i%2 == 0 {
			body["parentcustomerid_account@odata.bind"] = "/accounts(" + acc + ")"
		}
		ids = append(ids, c.create("contacts", body))
	}
	return acc, ids
}

func TestFilterOperators(t *testing.T) {
	c := startPlain(t, Options{})
	acc, ids := seedPeople(t, c)
	cases := []struct {
		filter string
		want   []string // first names
	}{
		{"firstname eq 'Ann'", []string{"Ann"}},
		{"lastname eq 'O''Brien'", []string{"Ann"}},
		{"emailaddress1 eq 'eve@northwind.example'", []string{"Eve"}}, // case-insensitive
		{"firstname ne 'Ann'", []string{"Bob", "Cid", "Dee", "Eve"}},
		{"statecode eq 1", []string{"Cid"}},
		{"statecode eq 0 and contains(emailaddress1,'northwind')", []string{"Ann", "Dee", "Eve"}},
		{"startswith(lastname,'smith')", []string{"Bob", "Dee"}},
		{"endswith(emailaddress1,'.example') and not contains(emailaddress1,'contoso')", []string{"Ann", "Dee", "Eve"}},
		{"emailaddress1 eq null", []string{"Cid"}},
		{"emailaddress1 ne null and (firstname eq 'Bob' or firstname eq 'Eve')", []string{"Bob", "Eve"}},
		{"adx_identity_accessfailedcount gt 2", []string{"Dee", "Eve"}},
		{"adx_identity_accessfailedcount ge 2 and adx_identity_accessfailedcount le 3", []string{"Cid", "Dee"}},
		{"adx_identity_accessfailedcount lt 1", []string{"Ann"}},
		{"_parentcustomerid_value eq " + acc, []string{"Ann", "Cid", "Eve"}},
		{"_parentcustomerid_value eq '" + acc + "'", []string{"Ann", "Cid", "Eve"}},
		{"contactid eq " + ids[1], []string{"Bob"}},
		{"adx_identity_logonenabled eq false and firstname eq 'Bob'", []string{"Bob"}},
		{"new_birthdate lt 1985-01-01", []string{"Ann", "Bob"}},
		{"createdon ge 2000-01-01T00:00:00Z and firstname eq 'Ann'", []string{"Ann"}},
		{"Microsoft.Dynamics.CRM.In(PropertyName='firstname',PropertyValues=['Ann','Eve'])", []string{"Ann", "Eve"}},
		{"Microsoft.Dynamics.CRM.NotIn(PropertyName='statecode',PropertyValues=['0'])", []string{"Cid"}},
		{"parentcustomerid_account/name eq 'Northwind' and firstname ne 'Cid'", []string{"Ann", "Eve"}},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			res := c.must(200, "GET", "contacts?$select=firstname&$orderby=firstname&$filter="+url.QueryEscape(tc.filter), nil)
			var got []string
			for _, v := range res.values() {
				got = append(got, v["firstname"].(string))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"firstname eq", "firstname eqq 'x'", "nosuch eq 1", "statecode eq 'abc'", "contains(firstname)", "firstname eq 'unterminated", "foo(x)"} {
		res := c.do("GET", "contacts?$filter="+url.QueryEscape(bad), nil)
		if res.status != 400 || res.errCode() != "0x80060888" {
			t.Errorf("%q: %d %s", bad, res.status, res.body)
		}
	}
}

func TestPagingOrderAndCount(t *testing.T) {
	c := startPlain(t, Options{})
	for i := range 25 {
		c.create("contacts", map[string]any{"firstname": fmt.Sprintf("P%02d", i), "lastname": []string{"Zed", "Amy", "Kim"}[i%3]})
	}
	// Default order with paging.
	var seen []string
	next := "contacts?$select=firstname&$count=true"
	pages := 0
	for next != "" {
		res := c.must(200, "GET", next, nil, "Prefer", "odata.maxpagesize=10")
		pages++
		if pages == 1 && num(res.json["@odata.count"]) != 25 {
			t.Fatalf("count: %s", res.body)
		}
		if pages == 1 && !strings.Contains(res.header.Get("Preference-Applied"), "odata.maxpagesize=10") {
			t.Fatalf("Preference-Applied: %v", res.header)
		}
		for _, v := range res.values() {
			seen = append(seen, v["firstname"].(string))
		}
		next = res.str("@odata.nextLink")
		if next != "" && !strings.Contains(next, "$skiptoken=") {
			t.Fatalf("nextLink: %s", next)
		}
	}
	if pages != 3 || len(seen) != 25 || seen[0] != "P00" || seen[24] != "P24" {
		t.Fatalf("pages %d seen %v", pages, seen)
	}
	// Ordered paging keeps the order across pages; a row updated mid-way is not skipped.
	var ordered []string
	next = "contacts?$select=firstname,lastname&$orderby=lastname desc,firstname asc"
	first := true
	for next != "" {
		res := c.must(200, "GET", next, nil, "Prefer", "odata.maxpagesize=7")
		for _, v := range res.values() {
			ordered = append(ordered, v["lastname"].(string)+"/"+v["firstname"].(string))
		}
		if first {
			// Changing a row outside the filter must not shift keyset paging.
			c.must(204, "PATCH", "contacts("+res.values()[0]["contactid"].(string)+")", map[string]any{"jobtitle": "x"})
			first = false
		}
		next = res.str("@odata.nextLink")
	}
	if len(ordered) != 25 || !strings.HasPrefix(ordered[0], "Zed/") || !strings.HasPrefix(ordered[24], "Amy/") {
		t.Fatalf("ordered: %v", ordered)
	}
	for i := 1; i < len(ordered); i++ {
		a, b := strings.Split(ordered[i-1], "/"), strings.Split(ordered[i], "/")
		if a[0] < b[0] || (a[0] == b[0] && a[1] > b[1]) {
			t.Fatalf("order broken at %d: %v", i, ordered)
		}
	}
	// $top without paging: at most $top rows, no nextLink; with maxpagesize $top is ignored.
	top := c.must(200, "GET", "contacts?$select=firstname&$top=3", nil)
	if len(top.values()) != 3 || top.str("@odata.nextLink") != "" {
		t.Fatalf("top: %s", top.body)
	}
	top = c.must(200, "GET", "contacts?$select=firstname&$top=3", nil, "Prefer", "odata.maxpagesize=20")
	if len(top.values()) != 20 || top.str("@odata.nextLink") == "" {
		t.Fatalf("top with maxpagesize: %d", len(top.values()))
	}
	wantError(t, c.do("GET", "contacts?$skip=10", nil), 400, "0x80060888")
	cnt := c.must(200, "GET", "contacts/$count", nil)
	if string(cnt.body) != "\ufeff25" {
		t.Fatalf("$count: %q", cnt.body)
	}
}

func TestExpand(t *testing.T) {
	c := startPlain(t, Options{})
	acc, _ := seedPeople(t, c)
	res := c.must(200, "GET", "contacts?$select=firstname&$filter=firstname eq 'Ann'&$expand=parentcustomerid_account($select=name),parentcustomerid_contact($select=fullname)", nil)
	v := res.values()[0]
	pa, _ := v["parentcustomerid_account"].(map[string]any)
	if pa == nil || pa["name"] != "Northwind" || v["parentcustomerid_contact"] != nil {
		t.Fatalf("single expand: %s", res.body)
	}
	if !strings.Contains(res.str("@odata.context"), "contacts(firstname,parentcustomerid_account(name),parentcustomerid_contact(fullname))") {
		t.Fatalf("context: %s", res.str("@odata.context"))
	}
	one := c.must(200, "GET", "accounts("+acc+")?$select=name&$expand=contact_customer_accounts($select=firstname;$filter=statecode eq 0;$orderby=firstname desc;$top=1)", nil)
	arr, _ := one.json["contact_customer_accounts"].([]any)
	if len(arr) != 1 || arr[0].(map[string]any)["firstname"] != "Eve" {
		t.Fatalf("collection expand: %s", one.body)
	}
	wantError(t, c.do("GET", "contacts?$expand=nosuchnav", nil), 400, "0x80060888")
}

func TestChangeTracking(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	c := startPlain(t, Options{Now: clock})
	a := c.create("contacts", map[string]any{"firstname": "A"})
	b := c.create("contacts", map[string]any{"firstname": "B"})
	d := c.create("contacts", map[string]any{"firstname": "D"})

	res := c.must(200, "GET", "contacts?$select=firstname", nil, "Prefer", "odata.track-changes")
	if len(res.values()) != 3 || res.header.Get("Preference-Applied") != "odata.track-changes" {
		t.Fatalf("initial: %s", res.body)
	}
	link := res.str("@odata.deltaLink")
	if !strings.Contains(link, "$select=firstname&$deltatoken=") || !strings.Contains(link, "%21") {
		t.Fatalf("deltaLink: %s", link)
	}
	// No changes yet.
	empty := c.must(200, "GET", link, nil)
	if len(empty.values()) != 0 || !strings.HasSuffix(empty.str("@odata.context"), "/$delta") {
		t.Fatalf("empty delta: %s", empty.body)
	}
	c.must(204, "PATCH", "contacts("+a+")", map[string]any{"firstname": "A2"})
	e := c.create("contacts", map[string]any{"firstname": "E"})
	c.must(204, "DELETE", "contacts("+b+")", nil)
	_ = d
	delta := c.must(200, "GET", link, nil)
	vals := delta.values()
	if len(vals) != 3 || vals[0]["firstname"] != "A2" || vals[1]["contactid"] != e {
		t.Fatalf("delta: %s", delta.body)
	}
	if vals[2]["id"] != b || vals[2]["reason"] != "deleted" || !strings.HasSuffix(vals[2]["@odata.context"].(string), "contacts/$deletedEntity") {
		t.Fatalf("deleted entry: %s", delta.body)
	}
	next := delta.str("@odata.deltaLink")
	if again := c.must(200, "GET", next, nil); len(again.values()) != 0 {
		t.Fatalf("second delta: %s", again.body)
	}
	// Paged initial sync: nextLinks then a deltaLink on the last page.
	pages, rows := 0, 0
	url := "contacts?$select=firstname"
	var last *result
	for url != "" {
		last = c.must(200, "GET", url, nil, "Prefer", "odata.track-changes,odata.maxpagesize=2")
		pages++
		rows += len(last.values())
		url = last.str("@odata.nextLink")
	}
	if pages != 2 || rows != 3 || last.str("@odata.deltaLink") == "" {
		t.Fatalf("paged tracking: pages %d rows %d", pages, rows)
	}
	// Forbidden options and bad tokens.
	res = c.do("GET", "contacts?$select=firstname&$filter=firstname eq 'A'", nil, "Prefer", "odata.track-changes")
	if res.status != 400 || !strings.Contains(res.errMessage(), `"$filter" query parameter isn't supported when Change Tracking is enabled`) {
		t.Fatalf("filter with tracking: %s", res.body)
	}
	wantError(t, c.do("GET", "contacts?$select=firstname&$deltatoken=garbage", nil), 400, "0x80044352")
	now = now.Add(8 * 24 * time.Hour)
	wantError(t, c.do("GET", next, nil), 400, "0x80044352")
}
