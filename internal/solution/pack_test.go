package solution

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The XML shapes the tests read back: the elements Dataverse requires.

type manifestXML struct {
	XMLName        xml.Name `xml:"ImportExportXml"`
	Version        string   `xml:"version,attr"`
	PackageVersion string   `xml:"SolutionPackageVersion,attr"`
	Manifest       struct {
		UniqueName string `xml:"UniqueName"`
		Names      []struct {
			Description string `xml:"description,attr"`
			Language    string `xml:"languagecode,attr"`
		} `xml:"LocalizedNames>LocalizedName"`
		Version   string `xml:"Version"`
		Managed   string `xml:"Managed"`
		Publisher struct {
			UniqueName          string `xml:"UniqueName"`
			CustomizationPrefix string `xml:"CustomizationPrefix"`
			OptionValuePrefix   string `xml:"CustomizationOptionValuePrefix"`
		} `xml:"Publisher"`
		RootComponents []struct {
			Type       string `xml:"type,attr"`
			SchemaName string `xml:"schemaName,attr"`
			ID         string `xml:"id,attr"`
			Behavior   string `xml:"behavior,attr"`
		} `xml:"RootComponents>RootComponent"`
	} `xml:"SolutionManifest"`
}

type customizationsXML struct {
	XMLName  xml.Name `xml:"ImportExportXml"`
	Entities []struct {
		Name string `xml:"Name"`
		Info struct {
			Name       string    `xml:"Name,attr"`
			Attributes []attrXML `xml:"attributes>attribute"`
		} `xml:"EntityInfo>entity"`
		Ribbon ribbonXML `xml:"RibbonDiffXml"`
	} `xml:"Entities>Entity"`
	WebResources []struct {
		ID       string `xml:"WebResourceId"`
		Name     string `xml:"Name"`
		Display  string `xml:"DisplayName"`
		Type     int    `xml:"WebResourceType"`
		FileName string `xml:"FileName"`
	} `xml:"WebResources>WebResource"`
	Languages []string `xml:"Languages>Language"`
}

type attrXML struct {
	PhysicalName string `xml:"PhysicalName,attr"`
	Type         string `xml:"Type"`
	Name         string `xml:"Name"`
	LogicalName  string `xml:"LogicalName"`
	RequiredLvl  string `xml:"RequiredLevel"`
	IsCustom     string `xml:"IsCustomField"`
	Format       string `xml:"Format"`
	MaxLength    int    `xml:"MaxLength"`
	Behavior     string `xml:"Behavior"`
	DisplayNames []struct {
		Description string `xml:"description,attr"`
	} `xml:"displaynames>displayname"`
	OptionSet *struct {
		Name    string `xml:"Name,attr"`
		Type    string `xml:"OptionSetType"`
		Options []struct {
			Value  int `xml:"value,attr"`
			Labels []struct {
				Description string `xml:"description,attr"`
			} `xml:"labels>label"`
		} `xml:"options>option"`
	} `xml:"optionset"`
}

type jsFuncXML struct {
	Library      string `xml:"Library,attr"`
	FunctionName string `xml:"FunctionName,attr"`
	Default      string `xml:"Default,attr"`
	CrmParams    []struct {
		Value string `xml:"Value,attr"`
	} `xml:"CrmParameter"`
	IntParams []struct {
		Value string `xml:"Value,attr"`
	} `xml:"IntParameter"`
	StringParams []struct {
		Value string `xml:"Value,attr"`
	} `xml:"StringParameter"`
}

type idRef struct {
	ID string `xml:"Id,attr"`
}

type ruleXML struct {
	ID          string      `xml:"Id,attr"`
	CustomRules []jsFuncXML `xml:"CustomRule"`
	Selection   *struct {
		Minimum string `xml:"Minimum,attr"`
		Maximum string `xml:"Maximum,attr"`
	} `xml:"SelectionCountRule"`
	Children []struct {
		XMLName xml.Name
	} `xml:",any"`
}

