package sync

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
)

// Registrar is the part of the Web API client webhook registration uses;
// *dataverse.Client satisfies it.
type Registrar interface {
	QueryPage(ctx context.Context, set string, q *dataverse.Query, nextLink string) (*dataverse.Page, error)
	Create(ctx context.Context, set string, body any, o *dataverse.WriteOptions) (string, dataverse.Record, error)
	Update(ctx context.Context, set, id string, body any, o *dataverse.WriteOptions) (dataverse.Record, error)
	Delete(ctx context.Context, set, id string, o *dataverse.WriteOptions) error
}

// RegisterOptions describe the webhook registration.
type RegisterOptions struct {
	// Name is the serviceendpoint's name, the key that makes registration
	// idempotent, and the prefix of the step names; default
	// "portal-invite-connector".
	Name string
	// URL is where Dataverse posts: server.public_url + intake.webhook.path
	// (see WebhookURL). Dataverse only calls ports 80 and 443.
	URL string
	// AuthType, AuthName and AuthValue are intake.webhook.auth: webhook_key
	// (authtype 4, the value is sent as ?code=), http_header (5) or
	// query_string (6).
	AuthType, AuthName, AuthValue string
	// Contact names the invite columns: Status filters the Update step; the
	// post image carries Status, Portal and Roles.
	Contact invite.ContactColumns
	// FollowEmails adds a step on email Update filtered on statuscode (post
	// image: statuscode, regardingobjectid), so the connector hears when an
	// invitation email is sent or fails.
	FollowEmails bool
	// DryRun reads what exists and prints the plan to Out without writing.
	DryRun bool
	Out    io.Writer // progress and plan; nil = discard
}

// Registration is what RegisterWebhook created or found.
type Registration struct {
	ServiceEndpointID string // "" in a dry run that would create it
	Steps             []RegisteredStep
	// Changes lists what was done, or in a dry run what would be done, one
	// line each ("create serviceendpoint ...", "unchanged step ...").
	Changes []string
}

// RegisteredStep is one sdkmessageprocessingstep and its post image.
type RegisteredStep struct {
	Message string // Create or Update
	Entity  string // contact or email
	StepID  string
	ImageID string
}

// Serviceendpoint and step option values (reference §7.1).
const (
	contractWebhook    = 8
	authTypeWebhookKey = 4
	authTypeHTTPHeader = 5
	authTypeQuery      = 6
	stagePostOperation = 40
	modeAsynchronous   = 1
	imageTypePost      = 1
	defaultEndpoint    = "portal-invite-connector"
	entityContact      = "contact"
	entityEmail        = "email"
	postImageAlias     = "PostImage"
)

// stepSpec is one step to register.
type stepSpec struct {
	message, entity string
	filter          string // filteringattributes ("" = every change)
	image           string // post image columns, comma-separated
	description     string
}

// WebhookURL joins server.public_url and the webhook path.
func WebhookURL(publicURL, path string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(publicURL))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("webhook url: public url %q is not an absolute http(s) URL", publicURL)
	}
	if path == "" {
		path = defaultWebhookPath
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.TrimPrefix(path, "/")
	return u.String(), nil
}

func (o *RegisterOptions) check() error {
	if o.Name == "" {
		o.Name = defaultEndpoint
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("webhook url %q is not an absolute http(s) URL", o.URL)
	}
	if u.Query().Has("code") && o.AuthType == AuthWebhookKey {
		return fmt.Errorf("webhook url %q must not carry ?code=; Dataverse adds it", o.URL)
	}
	if o.Contact.Status == "" {
		return errors.New("the contact invite status column is required")
	}
	return nil
}

