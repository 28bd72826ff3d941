package solution

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultPrefix is the publisher customization prefix the connector's config
// defaults expect (pinv_portalinvitestatus, ...).
const DefaultPrefix = "pinv"

// DefaultVersion is the solution version when Options.Version is empty.
const DefaultVersion = "1.0.0.0"

// Values of the invite status choice. They are fixed, whatever the prefix:
// the connector's config refers to them by number.
const (
	StatusRequested = 100000000
	StatusSent      = 100000001
	StatusFailed    = 100000002
	StatusRedeemed  = 100000003
	// StatusDelivered: the mail server accepted the invitation email (Sent
	// only says it was handed to Dataverse server-side sync or the SMTP
	// channel). Added after the first four, so it sorts last.
	StatusDelivered = 100000004
	// The Resend invitation and Revoke invitation buttons write
	// StatusResend and StatusRevoke; the connector answers with Sent or
	// StatusRevoked. StatusExpired: the invitation expired unredeemed.
	StatusResend  = 100000005
	StatusRevoke  = 100000006
	StatusRevoked = 100000007
	StatusExpired = 100000008
)

// Names that do not depend on the prefix. Importing a pack made with another
// prefix into the same environment therefore updates this solution rather
// than adding a second one.
const (
	SolutionUniqueName  = "PortalInviteConnector"
	PublisherUniqueName = "portalinviteconnector"
)

// Column lengths, shared with the dialog's checks.
const (
	portalMaxLength = 100
	rolesMaxLength  = 1000
	errorMaxLength  = 2000
	// MaxRecords is how many contacts one click may invite from a grid; the
	// ribbon's selection rule and invite.js use the same number.
	MaxRecords = 50
)

// Options say what to build. The zero value of each field means its default.
type Options struct {
	// Prefix is the publisher customization prefix every schema and logical
	// name starts with: 2 to 8 lowercase letters or digits, starting with a
	// letter, not "mscrm". Default DefaultPrefix ("pinv").
	Prefix string
	// Version is the solution version, major.minor[.build[.revision]];
	// "v1.2.3" and "1.2.3-rc.1" are accepted and become "1.2.3.0" (see
	// NormalizeVersion). Default DefaultVersion.
	Version string
	// Portals are the choices the dialog offers, in this order. With none,
	// the dialog asks for the portal name and roles as free text.
	Portals []PortalChoice
}

// PortalChoice is one portal the dialog offers.
type PortalChoice struct {
	// Name is the portal's name in the connector's config; the button writes
	// it to the portal column (at most 100 characters).
	Name string
	// Roles are the web role names the user may tick (no commas: the roles
	// column holds them comma-separated).
	Roles []string
	// DefaultRoles are ticked when the portal is chosen; each must be one of
	// Roles. Optional.
	DefaultRoles []string
}

// Columns are the logical names of the contact columns the solution adds.
type Columns struct {
	Status    string // choice: Requested, Sent, Failed, Redeemed, Delivered
	Portal    string // text(100): the portal's name
	Roles     string // text(1000): web role names, comma-separated
	InvitedOn string // date and time: when the last invitation was sent
	Error     string // text(2000): why the last invitation failed
}

// DefaultOptions returns the options `connector solution pack` starts from:
// the default prefix and version and no portals (free-text dialog). The
// caller fills Portals from the connector's config.
func DefaultOptions() Options {
	return Options{Prefix: DefaultPrefix, Version: DefaultVersion}
}

// ColumnsFor returns the contact column names for a prefix.
func ColumnsFor(prefix string) Columns {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	prefix = strings.ToLower(prefix)
	return Columns{
		Status:    prefix + "_portalinvitestatus",
		Portal:    prefix + "_portalname",
		Roles:     prefix + "_portalroles",
		InvitedOn: prefix + "_lastinvitedon",
		Error:     prefix + "_lastinviteerror",
	}
}

// Columns returns the contact column names these options produce.
func (o Options) Columns() Columns { return ColumnsFor(o.Prefix) }

var prefixPattern = regexp.MustCompile(`^[a-z][a-z0-9]{1,7}$`)

// normalized applies the defaults and canonical forms without validating.
func (o Options) normalized() Options {
	n := o
	n.Prefix = strings.ToLower(strings.TrimSpace(o.Prefix))
	if n.Prefix == "" {
		n.Prefix = DefaultPrefix
	}
	if strings.TrimSpace(o.Version) == "" {
		n.Version = DefaultVersion
	} else if v, err := NormalizeVersion(o.Version); err == nil {
		n.Version = v
	}
	n.Portals = make([]PortalChoice, len(o.Portals))
	for i, p := range o.Portals {
		n.Portals[i] = PortalChoice{
			Name:         strings.TrimSpace(p.Name),
			Roles:        trimAll(p.Roles),
			DefaultRoles: trimAll(p.DefaultRoles),
		}
	}
	return n
}

func trimAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.TrimSpace(s)
	}
	return out
}

// Validate reports every problem with the options, naming the field.
func (o Options) Validate() error {
	var errs []error
	prefix := strings.ToLower(strings.TrimSpace(o.Prefix))
	if prefix != "" && (!prefixPattern.MatchString(prefix) || strings.HasPrefix(prefix, "mscrm")) {
		errs = append(errs, fmt.Errorf("prefix %q: want 2 to 8 lowercase letters or digits starting with a letter, not mscrm", o.Prefix))
	}
	if strings.TrimSpace(o.Version) != "" {
		if _, err := NormalizeVersion(o.Version); err != nil {
			errs = append(errs, err)
		}
	}
	n := o.normalized()
	seenPortal := map[string]bool{}
	for i, p := range n.Portals {
		field := fmt.Sprintf("portals[%d]", i)
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("%s: name is empty", field))
		} else {
			field = fmt.Sprintf("portal %q", p.Name)
		}
		if utf8.RuneCountInString(p.Name) > portalMaxLength {
			errs = append(errs, fmt.Errorf("%s: name is longer than %d characters", field, portalMaxLength))
		}
		key := strings.ToLower(p.Name)
		if p.Name != "" && seenPortal[key] {
			errs = append(errs, fmt.Errorf("%s: listed twice", field))
		}
		seenPortal[key] = true

		seenRole := map[string]bool{}
		for _, r := range p.Roles {
			switch {
			case r == "":
				errs = append(errs, fmt.Errorf("%s: empty role name", field))
			case strings.Contains(r, ","):
				errs = append(errs, fmt.Errorf("%s: role %q contains a comma, which separates roles in the roles column", field, r))
			case seenRole[strings.ToLower(r)]:
				errs = append(errs, fmt.Errorf("%s: role %q listed twice", field, r))
			}
			seenRole[strings.ToLower(r)] = true
		}
		if l := utf8.RuneCountInString(strings.Join(p.Roles, ",")); l > rolesMaxLength {
			errs = append(errs, fmt.Errorf("%s: the roles take %d characters together, the column holds %d", field, l, rolesMaxLength))
		}
		for _, r := range p.DefaultRoles {
			if !seenRole[strings.ToLower(r)] {
				errs = append(errs, fmt.Errorf("%s: default role %q is not one of its roles", field, r))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("solution options: %w", errors.Join(errs...))
	}
	return nil
}

// NormalizeVersion turns a version into the four-part form Dataverse wants
// for solutions (major.minor.build.revision). A leading "v" and any
// pre-release or build suffix ("-rc.1", "+abc") are dropped; missing parts
// become 0. It fails for anything else, such as "dev".
func NormalizeVersion(v string) (string, error) {
	s := strings.TrimPrefix(strings.TrimSpace(v), "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 4 {
		return "", fmt.Errorf("version %q: want major.minor[.build[.revision]]", v)
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 31)
		if err != nil || p == "" {
			return "", fmt.Errorf("version %q: part %q is not a number up to 2147483647", v, p)
		}
		parts[i] = strconv.FormatUint(n, 10)
	}
	for len(parts) < 4 {
		parts = append(parts, "0")
	}
	return strings.Join(parts, "."), nil
}

// PrefixFromColumns returns the prefix whose columns are c, so that a pack
// can follow the column names in the connector's config
// (intake.contact.*_attribute). It fails when the five names do not come from
// one prefix, naming the first column that differs.
func PrefixFromColumns(c Columns) (string, error) {
	prefix, _, ok := strings.Cut(c.Status, "_")
	if !ok || !prefixPattern.MatchString(prefix) {
		return "", fmt.Errorf("solution: status column %q is not <prefix>_portalinvitestatus", c.Status)
	}
	want := ColumnsFor(prefix)
	for _, pair := range [][3]string{
		{"status", c.Status, want.Status},
		{"portal", c.Portal, want.Portal},
		{"roles", c.Roles, want.Roles},
		{"invited on", c.InvitedOn, want.InvitedOn},
		{"error", c.Error, want.Error},
	} {
		if pair[1] != pair[2] {
			return "", fmt.Errorf("solution: %s column %q is not the solution's %q for prefix %q", pair[0], pair[1], pair[2], prefix)
		}
	}
	return prefix, nil
}
