package emulator

import (
	"slices"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator/webhook"
)

// event is a committed-to-be write that registered steps may want to hear about.
type event struct {
	message string
	table   *table
	id      string
	target  map[string]any // stored-form attributes of the Target entity
	pre     map[string]any // row before the operation (Update/Delete)
	post    map[string]any // row after the operation (Create/Update)
	changed []string       // attributes in the request (Update filtering)
	caller  string
	corrID  string
	reqID   string
	at      time.Time
}

// event records a Create/Update/Delete for webhook delivery after commit. Row value maps
// are never mutated in place (updates replace them), so they are safe to keep.
func (s *Server) event(tx *tx, req *request, msg string, t *table, r *row, old map[string]any, changed []string) {
	if len(s.st.data["sdkmessageprocessingstep"].rows) == 0 {
		return
	}
	e := &event{message: msg, table: t, id: r.id, caller: tx.caller.userID, corrID: req.corrID, reqID: req.reqID, at: tx.now, changed: changed}
	switch msg {
	case "Create":
		e.target, e.post = r.vals, r.vals
	case "Update":
		target := map[string]any{t.pk: r.id}
		for _, k := range changed {
			target[k] = r.vals[k]
		}
		for _, k := range []string{"modifiedon", "modifiedby", "modifiedonbehalfby"} {
			if v, ok := r.vals[k]; ok {
				target[k] = v
			}
		}
		e.target, e.pre, e.post = target, old, r.vals
	case "Delete":
		e.target, e.pre = map[string]any{}, old
	}
	tx.events = append(tx.events, e)
}

type delivery struct {
	ep  webhook.Endpoint
	ctx webhook.Context
}

// fire hands committed events to the dispatcher (asynchronously, like async steps).
// Synchronous (mode 0) steps are delivered the same way after commit: the emulator does
// not roll a write back when a synchronous webhook fails.
func (s *Server) fire(events []*event) {
	if len(events) == 0 {
		return
	}
	var out []delivery
	s.st.mu.RLock()
	for _, e := range events {
		out = append(out, s.deliveries(e)...)
	}
	s.st.mu.RUnlock()
	for _, d := range out {
		s.hooks.Deliver(d.ep, d.ctx)
	}
}

func (s *Server) deliveries(e *event) []delivery {
	steps := s.st.data["sdkmessageprocessingstep"]
	var rows []*row
	for _, r := range steps.rows {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b *row) int {
		ra, _ := a.vals["rank"].(int)
		rb, _ := b.vals["rank"].(int)
		if ra != rb {
			return ra - rb
		}
		return cmpU(a.seq, b.seq)
	})
	var out []delivery
	for _, st := range rows {
		v := st.vals
		if state, _ := v["statecode"].(int); state != 0 {
			continue
		}
		if !s.stepMatches(v, e) {
			continue
		}
		hr, ok := v["eventhandler"].(ref)
		if !ok || hr.table != "serviceendpoint" {
			continue
		}
		se, ok := s.st.data["serviceendpoint"].rows[hr.id]
		if !ok {
			continue
		}
		if c, _ := se.vals["contract"].(int); c != contractWebhook {
			continue
		}
		url, _ := se.vals["url"].(string)
		authType, _ := se.vals["authtype"].(int)
		authValue, _ := se.vals["authvalue"].(string)
		mode, _ := v["mode"].(int)
		stage, _ := v["stage"].(int)
		if stage == 0 {
			stage = 40
		}
		user := e.caller
		if iu, ok := v["impersonatinguserid"].(ref); ok {
			user = iu.id
		}
		ctx := webhook.Context{
			MessageName: e.message, PrimaryEntityName: e.table.logical, PrimaryEntityID: e.id,
			InitiatingUserID: e.caller, UserID: user,
			OrganizationID: OrganizationID, OrganizationName: OrganizationName, BusinessUnitID: BusinessUnitID,
			CorrelationID: e.corrID, OperationID: newGUID(), OperationCreatedOn: e.at,
			Depth: 1, Mode: mode, Stage: stage,
			Target:            ptr(s.webhookEntity(e.table, e.id, e.target, nil)),
			PreImages:         map[string]webhook.Entity{},
			PostImages:        map[string]webhook.Entity{},
			OwningExtensionID: st.id,
		}
		if mode == 0 {
			ctx.RequestID = e.reqID // asynchronous contexts carry no request id
		}
		if e.message == "Create" {
			ctx.OutputParameters = map[string]any{"id": e.id}
		}
		s.addImages(&ctx, st.id, e)
		if mode == 1 && e.post != nil && e.table.primaryName != "" {
			ctx.PostImages["AsynchronousStepPrimaryName"] = s.webhookEntity(e.table, e.id, e.post, []string{e.table.primaryName, e.table.pk})
		}
		out = append(out, delivery{
			ep:  webhook.Endpoint{URL: url, AuthType: authType, AuthValue: authValue, Entity: e.table.logical, Message: e.message},
			ctx: ctx,
		})
	}
	return out
}