type buttonXML struct {
	ID          string `xml:"Id,attr"`
	Command     string `xml:"Command,attr"`
	LabelText   string `xml:"LabelText,attr"`
	Alt         string `xml:"Alt,attr"`
	ToolTip     string `xml:"ToolTipTitle,attr"`
	ToolTipDesc string `xml:"ToolTipDescription,attr"`
	Image16     string `xml:"Image16by16,attr"`
	Image32     string `xml:"Image32by32,attr"`
	ModernImage string `xml:"ModernImage,attr"`
}

type ribbonXML struct {
	CustomActions []struct {
		ID       string      `xml:"Id,attr"`
		Location string      `xml:"Location,attr"`
		Sequence string      `xml:"Sequence,attr"`
		Buttons  []buttonXML `xml:"CommandUIDefinition>Button"`
	} `xml:"CustomActions>CustomAction"`
	Commands []struct {
		ID           string      `xml:"Id,attr"`
		EnableRules  []idRef     `xml:"EnableRules>EnableRule"`
		DisplayRules []idRef     `xml:"DisplayRules>DisplayRule"`
		Functions    []jsFuncXML `xml:"Actions>JavaScriptFunction"`
	} `xml:"CommandDefinitions>CommandDefinition"`
	DisplayRules []ruleXML `xml:"RuleDefinitions>DisplayRules>DisplayRule"`
	EnableRules  []ruleXML `xml:"RuleDefinitions>EnableRules>EnableRule"`
	LocLabels    []struct {
		ID     string `xml:"Id,attr"`
		Titles []struct {
			Description string `xml:"description,attr"`
			Language    string `xml:"languagecode,attr"`
		} `xml:"Titles>Title"`
	} `xml:"LocLabels>LocLabel"`
}

func testOptions() Options {
	o := DefaultOptions()
	o.Version = "2.1.0"
	o.Portals = []PortalChoice{
		{Name: "Contoso Partner Portal", Roles: []string{"Authenticated Users", "Partners", "Customers"}, DefaultRoles: []string{"Authenticated Users"}},
		{Name: "Contoso Customer Portal", Roles: []string{"Customers", "Administrators"}},
	}
	return o
}

