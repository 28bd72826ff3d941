package sync

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
)

// Webhook headers Dataverse sends (reference §7.2).
const (
	headerCorrelation  = "x-ms-correlation-request-id"
	headerEntity       = "x-ms-dynamics-entity-name"
	headerRequestName  = "x-ms-dynamics-request-name"
	headerSizeExceeded = "x-ms-dynamics-msg-size-exceeded"
)

// Webhook outcomes reported to Hooks.Webhook.
const (
	WebhookAccepted     = "accepted"
	WebhookDuplicate    = "duplicate"
	WebhookIgnored      = "ignored"
	WebhookUnauthorized = "unauthorized"
	WebhookBadRequest   = "bad_request"
	WebhookTooLarge     = "too_large"
	WebhookUnavailable  = "unavailable"
)

// WebhookHandler serves POST <Webhook.Path>: it authenticates the delivery,
// parses the RemoteExecutionContext and, when a contact's invite status just
// became Requested, enqueues the request. It answers 202 once the request is
// queued (200 for a duplicate or an event that needs nothing), 401 on bad
// auth, 400 on a malformed body, 413 on an oversized one and 503 when the
// queue cannot be reached, which Dataverse retries once; the poller catches
// anything still missed.
func (i *Intake) WebhookHandler() http.Handler {
	return http.HandlerFunc(i.serveWebhook)
}

func (i *Intake) handleWebhook(w http.ResponseWriter, r *http.Request) {
	if !i.cfg.Webhook.Enabled {
		http.NotFound(w, r)
		return
	}
	rid := r.Header.Get(headerCorrelation)
	if rid == "" {
		rid = randomHex(16)
	}
	w.Header().Set("X-Request-Id", rid)
	log := i.log.With("request_id", rid)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !i.authorized(r) {
		log.Warn("webhook: bad credentials", "remote", r.RemoteAddr)
		i.answer(w, http.StatusUnauthorized, WebhookUnauthorized)
		return
	}
	if i.stopping.Load() {
		// A retry reaches another replica; the poller covers the rest.
		i.answer(w, http.StatusServiceUnavailable, WebhookUnavailable)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, i.cfg.Webhook.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			log.Warn("webhook: body too large", "limit", i.cfg.Webhook.MaxBodyBytes)
			i.answer(w, http.StatusRequestEntityTooLarge, WebhookTooLarge)
			return
		}
		log.Warn("webhook: reading body failed", "err", err)
		i.answer(w, http.StatusBadRequest, WebhookBadRequest)
		return
	}
	rc, err := ParseContext(body)
	if err != nil {
		log.Warn("webhook: malformed body; nothing queued", "err", err, "bytes", len(body))
		i.answer(w, http.StatusBadRequest, WebhookBadRequest)
		return
	}
	req, why, err := i.decide(r.Context(), r.Header, rc)
	switch {
	case errors.Is(err, errMalformed):
		log.Warn("webhook: unusable event; nothing queued", "err", err)
		i.answer(w, http.StatusBadRequest, WebhookBadRequest)
		return
	case err != nil:
		log.Error("webhook: reading the contact back failed", "err", err, "contact", rc.PrimaryEntityID)
		i.answer(w, http.StatusServiceUnavailable, WebhookUnavailable)
		return
	case req == nil:
		log.Debug("webhook: ignored", "why", why, "entity", rc.PrimaryEntityName, "message", rc.MessageName, "contact", rc.PrimaryEntityID)
		i.answer(w, http.StatusOK, WebhookIgnored)
		return
	}
	req.RequestID = rid
	// Dataverse gives up after 60 s; answer 503 well before that.
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	queued, err := i.Enqueue(ctx, *req)
	if err != nil {
		log.Error("webhook: enqueue failed", "err", err, "contact", req.ContactID)
		i.answer(w, http.StatusServiceUnavailable, WebhookUnavailable)
		return
	}
	if !queued {
		i.answer(w, http.StatusOK, WebhookDuplicate)
		return
	}
	if req.Kind == KindEmail {
		log.Info("webhook: invitation email status changed", "email", req.EmailID, "invitation", req.RegardingID,
			"correlation", rc.CorrelationID)
	} else {
		log.Info("webhook: invitation requested", "contact", req.ContactID, "message", rc.MessageName,
			"initiating_user", req.InitiatingUserID, "depth", rc.Depth, "correlation", rc.CorrelationID)
	}
	i.answer(w, http.StatusAccepted, WebhookAccepted)
}

func (i *Intake) answer(w http.ResponseWriter, status int, outcome string) {
	if i.cfg.Hooks.Webhook != nil {
		i.cfg.Hooks.Webhook(outcome)
	}
	if sw, ok := w.(*statusWriter); ok {
		sw.outcome = outcome
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, outcome+"\n")
}