// authFields are the serviceendpoint columns for the configured auth.
func authFields(typ, name, value string) (int, string, error) {
	if value == "" {
		return 0, "", errors.New("the webhook auth value is required")
	}
	switch typ {
	case "", AuthWebhookKey:
		return authTypeWebhookKey, value, nil
	case AuthHTTPHeader, AuthQueryString:
		if name == "" {
			return 0, "", fmt.Errorf("auth type %s needs a name", typ)
		}
		var b strings.Builder
		b.WriteString(`<settings><setting name="`)
		_ = xml.EscapeText(&b, []byte(name))
		b.WriteString(`" value="`)
		_ = xml.EscapeText(&b, []byte(value))
		b.WriteString(`" /></settings>`)
		if typ == AuthHTTPHeader {
			return authTypeHTTPHeader, b.String(), nil
		}
		return authTypeQuery, b.String(), nil
	}
	return 0, "", fmt.Errorf("auth type %q is not one of webhook_key, http_header, query_string", typ)
}

// RegisterWebhook creates or updates, idempotently, the webhook
// serviceendpoint named o.Name and its asynchronous post-operation steps for
// contact Create and Update (Update filtered on the invite status column),
// each with a post image of the status, portal and roles columns. Running it
// again changes only what differs; the auth value cannot be read back, so an
// existing endpoint is always rewritten. With o.DryRun it only reads and
// reports the plan.
func RegisterWebhook(ctx context.Context, dv Registrar, o RegisterOptions) (*Registration, error) {
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("register webhook: %w", err)
	}
	authType, authValue, err := authFields(o.AuthType, o.AuthName, o.AuthValue)
	if err != nil {
		return nil, fmt.Errorf("register webhook: %w", err)
	}
	p := &planner{dv: dv, out: o.Out, dry: o.DryRun}
	reg := &Registration{}
	defer func() { reg.Changes = p.changes }()

	se, err := findEndpoint(ctx, dv, o.Name)
	if err != nil {
		return nil, fmt.Errorf("register webhook: %w", err)
	}
	seBody := map[string]any{
		"name": o.Name, "url": o.URL, "contract": contractWebhook, "authtype": authType, "authvalue": authValue,
		"messageformat": 2, "userclaim": 1,
		"description": "Portal invitation connector: Dataverse posts contact invite requests here.",
	}
	authDesc := fmt.Sprintf("authtype %d, auth value %d characters", authType, len(authValue))
	if se == nil {
		reg.ServiceEndpointID, err = p.create(ctx, "serviceendpoints", seBody,
			fmt.Sprintf("serviceendpoint %q -> %s (%s)", o.Name, o.URL, authDesc))
	} else {
		reg.ServiceEndpointID = se.Str("serviceendpointid")
		err = p.update(ctx, "serviceendpoints", reg.ServiceEndpointID, seBody,
			fmt.Sprintf("serviceendpoint %q %s -> %s (%s; the auth value cannot be read back, so it is rewritten)",
				o.Name, reg.ServiceEndpointID, o.URL, authDesc))
	}
	if err != nil {
		return reg, fmt.Errorf("register webhook: %w", err)
	}

	imageCols := []string{o.Contact.Status}
	for _, c := range []string{o.Contact.Portal, o.Contact.Roles} {
		if c != "" {
			imageCols = append(imageCols, c)
		}
	}
	const contactDesc = "Sends contact invite requests to the portal invitation connector."
	specs := []stepSpec{
		{message: "Create", entity: entityContact, image: strings.Join(imageCols, ","), description: contactDesc},
		{message: "Update", entity: entityContact, filter: o.Contact.Status, image: strings.Join(imageCols, ","), description: contactDesc},
	}
	if o.FollowEmails {
		specs = append(specs, stepSpec{message: "Update", entity: entityEmail, filter: "statuscode", image: "statuscode,regardingobjectid",
			description: "Tells the portal invitation connector when an invitation email is sent or fails."})
	}
	for _, sp := range specs {
		st, err := registerStep(ctx, p, o, reg.ServiceEndpointID, sp)
		if err != nil {
			return reg, fmt.Errorf("register webhook: %s of %s step: %w", sp.message, sp.entity, err)
		}
		reg.Steps = append(reg.Steps, st)
	}
	return reg, nil
}

