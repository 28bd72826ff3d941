package solution

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/google/uuid"

	source "github.com/d365portal/connector/solution"
)

// zipTime is the modification time of every zip entry, so that packing the
// same options twice gives identical bytes.
var zipTime = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// idSpace is the UUID namespace web resource ids are derived from: the same
// name always gets the same id, so re-importing updates the web resource.
var idSpace = uuid.MustParse("b1f0c7d2-4a8e-5b3c-9d6f-2e7a1c4b8f05")

// Web resource types (webresource.webresourcetype).
const (
	typeHTML   = 1
	typeScript = 3
	typeSVG    = 11
)

// File is one entry of the solution zip.
type File struct {
	Name string // path inside the zip, e.g. "customizations.xml"
	Data []byte
}

type webResource struct {
	source      string // file under solution/WebResources; "" when generated
	Name        string // unique name in Dataverse, e.g. pinv_/portalinvite/invite.js
	DisplayName string
	Description string
	Type        int
	id          uuid.UUID
	FileName    string // path inside the zip
	data        []byte
}

// IDBraced is the id as solution files write it: {xxxxxxxx-...}.
func (w webResource) IDBraced() string { return "{" + w.id.String() + "}" }

type option struct {
	Value       int
	Label       string
	Description string
}

type attribute struct {
	SchemaName    string
	LogicalName   string
	Type          string // picklist | nvarchar | datetime
	DisplayName   string
	Description   string
	MaxLength     int
	OptionSetName string
	Options       []option
}

// Length is the byte length exports write next to MaxLength for text columns.
func (a attribute) Length() int { return a.MaxLength * 2 }

type templateData struct {
	SolutionName         string
	SolutionDisplayName  string
	PublisherName        string
	PublisherDisplayName string
	Prefix               string
	Version              string
	IntroducedVersion    string
	OptionValuePrefix    int
	AddressNumbers       []int
	Attributes           []attribute
	WebResources         []webResource
	Ribbon               string // id stem of every ribbon element
	Sequence             int
	Library              string
	Dialog               string
	Icon                 string
	MaxRecords           int
	// The Resend and Revoke buttons write these into StatusColumn.
	StatusColumn             string
	ResendValue, RevokeValue int
}

// dialogConfig is what config.js hands the dialog.
type dialogConfig struct {
	Version string         `json:"version"`
	Entity  string         `json:"entity"`
	Columns configColumns  `json:"columns"`
	Status  configStatus   `json:"status"`
	Portals []configPortal `json:"portals"`
}

type configColumns struct {
	Status    string `json:"status"`
	Portal    string `json:"portal"`
	Roles     string `json:"roles"`
	InvitedOn string `json:"invitedOn"`
	Error     string `json:"error"`
}

type configStatus struct {
	Requested int `json:"requested"`
	Sent      int `json:"sent"`
	Failed    int `json:"failed"`
	Redeemed  int `json:"redeemed"`
	Delivered int `json:"delivered"`
	Resend    int `json:"resend"`
	Revoke    int `json:"revoke"`
	Revoked   int `json:"revoked"`
	Expired   int `json:"expired"`
}

type configPortal struct {
	Name         string   `json:"name"`
	Roles        []string `json:"roles"`
	DefaultRoles []string `json:"defaultRoles"`
}

// WebResourceName returns the unique name of one of the solution's web
// resources ("invite.js", "dialog.html", "config.js", "icon.svg") for a
// prefix, e.g. "pinv_/portalinvite/dialog.html".
func WebResourceName(prefix, file string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return strings.ToLower(prefix) + "_/portalinvite/" + file
}

// Files renders the solution and returns the zip entries in zip order.
func Files(opts Options) ([]File, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	o := opts.normalized()
	data, err := buildData(o)
	if err != nil {
		return nil, err
	}

	files := []File{{Name: "[Content_Types].xml", Data: contentTypes(data.WebResources)}}
	for _, name := range []string{"customizations.xml", "solution.xml"} {
		out, err := render(name, data)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Name: name, Data: out})
	}
	for _, w := range data.WebResources {
		files = append(files, File{Name: w.FileName, Data: w.data})
	}
	for _, f := range files {
		if strings.HasSuffix(f.Name, ".xml") {
			if err := wellFormed(f.Data); err != nil {
				return nil, fmt.Errorf("solution: render %s: %w", f.Name, err)
			}
		}
	}
	return files, nil
}