// authorized checks the configured credential in constant time. Both sides
// are hashed first so the comparison does not leak the secret's length.
func (i *Intake) authorized(r *http.Request) bool {
	var got string
	switch i.cfg.Webhook.AuthType {
	case AuthWebhookKey:
		got = r.URL.Query().Get("code")
	case AuthHTTPHeader:
		got = r.Header.Get(i.cfg.Webhook.AuthName)
	case AuthQueryString:
		got = r.URL.Query().Get(i.cfg.Webhook.AuthName)
	default:
		return false
	}
	if got == "" || i.cfg.Webhook.AuthValue == "" {
		return false
	}
	a := sha256.Sum256([]byte(got))
	b := sha256.Sum256([]byte(i.cfg.Webhook.AuthValue))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

var errMalformed = errors.New("malformed event")

const nilGUID = "00000000-0000-0000-0000-000000000000"

// decide turns an execution context into a Request, or nil with the reason
// it needs nothing. Errors wrapping errMalformed mean a 400; others mean the
// contact could not be read back (503).
func (i *Intake) decide(ctx context.Context, h http.Header, rc *RemoteExecutionContext) (*Request, string, error) {
	entity := rc.PrimaryEntityName
	if entity == "" {
		entity = h.Get(headerEntity)
	}
	if strings.EqualFold(entity, "email") {
		return i.decideEmail(ctx, h, rc)
	}
	if !strings.EqualFold(entity, "contact") {
		return nil, "not a contact event", nil
	}
	msg := rc.MessageName
	if msg == "" {
		msg = h.Get(headerRequestName)
	}
	if !strings.EqualFold(msg, "Create") && !strings.EqualFold(msg, "Update") {
		return nil, "message " + msg + " is not Create or Update", nil
	}
	target := rc.Target()
	id := rc.PrimaryEntityID
	if id == "" && target != nil && target.ID != nilGUID { // a Create's Target may carry the empty GUID
		id = target.ID
	}
	if id == "" && target != nil {
		if v, ok := target.Attr("contactid"); ok {
			s, _ := stringValue(v)
			id, _ = normalizeGUID(s)
		}
	}
	if id == "" {
		if s, ok := stringValue(rc.OutputParameters["id"]); ok {
			id, _ = normalizeGUID(s)
		}
	}
	if id == "" || id == nilGUID {
		return nil, "", fmt.Errorf("%w: contact %s event without a contact id", errMalformed, msg)
	}

	req := &Request{ContactID: id, Source: "webhook", InitiatingUserID: rc.InitiatingUserID}
	if req.InitiatingUserID == "" {
		req.InitiatingUserID = rc.UserID
	}
	// The status (and portal and roles) come from the Target, then from a
	// post image; a body trimmed for size, or an Update whose Target and
	// images lack the status, is completed by reading the contact.
	var (
		status int
		have   bool
		portal string
		roles  []string
	)
	sources := []*Entity{target}
	for _, name := range slices.Sorted(maps.Keys(rc.PostEntityImages)) {
		sources = append(sources, rc.PostEntityImages[name])
	}
	if h.Get(headerSizeExceeded) == "" {
		for _, e := range sources {
			if v, ok := e.Attr(i.cols.Status); ok && !have {
				status, have = intValue(v)
				if !have && v == nil {
					have = true // cleared: status 0 is never Requested
				}
			}
			if v, ok := e.Attr(i.cols.Portal); ok && portal == "" && i.cols.Portal != "" {
				portal, _ = stringValue(v)
			}
			if v, ok := e.Attr(i.cols.Roles); ok && roles == nil && i.cols.Roles != "" {
				s, _ := stringValue(v)
				roles = splitRoles(s)
			}
		}
	}
	if !have {
		rec, err := i.cfg.Dataverse.Retrieve(ctx, "contacts", id, &dataverse.Query{Select: i.contactColumns(false)})
		if dataverse.IsNotFound(err) {
			return nil, "contact no longer exists", nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("read contact %s: %w", id, err)
		}
		status, have = intValue(rec[i.cols.Status])
		if i.cols.Portal != "" {
			portal = rec.Str(i.cols.Portal)
		}
		if i.cols.Roles != "" {
			roles = splitRoles(rec.Str(i.cols.Roles))
		}
	}
	if !have || !i.wanted(status) {
		return nil, fmt.Sprintf("invite status is %d, not Requested, Resend or Revoke", status), nil
	}
	req.Portal, req.Roles = strings.TrimSpace(portal), roles
	// The same event delivered again (a retry, a duplicate) carries the same
	// operation; a new click is a new operation.
	event := rc.OperationID
	if event == "" {
		event = rc.RequestID
	}
	if event == "" {
		event = rc.CorrelationID
	}
	if event == "" {
		event = h.Get(headerCorrelation)
	}
	if event != "" {
		req.DedupeKey = "webhook:" + id + ":" + strings.ToLower(event)
	}
	return req, "", nil
}