func registerStep(ctx context.Context, p *planner, o RegisterOptions, seID string, sp stepSpec) (RegisteredStep, error) {
	msg, imageCols := sp.message, sp.image
	st := RegisteredStep{Message: msg, Entity: sp.entity}
	msgID, filterID, err := findMessage(ctx, p.dv, msg, sp.entity)
	if err != nil {
		return st, err
	}
	body := map[string]any{
		"name":                fmt.Sprintf("%s: %s of %s", o.Name, msg, sp.entity),
		"description":         sp.description,
		"stage":               stagePostOperation,
		"mode":                modeAsynchronous,
		"rank":                1,
		"supporteddeployment": 0,
		"asyncautodelete":     true,
		"eventhandler_serviceendpoint@odata.bind": "/serviceendpoints(" + seID + ")",
		"sdkmessageid@odata.bind":                 "/sdkmessages(" + msgID + ")",
		"sdkmessagefilterid@odata.bind":           "/sdkmessagefilters(" + filterID + ")",
	}
	what := fmt.Sprintf("step %q (stage 40, asynchronous)", body["name"])
	if sp.filter != "" {
		body["filteringattributes"] = sp.filter
		what = fmt.Sprintf("step %q (stage 40, asynchronous, only when %s changes)", body["name"], sp.filter)
	}
	var existing dataverse.Record
	if seID != "" {
		// One message (Update) may have steps for several tables: the step
		// for this table is the one on its filter, else one with its name
		// (whose filter is then repaired).
		steps, err := all(ctx, p.dv, "sdkmessageprocessingsteps", &dataverse.Query{
			Select: []string{"sdkmessageprocessingstepid", "name", "stage", "mode", "rank", "asyncautodelete",
				"filteringattributes", "supporteddeployment", "statecode", "_sdkmessagefilterid_value"},
			Filter: fmt.Sprintf("_eventhandler_value eq %s and _sdkmessageid_value eq %s", seID, msgID),
		})
		if err != nil {
			return st, err
		}
		for _, r := range steps {
			if strings.EqualFold(r.Str("_sdkmessagefilterid_value"), filterID) {
				existing = r
				break
			}
		}
		for _, r := range steps {
			if existing == nil && r.Str("name") == body["name"] {
				existing = r
			}
		}
	}
	if existing == nil {
		st.StepID, err = p.create(ctx, "sdkmessageprocessingsteps", body, what)
	} else {
		st.StepID = existing.Str("sdkmessageprocessingstepid")
		patch := map[string]any{}
		for _, k := range []string{"name", "stage", "mode", "rank", "supporteddeployment", "asyncautodelete", "filteringattributes"} {
			want, ok := body[k]
			if !ok {
				continue
			}
			if !sameValue(existing[k], want) {
				patch[k] = want
			}
		}
		if existing.Str("_sdkmessagefilterid_value") != filterID {
			patch["sdkmessagefilterid@odata.bind"] = body["sdkmessagefilterid@odata.bind"]
		}
		if existing.Int("statecode") != 0 { // disabled by someone: enable it again
			patch["statecode"], patch["statuscode"] = 0, 1
		}
		err = p.updateIf(ctx, "sdkmessageprocessingsteps", st.StepID, patch, fmt.Sprintf("step %q %s", body["name"], st.StepID))
	}
	if err != nil {
		return st, err
	}
	propName := "Target"
	if msg == "Create" {
		propName = "Id"
	}
	img := map[string]any{
		"name": postImageAlias, "entityalias": postImageAlias, "imagetype": imageTypePost,
		"messagepropertyname": propName, "attributes": imageCols,
	}
	var existingImg dataverse.Record
	if st.StepID != "" {
		existingImg, err = first(ctx, p.dv, "sdkmessageprocessingstepimages", &dataverse.Query{
			Select: []string{"sdkmessageprocessingstepimageid", "name", "entityalias", "imagetype", "messagepropertyname", "attributes"},
			Filter: fmt.Sprintf("_sdkmessageprocessingstepid_value eq %s and entityalias eq %s", st.StepID, dataverse.Quote(postImageAlias)),
		})
		if err != nil {
			return st, err
		}
	}
	if existingImg == nil {
		img["sdkmessageprocessingstepid@odata.bind"] = "/sdkmessageprocessingsteps(" + st.StepID + ")"
		st.ImageID, err = p.create(ctx, "sdkmessageprocessingstepimages", img,
			fmt.Sprintf("post image of the %s step (%s)", msg, imageCols))
	} else {
		st.ImageID = existingImg.Str("sdkmessageprocessingstepimageid")
		patch := map[string]any{}
		for k, want := range img {
			if !sameValue(existingImg[k], want) {
				patch[k] = want
			}
		}
		err = p.updateIf(ctx, "sdkmessageprocessingstepimages", st.ImageID, patch, fmt.Sprintf("post image of the %s step %s", msg, st.ImageID))
	}
	return st, err
}