// Pack writes the solution zip for opts to w. Packing the same options twice
// gives byte-identical output.
func Pack(w io.Writer, opts Options) error {
	files, err := Files(opts)
	if err != nil {
		return err
	}
	zw := zip.NewWriter(w)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: zipTime}
		h.SetMode(0o644)
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return fmt.Errorf("solution: pack %s: %w", f.Name, err)
		}
		if _, err := fw.Write(f.Data); err != nil {
			return fmt.Errorf("solution: pack %s: %w", f.Name, err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("solution: pack: %w", err)
	}
	return nil
}

func buildData(o Options) (templateData, error) {
	cols := o.Columns()
	schema := func(s string) string { return o.Prefix + "_" + s }
	d := templateData{
		SolutionName:         SolutionUniqueName,
		SolutionDisplayName:  "Portal Invite Connector",
		PublisherName:        PublisherUniqueName,
		PublisherDisplayName: "Portal Invite Connector",
		Prefix:               o.Prefix,
		Version:              o.Version,
		IntroducedVersion:    "1.0.0.0",
		// The status values 100000000.. are what this option value prefix
		// gives (prefix * 10000 + n).
		OptionValuePrefix: 10000,
		AddressNumbers:    []int{1, 2},
		Ribbon:            o.Prefix + ".contact.InviteToPortal",
		Sequence:          35,
		Library:           WebResourceName(o.Prefix, "invite.js"),
		Dialog:            WebResourceName(o.Prefix, "dialog.html"),
		Icon:              WebResourceName(o.Prefix, "icon.svg"),
		MaxRecords:        MaxRecords,
		StatusColumn:      cols.Status,
		ResendValue:       StatusResend,
		RevokeValue:       StatusRevoke,
	}
	d.Attributes = []attribute{
		{
			SchemaName:    schema("PortalInviteStatus"),
			LogicalName:   cols.Status,
			Type:          "picklist",
			DisplayName:   "Portal Invite Status",
			Description:   "Where the portal invitation for this contact stands. The Invite to portal button sets Requested; the portal invitation connector sets Sent, Delivered, Failed or Redeemed.",
			OptionSetName: o.Prefix + "_contact_portalinvitestatus",
			Options: []option{
				{StatusRequested, "Requested", "Invite to portal was clicked; the connector has not handled the request yet."},
				{StatusSent, "Sent", "The invitation was created and its email handed over for sending (Dynamics 365 shows it Pending Send until the mailbox sends it)."},
				{StatusFailed, "Failed", "The connector could not invite the contact, or the invitation email was not sent; Last Invite Error says why."},
				{StatusRedeemed, "Redeemed", "The contact redeemed the invitation and has a portal account."},
				{StatusDelivered, "Delivered", "The mail server (Exchange through the sender's mailbox, or the SMTP server) accepted the invitation email."},
				{StatusResend, "Resend requested", "Resend invitation was clicked; the connector sends the open invitation again and sets Sent."},
				{StatusRevoke, "Revoke requested", "Revoke invitation was clicked; the connector withdraws the open invitation and sets Revoked."},
				{StatusRevoked, "Revoked", "The invitation was withdrawn; its link no longer works."},
				{StatusExpired, "Expired", "The invitation expired before the contact redeemed it."},
			},
		},
		{
			SchemaName:  schema("PortalName"),
			LogicalName: cols.Portal,
			Type:        "nvarchar",
			DisplayName: "Portal Name",
			Description: "The portal to invite the contact to, by its name in the connector configuration.",
			MaxLength:   portalMaxLength,
		},
		{
			SchemaName:  schema("PortalRoles"),
			LogicalName: cols.Roles,
			Type:        "nvarchar",
			DisplayName: "Portal Roles",
			Description: "Web role names to give the contact on redemption, separated by commas. Empty means the portal's default roles.",
			MaxLength:   rolesMaxLength,
		},
		{
			SchemaName:  schema("LastInvitedOn"),
			LogicalName: cols.InvitedOn,
			Type:        "datetime",
			DisplayName: "Last Invited On",
			Description: "When the connector last sent this contact a portal invitation.",
		},
		{
			SchemaName:  schema("LastInviteError"),
			LogicalName: cols.Error,
			Type:        "nvarchar",
			DisplayName: "Last Invite Error",
			Description: "Why the last portal invitation failed, as written by the connector. Cleared by a new request.",
			MaxLength:   errorMaxLength,
		},
	}

	cfg, err := configJS(o, cols)
	if err != nil {
		return d, err
	}
	resources := []webResource{
		{source: "invite.js", DisplayName: "Portal invite: command library", Type: typeScript,
			Description: "Enable rules and commands of the Invite to portal button, and the logic of its dialog."},
		{source: "dialog.html", DisplayName: "Portal invite: dialog", Type: typeHTML,
			Description: "Dialog that picks the portal and web roles for Invite to portal."},
		{Name: WebResourceName(o.Prefix, "config.js"), DisplayName: "Portal invite: dialog settings", Type: typeScript,
			Description: "Column names and portal choices for the Invite to portal dialog, generated by connector solution pack.", data: cfg},
		{source: "icon.svg", DisplayName: "Portal invite: icon", Type: typeSVG,
			Description: "Icon of the Invite to portal button."},
	}
	for i := range resources {
		w := &resources[i]
		if w.source != "" {
			w.Name = WebResourceName(o.Prefix, w.source)
			b, err := fs.ReadFile(source.Source, path.Join("WebResources", w.source))
			if err != nil {
				return d, fmt.Errorf("solution: read web resource %s: %w", w.source, err)
			}
			w.data = b
		}
		w.id = uuid.NewSHA1(idSpace, []byte(strings.ToLower(w.Name)))
		// Exports name web resource files after the unique name without
		// separators, followed by the id.
		w.FileName = "WebResources/" + flatten(w.Name) + strings.ToUpper(w.id.String())
	}
	sort.Slice(resources, func(i, j int) bool { return resources[i].Name < resources[j].Name })
	d.WebResources = resources
	return d, nil
}