func (s *Server) stepMatches(v map[string]any, e *event) bool {
	mr, ok := v["sdkmessageid"].(ref)
	if !ok {
		return false
	}
	msg, ok := s.st.data["sdkmessage"].rows[mr.id]
	if !ok {
		return false
	}
	if name, _ := msg.vals["name"].(string); !strings.EqualFold(name, e.message) {
		return false
	}
	if fr, ok := v["sdkmessagefilterid"].(ref); ok {
		f, ok := s.st.data["sdkmessagefilter"].rows[fr.id]
		if !ok {
			return false
		}
		if tbl, _ := f.vals["primaryobjecttypecode"].(string); !strings.EqualFold(tbl, e.table.logical) {
			return false
		}
	}
	if e.message == "Update" {
		if fa, _ := v["filteringattributes"].(string); strings.TrimSpace(fa) != "" {
			hit := false
			for _, a := range strings.Split(fa, ",") {
				if contains(e.changed, strings.ToLower(strings.TrimSpace(a))) {
					hit = true
					break
				}
			}
			if !hit {
				return false
			}
		}
	}
	return true
}

func (s *Server) addImages(ctx *webhook.Context, stepID string, e *event) {
	for _, img := range s.st.data["sdkmessageprocessingstepimage"].rows {
		sr, ok := img.vals["sdkmessageprocessingstepid"].(ref)
		if !ok || sr.id != stepID {
			continue
		}
		alias, _ := img.vals["entityalias"].(string)
		if alias == "" {
			alias, _ = img.vals["name"].(string)
		}
		var cols []string
		if a, _ := img.vals["attributes"].(string); strings.TrimSpace(a) != "" {
			for _, c := range strings.Split(a, ",") {
				cols = append(cols, strings.TrimSpace(c))
			}
		}
		typ, _ := img.vals["imagetype"].(int)
		if (typ == 0 || typ == 2) && e.pre != nil {
			ctx.PreImages[alias] = s.webhookEntity(e.table, e.id, e.pre, cols)
		}
		if (typ == 1 || typ == 2) && e.post != nil {
			ctx.PostImages[alias] = s.webhookEntity(e.table, e.id, e.post, cols)
		}
	}
}

// webhookEntity converts stored values to the RemoteExecutionContext value types.
func (s *Server) webhookEntity(t *table, id string, vals map[string]any, only []string) webhook.Entity {
	attrs := map[string]any{}
	for k, v := range vals {
		if only != nil && !contains(only, k) {
			continue
		}
		c, ok := t.columns[k]
		if !ok || k == "versionnumber" {
			continue
		}
		attrs[k] = webhookValue(s, c, v)
	}
	return webhook.Entity{LogicalName: t.logical, ID: id, Attributes: attrs}
}

func webhookValue(s *Server, c *Column, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case ref:
		name, _ := s.primaryName(x)
		return webhook.EntityReference{LogicalName: x.table, ID: x.id, Name: name}
	case int:
		switch c.Type {
		case TypePicklist, TypeState, TypeStatus:
			return webhook.OptionSetValue(x)
		}
		return x
	case int64:
		return int(x)
	case float64:
		if c.Type == TypeMoney {
			return webhook.Money(x)
		}
		return x
	}
	return v
}

func ptr[T any](v T) *T { return &v }

// WebhookResults returns the finished webhook deliveries (oldest first).
func (s *Server) WebhookResults() []webhook.Result {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return slices.Clone(s.hookResults)
}

func (s *Server) recordHook(r webhook.Result) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if len(s.hookResults) >= 1000 {
		s.hookResults = slices.Delete(s.hookResults, 0, 500)
	}
	s.hookResults = append(s.hookResults, r)
	if r.Err != nil {
		s.log.Warn("dataverse emulator webhook failed", "url", r.URL, "message", r.MessageName, "entity", r.EntityName, "status", r.StatusCode, "err", r.Err)
	}
}