// UnregisterWebhook deletes the serviceendpoint named o.Name with its steps
// and images. Nothing registered is not an error. With o.DryRun it only
// reports what it would delete.
func UnregisterWebhook(ctx context.Context, dv Registrar, o RegisterOptions) error {
	if o.Name == "" {
		o.Name = defaultEndpoint
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	p := &planner{dv: dv, out: o.Out, dry: o.DryRun}
	se, err := findEndpoint(ctx, dv, o.Name)
	if err != nil {
		return fmt.Errorf("unregister webhook: %w", err)
	}
	if se == nil {
		p.say("nothing to do: no webhook named %q is registered", o.Name)
		return nil
	}
	seID := se.Str("serviceendpointid")
	steps, err := all(ctx, dv, "sdkmessageprocessingsteps", &dataverse.Query{
		Select: []string{"sdkmessageprocessingstepid", "name"},
		Filter: "_eventhandler_value eq " + seID,
	})
	if err != nil {
		return fmt.Errorf("unregister webhook: %w", err)
	}
	for _, st := range steps {
		stID := st.Str("sdkmessageprocessingstepid")
		imgs, err := all(ctx, dv, "sdkmessageprocessingstepimages", &dataverse.Query{
			Select: []string{"sdkmessageprocessingstepimageid"},
			Filter: "_sdkmessageprocessingstepid_value eq " + stID,
		})
		if err != nil {
			return fmt.Errorf("unregister webhook: %w", err)
		}
		for _, img := range imgs {
			if err := p.delete(ctx, "sdkmessageprocessingstepimages", img.Str("sdkmessageprocessingstepimageid"), "step image"); err != nil {
				return fmt.Errorf("unregister webhook: %w", err)
			}
		}
		if err := p.delete(ctx, "sdkmessageprocessingsteps", stID, fmt.Sprintf("step %q", st.Str("name"))); err != nil {
			return fmt.Errorf("unregister webhook: %w", err)
		}
	}
	if err := p.delete(ctx, "serviceendpoints", seID, fmt.Sprintf("serviceendpoint %q", o.Name)); err != nil {
		return fmt.Errorf("unregister webhook: %w", err)
	}
	return nil
}

func findEndpoint(ctx context.Context, dv Registrar, name string) (dataverse.Record, error) {
	return first(ctx, dv, "serviceendpoints", &dataverse.Query{
		Select: []string{"serviceendpointid", "name", "url", "authtype", "contract"},
		Filter: fmt.Sprintf("contract eq %d and name eq %s", contractWebhook, dataverse.Quote(name)),
	})
}

// findMessage looks up the sdkmessage and its sdkmessagefilter for a table.
func findMessage(ctx context.Context, dv Registrar, msg, table string) (msgID, filterID string, err error) {
	m, err := first(ctx, dv, "sdkmessages", &dataverse.Query{
		Select: []string{"sdkmessageid", "name"},
		Filter: "name eq " + dataverse.Quote(msg),
	})
	if err != nil {
		return "", "", err
	}
	if m == nil {
		return "", "", fmt.Errorf("sdkmessage %q not found", msg)
	}
	f, err := first(ctx, dv, "sdkmessagefilters", &dataverse.Query{
		Select: []string{"sdkmessagefilterid"},
		Filter: fmt.Sprintf("primaryobjecttypecode eq %s and sdkmessageid/name eq %s", dataverse.Quote(table), dataverse.Quote(msg)),
	})
	if err != nil {
		return "", "", err
	}
	if f == nil {
		return "", "", fmt.Errorf("sdkmessagefilter for %s of %s not found", msg, table)
	}
	return m.Str("sdkmessageid"), f.Str("sdkmessagefilterid"), nil
}

func first(ctx context.Context, dv Registrar, set string, q *dataverse.Query) (dataverse.Record, error) {
	q.Top = 1
	page, err := dv.QueryPage(ctx, set, q, "")
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", set, err)
	}
	if len(page.Records) == 0 {
		return nil, nil
	}
	return page.Records[0], nil
}