func flatten(name string) string {
	var b strings.Builder
	for _, r := range name {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func configJS(o Options, cols Columns) ([]byte, error) {
	cfg := dialogConfig{
		Version: o.Version,
		Entity:  "contact",
		Columns: configColumns{Status: cols.Status, Portal: cols.Portal, Roles: cols.Roles, InvitedOn: cols.InvitedOn, Error: cols.Error},
		Status: configStatus{Requested: StatusRequested, Sent: StatusSent, Failed: StatusFailed, Redeemed: StatusRedeemed, Delivered: StatusDelivered,
			Resend: StatusResend, Revoke: StatusRevoke, Revoked: StatusRevoked, Expired: StatusExpired},
		Portals: make([]configPortal, 0, len(o.Portals)),
	}
	for _, p := range o.Portals {
		cp := configPortal{Name: p.Name, Roles: p.Roles, DefaultRoles: p.DefaultRoles}
		if cp.Roles == nil {
			cp.Roles = []string{}
		}
		if cp.DefaultRoles == nil {
			cp.DefaultRoles = []string{}
		}
		cfg.Portals = append(cfg.Portals, cp)
	}
	// json escapes <, > and & as \u003c..., so no value can end the script.
	body, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("solution: encode dialog settings: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("// Settings of the Invite to portal dialog, generated by `connector solution pack`.\n")
	b.WriteString("// Change the connector's config and pack again rather than editing this file.\n")
	b.WriteString("var PortalInviteConfig = ")
	b.Write(body)
	b.WriteString(";\n")
	return b.Bytes(), nil
}

func contentTypes(resources []webResource) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>`)
	b.WriteString(`<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">`)
	b.WriteString(`<Default Extension="xml" ContentType="application/octet-stream" />`)
	for _, w := range resources {
		fmt.Fprintf(&b, `<Override PartName="/%s" ContentType="application/octet-stream" />`, w.FileName)
	}
	b.WriteString(`</Types>`)
	return b.Bytes()
}

func render(name string, data templateData) ([]byte, error) {
	text, err := fs.ReadFile(source.Source, name)
	if err != nil {
		return nil, fmt.Errorf("solution: read template %s: %w", name, err)
	}
	t, err := template.New(name).Option("missingkey=error").Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("solution: parse template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("solution: render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// wellFormed reports the first XML syntax error in data.
func wellFormed(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		if _, err := d.Token(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}