// pack runs Pack and reads the zip back into name -> contents, in zip order.
func pack(t *testing.T, o Options) ([]byte, []string, map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := Pack(&buf, o); err != nil {
		t.Fatalf("Pack() = %v", err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatalf("read packed zip: %v", err)
	}
	var names []string
	files := map[string][]byte{}
	for _, f := range zr.File {
		if !f.Modified.Equal(zipTime) {
			t.Errorf("%s: modified %v, want the fixed %v", f.Name, f.Modified, zipTime)
		}
		if f.Method != zip.Deflate {
			t.Errorf("%s: method %d, want deflate", f.Name, f.Method)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatalf("open %s: %v", f.Name, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read %s: %v", f.Name, err)
		}
		names = append(names, f.Name)
		files[f.Name] = b
	}
	return buf.Bytes(), names, files
}

func parse[T any](t *testing.T, name string, b []byte) T {
	t.Helper()
	var v T
	if err := xml.Unmarshal(b, &v); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return v
}

var fileNamePattern = regexp.MustCompile(`^WebResources/[A-Za-z0-9_]+[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$`)

func TestPackFileList(t *testing.T) {
	_, names, _ := pack(t, testOptions())
	want := []string{
		"[Content_Types].xml",
		"customizations.xml",
		"solution.xml",
		"WebResources/pinv_portalinviteconfigjs",
		"WebResources/pinv_portalinvitedialoghtml",
		"WebResources/pinv_portalinviteiconsvg",
		"WebResources/pinv_portalinviteinvitejs",
	}
	if len(names) != len(want) {
		t.Fatalf("zip holds %q, want %d files", names, len(want))
	}
	for i, name := range names {
		if !strings.HasPrefix(name, want[i]) {
			t.Errorf("entry %d = %q, want %q...", i, name, want[i])
		}
		if strings.HasPrefix(name, "WebResources/") && !fileNamePattern.MatchString(name) {
			t.Errorf("entry %q is not <flattened name><ID>", name)
		}
	}
}

func TestPackIsDeterministic(t *testing.T) {
	a, _, _ := pack(t, testOptions())
	b, _, _ := pack(t, testOptions())
	if !bytes.Equal(a, b) {
		t.Fatal("two packs of the same options differ")
	}
	c, _, _ := pack(t, DefaultOptions())
	if bytes.Equal(a, c) {
		t.Fatal("packs of different options are equal")
	}
}

func TestPackEveryXMLIsWellFormed(t *testing.T) {
	_, _, files := pack(t, testOptions())
	for name, b := range files {
		if !strings.HasSuffix(name, ".xml") {
			continue
		}
		if err := wellFormed(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if !bytes.HasPrefix(b, []byte(`<?xml version="1.0" encoding="utf-8"?>`)) {
			t.Errorf("%s lacks the XML declaration", name)
		}
	}
}

func TestSolutionManifest(t *testing.T) {
	_, _, files := pack(t, testOptions())
	m := parse[manifestXML](t, "solution.xml", files["solution.xml"])
	sm := m.Manifest
	if m.PackageVersion != "9.2" {
		t.Errorf("SolutionPackageVersion = %q", m.PackageVersion)
	}
	if sm.UniqueName != SolutionUniqueName {
		t.Errorf("UniqueName = %q", sm.UniqueName)
	}
	if len(sm.Names) != 1 || sm.Names[0].Language != "1033" || sm.Names[0].Description == "" {
		t.Errorf("LocalizedNames = %+v", sm.Names)
	}
	if sm.Version != "2.1.0.0" {
		t.Errorf("Version = %q, want 2.1.0.0", sm.Version)
	}
	if sm.Managed != "0" {
		t.Errorf("Managed = %q, want 0 (unmanaged)", sm.Managed)
	}
	if sm.Publisher.UniqueName != PublisherUniqueName || sm.Publisher.CustomizationPrefix != "pinv" || sm.Publisher.OptionValuePrefix != "10000" {
		t.Errorf("Publisher = %+v", sm.Publisher)
	}

	c := parse[customizationsXML](t, "customizations.xml", files["customizations.xml"])
	var roots []string
	for _, rc := range sm.RootComponents {
		roots = append(roots, rc.Type+" "+rc.SchemaName+" "+rc.ID+" "+rc.Behavior)
	}
	want := []string{"1 contact  2"}
	for _, w := range c.WebResources {
		// Exports name web resources by their unique name alone.
		want = append(want, "61 "+w.Name+"  0")
	}
	if !slices.Equal(roots, want) {
		t.Errorf("RootComponents = %q\nwant %q", roots, want)
	}
}

func TestCustomizationsContactColumns(t *testing.T) {
	_, _, files := pack(t, testOptions())
	c := parse[customizationsXML](t, "customizations.xml", files["customizations.xml"])
	if len(c.Entities) != 1 || c.Entities[0].Name != "Contact" || c.Entities[0].Info.Name != "Contact" {
		t.Fatalf("Entities = %+v", c.Entities)
	}
	if !slices.Contains(c.Languages, "1033") {
		t.Errorf("Languages = %q", c.Languages)
	}
	type col struct {
		physical, logical, typ string
		maxLength              int
	}
	var got []col
	attrs := map[string]attrXML{}
	for _, a := range c.Entities[0].Info.Attributes {
		got = append(got, col{a.PhysicalName, a.LogicalName, a.Type, a.MaxLength})
		attrs[a.LogicalName] = a
		if a.Name != a.LogicalName || strings.ToLower(a.PhysicalName) != a.LogicalName {
			t.Errorf("%s: Name %q, PhysicalName %q disagree", a.LogicalName, a.Name, a.PhysicalName)
		}
		if a.IsCustom != "1" || a.RequiredLvl != "none" || len(a.DisplayNames) != 1 || a.DisplayNames[0].Description == "" {
			t.Errorf("%s: IsCustomField %q, RequiredLevel %q, display name %q", a.LogicalName, a.IsCustom, a.RequiredLvl, a.DisplayNames)
		}
	}
	want := []col{
		{"pinv_PortalInviteStatus", "pinv_portalinvitestatus", "picklist", 0},
		{"pinv_PortalName", "pinv_portalname", "nvarchar", 100},
		{"pinv_PortalRoles", "pinv_portalroles", "nvarchar", 1000},
		{"pinv_LastInvitedOn", "pinv_lastinvitedon", "datetime", 0},
		{"pinv_LastInviteError", "pinv_lastinviteerror", "nvarchar", 2000},
	}
	if !slices.Equal(got, want) {
		t.Errorf("attributes = %+v\nwant %+v", got, want)
	}

	status := attrs["pinv_portalinvitestatus"]
	if status.OptionSet == nil || status.OptionSet.Type != "picklist" || status.OptionSet.Name != "pinv_contact_portalinvitestatus" {
		t.Fatalf("status option set = %+v", status.OptionSet)
	}
	var options []string
	for _, o := range status.OptionSet.Options {
		if len(o.Labels) != 1 {
			t.Fatalf("option %d: labels %+v", o.Value, o.Labels)
		}
		options = append(options, o.Labels[0].Description+"="+itoa(o.Value))
	}
	wantOptions := []string{"Requested=100000000", "Sent=100000001", "Failed=100000002", "Redeemed=100000003", "Delivered=100000004",
		"Resend requested=100000005", "Revoke requested=100000006", "Revoked=100000007", "Expired=100000008"}
	if !slices.Equal(options, wantOptions) {
		t.Errorf("status options = %q, want %q", options, wantOptions)
	}
	if a := attrs["pinv_lastinvitedon"]; a.Format != "datetime" || a.Behavior != "1" {
		t.Errorf("last invited on: format %q behavior %q, want datetime, 1 (user local)", a.Format, a.Behavior)
	}
	for _, name := range []string{"pinv_portalname", "pinv_portalroles", "pinv_lastinviteerror"} {
		if attrs[name].Format != "text" {
			t.Errorf("%s: format %q", name, attrs[name].Format)
		}
	}
}

// TestContactIsExportedAsSystemTable: contact has the shape unmanaged exports
// give a system table that a solution holds only parts of (RootComponent
// behavior 2): its name with an empty OriginalName, its type code, the added
// columns without the table's own metadata, and the ribbon diff; no FormXml
// or SavedQueries, which exports write only for solutions holding forms or
// views of the table.
func TestContactIsExportedAsSystemTable(t *testing.T) {
	_, _, files := pack(t, testOptions())
	root, err := readXMLTree(files["customizations.xml"])
	if err != nil {
		t.Fatal(err)
	}
	entities := root.child("Entities")
	if entities == nil || len(entities.kids) != 1 {
		t.Fatalf("Entities = %+v, want the one contact Entity", entities)
	}
	e := entities.kids[0]
	var parts []string
	for _, k := range e.kids {
		parts = append(parts, k.name)
	}
	if want := []string{"Name", "ObjectTypeCode", "EntityInfo", "RibbonDiffXml"}; !slices.Equal(parts, want) {
		t.Errorf("Entity holds %q, want %q", parts, want)
	}
	name := e.child("Name")
	if name == nil || name.text != "Contact" || name.attr("LocalizedName") != "Contact" || name.attr("OriginalName") != "" ||
		!slices.ContainsFunc(name.attrs, func(a xml.Attr) bool { return a.Name.Local == "OriginalName" }) {
		t.Errorf("Name = %+v, want Contact with LocalizedName Contact and an empty OriginalName", name)
	}
	if otc := e.child("ObjectTypeCode"); otc == nil || otc.text != "2" {
		t.Errorf("ObjectTypeCode = %+v, want contact's 2", otc)
	}
	var table *xnode
	if info := e.child("EntityInfo"); info != nil {
		table = info.child("entity")
	}
	if table == nil || table.attr("Name") != "Contact" || len(table.kids) != 1 || table.kids[0].name != "attributes" {
		t.Errorf("EntityInfo/entity = %+v, want Name Contact holding only <attributes>", table)
	}

	m := parse[manifestXML](t, "solution.xml", files["solution.xml"])
	if rc := m.Manifest.RootComponents; len(rc) == 0 || rc[0].Type != "1" || rc[0].SchemaName != "contact" || rc[0].Behavior != "2" {
		t.Errorf("first root component = %+v, want contact with behavior 2", rc)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestCustomizationsWebResources(t *testing.T) {
	_, _, files := pack(t, testOptions())
	c := parse[customizationsXML](t, "customizations.xml", files["customizations.xml"])
	types := map[string]int{}
	for _, w := range c.WebResources {
		types[w.Name] = w.Type
		name := strings.TrimPrefix(w.FileName, "/")
		if _, ok := files[name]; !ok || name == w.FileName {
			t.Errorf("%s: FileName %q is not in the zip", w.Name, w.FileName)
		}
		if !strings.Contains(string(files["[Content_Types].xml"]), `<Override PartName="`+w.FileName+`" ContentType="application/octet-stream" />`) {
			t.Errorf("[Content_Types].xml lacks %s", w.FileName)
		}
		if !strings.HasSuffix(w.FileName, strings.ToUpper(strings.Trim(w.ID, "{}"))) {
			t.Errorf("%s: FileName %q does not end in its id %s", w.Name, w.FileName, w.ID)
		}
		if w.Display == "" {
			t.Errorf("%s: no display name", w.Name)
		}
	}
	want := map[string]int{
		"pinv_/portalinvite/config.js":   3,
		"pinv_/portalinvite/dialog.html": 1,
		"pinv_/portalinvite/icon.svg":    11,
		"pinv_/portalinvite/invite.js":   3,
	}
	if len(types) != len(want) {
		t.Errorf("web resources = %v, want %v", types, want)
	}
	for name, typ := range want {
		if types[name] != typ {
			t.Errorf("%s: type %d, want %d", name, types[name], typ)
		}
	}

	// The shipped web resources are the repository's files, unchanged.
	for _, w := range c.WebResources {
		base := strings.TrimPrefix(w.Name, "pinv_/portalinvite/")
		if base == "config.js" {
			continue
		}
		src, err := os.ReadFile(filepath.Join("..", "..", "solution", "WebResources", base))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(files[strings.TrimPrefix(w.FileName, "/")], src) {
			t.Errorf("%s differs from solution/WebResources/%s", w.Name, base)
		}
	}
}

func TestRibbon(t *testing.T) {
	_, _, files := pack(t, testOptions())
	c := parse[customizationsXML](t, "customizations.xml", files["customizations.xml"])
	r := c.Entities[0].Ribbon
	inviteJS, err := os.ReadFile(filepath.Join("..", "..", "solution", "WebResources", "invite.js"))
	if err != nil {
		t.Fatal(err)
	}

	webResources := map[string]int{}
	for _, w := range c.WebResources {
		webResources["$webresource:"+w.Name] = w.Type
	}
	labels := map[string]bool{}
	for _, l := range r.LocLabels {
		if len(l.Titles) == 0 || l.Titles[0].Language != "1033" || l.Titles[0].Description == "" {
			t.Errorf("LocLabel %s has no English title", l.ID)
		}
		labels["$LocLabels:"+l.ID] = true
	}
	commands := map[string]bool{}
	for _, cmd := range r.Commands {
		commands[cmd.ID] = true
	}
	enable := map[string]ruleXML{}
	for _, rule := range r.EnableRules {
		enable[rule.ID] = rule
	}
	display := map[string]ruleXML{}
	for _, rule := range r.DisplayRules {
		display[rule.ID] = rule
	}

	// Custom actions: a button on the form, the contact list and subgrids.
	var locations []string
	for _, ca := range r.CustomActions {
		locations = append(locations, ca.Location)
		if len(ca.Buttons) != 1 {
			t.Fatalf("%s: %d buttons", ca.ID, len(ca.Buttons))
		}
		b := ca.Buttons[0]
		if !commands[b.Command] {
			t.Errorf("%s: command %q is not defined", b.ID, b.Command)
		}
		for _, text := range []string{b.LabelText, b.Alt, b.ToolTip, b.ToolTipDesc} {
			if !labels[text] {
				t.Errorf("%s: label %q is not a LocLabel", b.ID, text)
			}
		}
		for _, img := range []string{b.Image16, b.Image32, b.ModernImage} {
			if webResources[img] != typeSVG {
				t.Errorf("%s: image %q is not the solution's SVG", b.ID, img)
			}
		}
	}
	// Invite, Resend and Revoke, each on the three.
	var wantLocations []string
	for range 3 {
		wantLocations = append(wantLocations,
			"Mscrm.Form.contact.MainTab.Save.Controls._children",
			"Mscrm.HomepageGrid.contact.MainTab.Management.Controls._children",
			"Mscrm.SubGrid.contact.MainTab.Management.Controls._children")
	}
	if !slices.Equal(locations, wantLocations) {
		t.Errorf("locations = %q, want %q", locations, wantLocations)
	}

	// Every reference resolves, every script function exists in invite.js.
	checkFunc := func(where string, f jsFuncXML) {
		if webResources[f.Library] != typeScript || f.Library != "$webresource:pinv_/portalinvite/invite.js" {
			t.Errorf("%s: library %q is not the solution's invite.js", where, f.Library)
		}
		name, ok := strings.CutPrefix(f.FunctionName, "PortalInvite.")
		if !ok || !bytes.Contains(inviteJS, []byte("api."+name+" = function")) {
			t.Errorf("%s: function %q is not defined in invite.js", where, f.FunctionName)
		}
	}
	params := func(f jsFuncXML) []string {
		var out []string
		for _, p := range f.CrmParams {
			out = append(out, p.Value)
		}
		for _, p := range f.StringParams {
			out = append(out, "string:"+p.Value)
		}
		for _, p := range f.IntParams {
			out = append(out, "int:"+p.Value)
		}
		return out
	}
	for _, cmd := range r.Commands {
		if len(cmd.EnableRules) == 0 || len(cmd.DisplayRules) == 0 || len(cmd.Functions) != 1 {
			t.Errorf("%s: %d enable rules, %d display rules, %d actions", cmd.ID, len(cmd.EnableRules), len(cmd.DisplayRules), len(cmd.Functions))
			continue
		}
		for _, ref := range cmd.EnableRules {
			if _, ok := enable[ref.ID]; !ok {
				t.Errorf("%s: enable rule %q is not defined", cmd.ID, ref.ID)
			}
		}
		for _, ref := range cmd.DisplayRules {
			if _, ok := display[ref.ID]; !ok {
				t.Errorf("%s: display rule %q is not defined", cmd.ID, ref.ID)
			}
		}
		checkFunc(cmd.ID, cmd.Functions[0])
	}
	for _, rule := range append(slices.Clone(r.EnableRules), r.DisplayRules...) {
		// ",any" collects only the children no other field took.
		if len(rule.Children)+len(rule.CustomRules) == 0 && rule.Selection == nil {
			t.Errorf("rule %s is empty", rule.ID)
		}
		for _, cr := range rule.CustomRules {
			checkFunc(rule.ID, cr)
			if cr.Default != "false" {
				t.Errorf("%s: custom rule default %q: a failing rule must hide the button", rule.ID, cr.Default)
			}
		}
	}

	byID := map[string][]string{}
	for _, cmd := range r.Commands {
		byID[cmd.ID] = params(cmd.Functions[0])
	}
	dialog := "string:pinv_/portalinvite/dialog.html"
	if got := byID["pinv.contact.InviteToPortal.Form.Command"]; !slices.Equal(got, []string{"PrimaryControl", dialog}) {
		t.Errorf("form command parameters = %q", got)
	}
	if got := byID["pinv.contact.InviteToPortal.Grid.Command"]; !slices.Equal(got, []string{"SelectedControlSelectedItemIds", "SelectedControl", dialog}) {
		t.Errorf("grid command parameters = %q", got)
	}
	// Resend and Revoke write their pinned command value into the status column.
	for verb, value := range map[string]int{"Resend": StatusResend, "Revoke": StatusRevoke} {
		tail := []string{"string:pinv_portalinvitestatus", "string:" + strings.ToLower(verb), "int:" + itoa(value)}
		if got := byID["pinv.contact.InviteToPortal.Form."+verb+".Command"]; !slices.Equal(got, append([]string{"PrimaryControl"}, tail...)) {
			t.Errorf("form %s parameters = %q", verb, got)
		}
		if got := byID["pinv.contact.InviteToPortal.Grid."+verb+".Command"]; !slices.Equal(got, append([]string{"SelectedControlSelectedItemIds", "SelectedControl"}, tail...)) {
			t.Errorf("grid %s parameters = %q", verb, got)
		}
	}

	// The email rules: the button hides without an email address.
	if got := enable["pinv.contact.InviteToPortal.FormHasEmail.EnableRule"].CustomRules; len(got) != 1 ||
		got[0].FunctionName != "PortalInvite.canInviteFromForm" || !slices.Equal(params(got[0]), []string{"PrimaryControl"}) {
		t.Errorf("form email rule = %+v", got)
	}
	grid := enable["pinv.contact.InviteToPortal.SelectionHasEmail.EnableRule"].CustomRules
	if len(grid) != 1 || grid[0].FunctionName != "PortalInvite.canInviteFromGrid" || !slices.Equal(params(grid[0]), []string{"SelectedControlSelectedItemIds"}) {
		t.Errorf("grid email rule = %+v", grid)
	}
	sel := enable["pinv.contact.InviteToPortal.Selection.EnableRule"].Selection
	if sel == nil || sel.Minimum != "1" || sel.Maximum != itoa(MaxRecords) {
		t.Errorf("selection rule = %+v", sel)
	}
	if !bytes.Contains(inviteJS, []byte("var MAX_RECORDS = "+itoa(MaxRecords)+";")) {
		t.Errorf("invite.js does not cap selections at %d like the ribbon", MaxRecords)
	}

	// Every id is the publisher's.
	var ids []string
	for _, ca := range r.CustomActions {
		ids = append(ids, ca.ID, ca.Buttons[0].ID)
	}
	for id := range commands {
		ids = append(ids, id)
	}
	for id := range enable {
		ids = append(ids, id)
	}
	for id := range display {
		ids = append(ids, id)
	}
	for _, l := range r.LocLabels {
		ids = append(ids, l.ID)
	}
	for _, id := range ids {
		if !strings.HasPrefix(id, "pinv.contact.InviteToPortal.") {
			t.Errorf("ribbon id %q does not start with the prefix", id)
		}
	}
}

func TestConfigJS(t *testing.T) {
	_, names, files := pack(t, testOptions())
	var cfgFile string
	for _, n := range names {
		if strings.HasPrefix(n, "WebResources/pinv_portalinviteconfigjs") {
			cfgFile = n
		}
	}
	js := string(files[cfgFile])
	body, ok := strings.CutPrefix(js[strings.Index(js, "var PortalInviteConfig = "):], "var PortalInviteConfig = ")
	if !ok || !strings.HasSuffix(body, ";\n") {
		t.Fatalf("config.js = %s", js)
	}
	var cfg dialogConfig
	if err := json.Unmarshal([]byte(strings.TrimSuffix(body, ";\n")), &cfg); err != nil {
		t.Fatalf("config.js body: %v", err)
	}
	want := dialogConfig{
		Version: "2.1.0.0",
		Entity:  "contact",
		Columns: configColumns{"pinv_portalinvitestatus", "pinv_portalname", "pinv_portalroles", "pinv_lastinvitedon", "pinv_lastinviteerror"},
		Status:  configStatus{100000000, 100000001, 100000002, 100000003, 100000004, 100000005, 100000006, 100000007, 100000008},
		Portals: []configPortal{
			{Name: "Contoso Partner Portal", Roles: []string{"Authenticated Users", "Partners", "Customers"}, DefaultRoles: []string{"Authenticated Users"}},
			{Name: "Contoso Customer Portal", Roles: []string{"Customers", "Administrators"}, DefaultRoles: []string{}},
		},
	}
	gotJSON, _ := json.Marshal(cfg)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("config = %s\nwant %s", gotJSON, wantJSON)
	}
}

func TestConfigJSEscapesNames(t *testing.T) {
	o := DefaultOptions()
	o.Portals = []PortalChoice{{Name: `</script><script>alert("x")</script>`, Roles: []string{"A & B"}}}
	files, err := Files(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.Contains(f.Name, "configjs") {
			if bytes.Contains(f.Data, []byte("<")) || bytes.Contains(f.Data, []byte("&")) {
				t.Errorf("config.js carries raw markup characters:\n%s", f.Data)
			}
		}
	}
}

func TestPackWithPrefix(t *testing.T) {
	o := testOptions()
	o.Prefix = "acme"
	_, names, files := pack(t, o)
	for _, name := range names {
		if strings.Contains(strings.ToLower(name), "pinv") {
			t.Errorf("file name %q still carries the default prefix", name)
		}
		if strings.Contains(strings.ToLower(string(files[name])), "pinv") {
			t.Errorf("%s still mentions the default prefix", name)
		}
	}
	c := parse[customizationsXML](t, "customizations.xml", files["customizations.xml"])
	for _, a := range c.Entities[0].Info.Attributes {
		if !strings.HasPrefix(a.LogicalName, "acme_") || !strings.HasPrefix(a.PhysicalName, "acme_") {
			t.Errorf("attribute %s / %s lacks the prefix", a.PhysicalName, a.LogicalName)
		}
	}
	for _, w := range c.WebResources {
		if !strings.HasPrefix(w.Name, "acme_/") {
			t.Errorf("web resource %s lacks the prefix", w.Name)
		}
	}
	m := parse[manifestXML](t, "solution.xml", files["solution.xml"])
	if m.Manifest.Publisher.CustomizationPrefix != "acme" {
		t.Errorf("CustomizationPrefix = %q", m.Manifest.Publisher.CustomizationPrefix)
	}
	if got := o.Columns().Status; got != "acme_portalinvitestatus" {
		t.Errorf("Columns().Status = %q", got)
	}
}

func TestPackRejectsBadOptions(t *testing.T) {
	var buf bytes.Buffer
	err := Pack(&buf, Options{Prefix: "no_good"})
	if err == nil || !strings.Contains(err.Error(), `prefix "no_good"`) {
		t.Fatalf("Pack() = %v", err)
	}
	if buf.Len() != 0 {
		t.Errorf("Pack wrote %d bytes before failing", buf.Len())
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestPackReportsWriteErrors(t *testing.T) {
	err := Pack(failingWriter{}, DefaultOptions())
	if err == nil || !strings.HasPrefix(err.Error(), "solution: pack") {
		t.Fatalf("Pack() = %v", err)
	}
}