func all(ctx context.Context, dv Registrar, set string, q *dataverse.Query) ([]dataverse.Record, error) {
	var out []dataverse.Record
	next := ""
	for {
		page, err := dv.QueryPage(ctx, set, q, next)
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", set, err)
		}
		out = append(out, page.Records...)
		if next = page.NextLink; next == "" {
			return out, nil
		}
	}
}

// sameValue compares a value read from the Web API (JSON-decoded) with the
// value registration would write.
func sameValue(got, want any) bool {
	switch w := want.(type) {
	case int:
		switch g := got.(type) {
		case float64:
			return g == float64(w)
		case int:
			return g == w
		case int64:
			return g == int64(w)
		}
		return false
	case string:
		g, _ := got.(string)
		return g == w
	case bool:
		g, _ := got.(bool)
		return g == w
	}
	return fmt.Sprint(got) == fmt.Sprint(want)
}

// planner writes, or in a dry run only describes, each change.
type planner struct {
	dv      Registrar
	out     io.Writer
	dry     bool
	changes []string
}

func (p *planner) say(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	p.changes = append(p.changes, line)
	fmt.Fprintln(p.out, line)
}

func (p *planner) verb(v string) string {
	if p.dry {
		return "would " + v
	}
	return v
}

func (p *planner) create(ctx context.Context, set string, body map[string]any, what string) (string, error) {
	p.say("%s %s", p.verb("create"), what)
	if p.dry {
		return "", nil
	}
	id, _, err := p.dv.Create(ctx, set, body, nil)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", what, err)
	}
	return id, nil
}

func (p *planner) update(ctx context.Context, set, id string, body map[string]any, what string) error {
	p.say("%s %s", p.verb("update"), what)
	if p.dry {
		return nil
	}
	if _, err := p.dv.Update(ctx, set, id, body, nil); err != nil {
		return fmt.Errorf("update %s: %w", what, err)
	}
	return nil
}

func (p *planner) updateIf(ctx context.Context, set, id string, patch map[string]any, what string) error {
	if len(patch) == 0 {
		p.say("unchanged %s", what)
		return nil
	}
	keys := slices.Sorted(maps.Keys(patch))
	return p.update(ctx, set, id, patch, fmt.Sprintf("%s (%s)", what, strings.Join(keys, ", ")))
}

func (p *planner) delete(ctx context.Context, set, id, what string) error {
	p.say("%s %s %s", p.verb("delete"), what, id)
	if p.dry {
		return nil
	}
	if err := p.dv.Delete(ctx, set, id, nil); err != nil && !dataverse.IsNotFound(err) {
		return fmt.Errorf("delete %s %s: %w", what, id, err)
	}
	return nil
}
