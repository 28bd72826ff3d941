package invite

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
)

// model is the Dataverse naming of one Power Pages data model.
type model struct {
	name         string
	websiteSet   string // entity set of the website table
	websiteKey   string // its primary key column
	websiteNav   string // single-valued nav prop on adx_invitation
	websiteValue string // lookup value column on adx_invitation
	roleSet      string
	roleID       string
	roleName     string
	roleWebsite  string // lookup value column on the role pointing at the website
	roleFilter   string // extra filter for the role set ("" if none)
	invRoles     string // N:N nav prop adx_invitation <-> role
	contactRoles string // N:N nav prop contact <-> role (same name on both sides)
}

var models = map[string]*model{
	ModelEnhanced: {
		name: ModelEnhanced, websiteSet: "powerpagesites", websiteKey: "powerpagesiteid", websiteNav: "mspp_websiteid", websiteValue: "_mspp_websiteid_value",
		roleSet: "powerpagecomponents", roleID: "powerpagecomponentid", roleName: "name", roleWebsite: "_powerpagesiteid_value",
		roleFilter: "powerpagecomponenttype eq 11", invRoles: "adx_invitation_mspp_webrole_powerpagecomponent",
		contactRoles: "powerpagecomponent_mspp_webrole_contact",
	},
	ModelStandard: {
		name: ModelStandard, websiteSet: "adx_websites", websiteKey: "adx_websiteid", websiteNav: "adx_website", websiteValue: "_adx_website_value",
		roleSet: "adx_webroles", roleID: "adx_webroleid", roleName: "adx_name", roleWebsite: "_adx_websiteid_value",
		invRoles: "adx_invitation_webrole", contactRoles: "adx_webrole_contact",
	},
}

// role is a web role of one website.
type role struct{ ID, Name string }

// roleCache maps role names to ids per website, refreshed after a TTL.
type roleCache struct {
	dv  Dataverse
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*roleEntry // by model + website id
}

type roleEntry struct {
	mu      sync.Mutex // one fetch per website at a time
	fetched time.Time
	byName  map[string]role // lower-case name -> role
	byID    map[string]role
}

func newRoleCache(dv Dataverse, ttl time.Duration, now func() time.Time) *roleCache {
	return &roleCache{dv: dv, ttl: ttl, now: now, entries: map[string]*roleEntry{}}
}

func (c *roleCache) entry(m *model, websiteID string) *roleEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := m.name + "/" + websiteID
	e, ok := c.entries[k]
	if !ok {
		e = &roleEntry{}
		c.entries[k] = e
	}
	return e
}

// resolve returns the roles called names on the website, loading the
// website's roles when the cache is cold or stale; an unknown name forces
// one reload (a role created a minute ago) before ErrUnknownRole.
func (c *roleCache) resolve(ctx context.Context, m *model, websiteID string, names []string) ([]role, error) {
	e := c.entry(m, websiteID)
	e.mu.Lock()
	defer e.mu.Unlock()
	now := c.now()
	if e.byName == nil || now.Sub(e.fetched) >= c.ttl {
		if err := c.load(ctx, m, websiteID, e); err != nil {
			return nil, err
		}
	}
	out, missing := lookupRoles(e, names)
	if len(missing) > 0 && now.Sub(e.fetched) > time.Second {
		if err := c.load(ctx, m, websiteID, e); err != nil {
			return nil, err
		}
		out, missing = lookupRoles(e, names)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("web role %s on website %s: %w", strings.Join(quoteAll(missing), ", "), websiteID, ErrUnknownRole)
	}
	return out, nil
}

// names maps role ids to names for display (unknown ids are skipped).
func (c *roleCache) names(ctx context.Context, m *model, websiteID string, ids []string) []string {
	e := c.entry(m, websiteID)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.byID == nil || c.now().Sub(e.fetched) >= c.ttl {
		if err := c.load(ctx, m, websiteID, e); err != nil {
			return nil
		}
	}
	var out []string
	for _, id := range ids {
		if r, ok := e.byID[strings.ToLower(id)]; ok {
			out = append(out, r.Name)
		}
	}
	return out
}

func lookupRoles(e *roleEntry, names []string) (out []role, missing []string) {
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		r, ok := e.byName[strings.ToLower(n)]
		if !ok {
			missing = append(missing, n)
			continue
		}
		if !seen[r.ID] {
			seen[r.ID] = true
			out = append(out, r)
		}
	}
	return out, missing
}

func (c *roleCache) load(ctx context.Context, m *model, websiteID string, e *roleEntry) error {
	filter := m.roleWebsite + " eq " + websiteID + " and statecode eq 0"
	if m.roleFilter != "" {
		filter = m.roleFilter + " and " + filter
	}
	q := &dataverse.Query{Select: []string{m.roleID, m.roleName}, Filter: filter}
	byName, byID := map[string]role{}, map[string]role{}
	next := ""
	for {
		page, err := c.dv.QueryPage(ctx, m.roleSet, q, next)
		if err != nil {
			return fmt.Errorf("load web roles of website %s: %w", websiteID, err)
		}
		for _, r := range page.Records {
			ro := role{ID: strings.ToLower(r.Str(m.roleID)), Name: r.Str(m.roleName)}
			byName[strings.ToLower(ro.Name)] = ro
			byID[ro.ID] = ro
		}
		if page.NextLink == "" {
			break
		}
		next = page.NextLink
	}
	e.byName, e.byID, e.fetched = byName, byID, c.now()
	return nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// DetectDataModel tells which Power Pages data model the website with id
// websiteID uses: ModelEnhanced when it is a powerpagesite, ModelStandard
// when it is an adx_website. It returns ErrNotFound when it is neither.
// `connector check` uses it to verify the configuration.
func (s *Service) DetectDataModel(ctx context.Context, websiteID string) (string, error) {
	id, ok := normalizeGUID(websiteID)
	if !ok {
		return "", fmt.Errorf("detect data model: website id %q: %w", websiteID, ErrNotFound)
	}
	for _, name := range []string{ModelEnhanced, ModelStandard} {
		m := models[name]
		_, err := s.dv.Retrieve(ctx, m.websiteSet, id, &dataverse.Query{Select: []string{m.websiteKey}})
		if err == nil {
			return name, nil
		}
		// A 404 also covers orgs where the table itself does not exist.
		if !dataverse.IsNotFound(err) {
			return "", fmt.Errorf("detect data model of website %s: %w", id, err)
		}
	}
	return "", fmt.Errorf("detect data model: website %s: %w", id, ErrNotFound)
}
