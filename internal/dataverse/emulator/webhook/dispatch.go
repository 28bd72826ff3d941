package webhook

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Authentication types of a webhook serviceendpoint (serviceendpoint.authtype).
const (
	AuthWebhookKey      = 4 // AuthValue is a key sent as ?code=
	AuthHTTPHeader      = 5 // AuthValue is <settings> XML; each setting becomes a header
	AuthHTTPQueryString = 6 // AuthValue is <settings> XML; each setting becomes a query parameter
)

// Header names Dataverse sets on webhook requests.
const (
	HeaderOrganization    = "x-ms-dynamics-organization"
	HeaderEntityName      = "x-ms-dynamics-entity-name"
	HeaderRequestName     = "x-ms-dynamics-request-name"
	HeaderCorrelationID   = "x-ms-correlation-request-id"
	HeaderMsgSizeExceeded = "x-ms-dynamics-msg-size-exceeded"
)

// Endpoint is a registered webhook: the serviceendpoint's URL and
// authentication, and the step's table and message.
type Endpoint struct {
	URL       string
	AuthType  int
	AuthValue string
	// Entity and Message name the step's registration. They fill the
	// x-ms-dynamics-entity-name and -request-name headers when the context
	// leaves PrimaryEntityName or MessageName empty.
	Entity, Message string
}

// DispatcherOptions configures a Dispatcher.
type DispatcherOptions struct {
	// Client sends the requests. Default: a client with no timeout of its
	// own (Timeout applies per attempt).
	Client *http.Client
	// Timeout bounds each attempt, as Dataverse's 60-second limit does. Default 60s.
	Timeout time.Duration
	// Duplicate is the probability that a delivery is sent a second time,
	// identical, after the first completes, as real deliveries occasionally
	// are. Default 0.
	Duplicate float64
	// Delay is waited before a delivery's first attempt, to imitate the
	// asynchronous service's latency; a duplicate follows its original
	// directly. Default 0.
	Delay time.Duration
	// OrgName is the x-ms-dynamics-organization value, the environment's
	// domain name (e.g. contoso.crm.dynamics.com). Default: the context's
	// OrganizationName.
	OrgName string
	// Logger receives one record per delivery. Default: discard.
	Logger *slog.Logger
	// Seed makes duplicate decisions reproducible. 0 picks a random seed.
	Seed int64
	// OnResult, if set, is called once per delivery (duplicates included)
	// when it has finished, before Wait returns; the emulator uses it to
	// record failed asynchronous operations. Optional.
	OnResult func(Result)
}

// Result describes one finished delivery.
type Result struct {
	URL           string // the endpoint without its query string, which may hold a key
	MessageName   string
	EntityName    string
	EntityID      string
	CorrelationID string
	OperationID   string
	Attempts      int  // HTTP requests sent: 0, 1, or 2 after a 502/503/504
	StatusCode    int  // status of the last attempt; 0 if none was received
	Duplicate     bool // this was the extra copy of a delivery
	Trimmed       bool // the body exceeded 256 KB and was trimmed
	Err           error
}

// DeliveryStats counts deliveries since the Dispatcher was created.
type DeliveryStats struct {
	Attempted  int // HTTP requests sent, retries and duplicates included
	Succeeded  int // deliveries whose last attempt returned 2xx
	Failed     int // deliveries that ended without a 2xx
	Retried    int // second attempts after 502, 503 or 504
	Duplicated int // extra copies sent
}

// Dispatcher posts webhook deliveries in the background. Safe for
// concurrent use.
type Dispatcher struct {
	opts   DispatcherOptions
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	idle     *sync.Cond // signalled when inflight drops to zero
	inflight int
	closed   bool
	rng      *rand.Rand
	stats    DeliveryStats
}

// NewDispatcher returns a Dispatcher; Close it when done.
func NewDispatcher(o DispatcherOptions) *Dispatcher {
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	seed := uint64(o.Seed)
	if seed == 0 {
		seed = rand.Uint64()
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Dispatcher{
		opts:   o,
		log:    log,
		ctx:    ctx,
		cancel: cancel,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	d.idle = sync.NewCond(&d.mu)
	return d
}

// Deliver sends c to ep in the background and returns at once, as the
// asynchronous service does. Deliveries after Close are dropped.
func (d *Dispatcher) Deliver(ep Endpoint, c Context) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		d.log.Warn("webhook delivery dropped: dispatcher closed", "url", redact(ep.URL), "message", c.MessageName, "entity", c.PrimaryEntityName)
		return
	}
	d.inflight++
	dup := d.opts.Duplicate > 0 && d.rng.Float64() < d.opts.Duplicate
	d.mu.Unlock()

	go func() {
		defer d.finish()
		req, res := d.prepare(ep, c)
		if res.Err == nil && !d.sleep(d.opts.Delay) {
			res.Err = fmt.Errorf("webhook delivery to %s: %w", res.URL, context.Cause(d.ctx))
		}
		if res.Err == nil {
			d.send(req, &res)
		}
		d.record(res)
		if dup {
			res2 := res
			res2.Duplicate, res2.Attempts, res2.StatusCode, res2.Err = true, 0, 0, nil
			if req == nil || d.ctx.Err() != nil {
				return // nothing sendable, or shutting down
			}
			d.send(req, &res2)
			d.record(res2)
		}
	}()
}

// request is everything needed to (re)send one delivery.
type request struct {
	url    string
	header http.Header
	body   []byte
}

// prepare encodes the body, trims it when oversized and applies the
// endpoint's authentication.
func (d *Dispatcher) prepare(ep Endpoint, c Context) (*request, Result) {
	res := Result{
		URL:           redact(ep.URL),
		MessageName:   firstNonEmpty(c.MessageName, ep.Message),
		EntityName:    firstNonEmpty(c.PrimaryEntityName, ep.Entity),
		EntityID:      c.PrimaryEntityID,
		CorrelationID: c.CorrelationID,
		OperationID:   c.OperationID,
	}
	body, err := Encode(c)
	if err != nil {
		res.Err = err
		return nil, res
	}
	h := http.Header{}
	if len(body) > maxPayload {
		if body, err = encode(c, true); err != nil {
			res.Err = err
			return nil, res
		}
		res.Trimmed = true
		h.Set(HeaderMsgSizeExceeded, "true")
	}
	u, err := url.Parse(ep.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		res.Err = fmt.Errorf("webhook endpoint %q: not an http(s) URL", res.URL)
		return nil, res
	}
	q := u.Query()
	switch ep.AuthType {
	case AuthWebhookKey:
		q.Set("code", ep.AuthValue)
	case AuthHTTPHeader, AuthHTTPQueryString:
		pairs, err := parseSettings(ep.AuthValue)
		if err != nil {
			res.Err = fmt.Errorf("webhook endpoint %s: authvalue: %w", res.URL, err)
			return nil, res
		}
		for _, p := range pairs {
			if ep.AuthType == AuthHTTPHeader {
				h.Add(p.Name, p.Value)
			} else {
				q.Add(p.Name, p.Value)
			}
		}
	default:
		res.Err = fmt.Errorf("webhook endpoint %s: unsupported authtype %d", res.URL, ep.AuthType)
		return nil, res
	}
	u.RawQuery = q.Encode()

	org := d.opts.OrgName
	if org == "" {
		org = c.OrganizationName
	}
	h.Set("Content-Type", "application/json")
	h.Set(HeaderOrganization, org)
	h.Set(HeaderEntityName, res.EntityName)
	h.Set(HeaderRequestName, res.MessageName)
	h.Set(HeaderCorrelationID, c.CorrelationID)
	return &request{url: u.String(), header: h, body: body}, res
}

// send makes the delivery's attempts: one, plus exactly one more when the
// first answers 502, 503 or 504. Anything else that is not 2xx, including a
// timeout or a broken connection, fails the delivery at once.
func (d *Dispatcher) send(req *request, res *Result) {
	for {
		start := time.Now()
		status, err := d.attempt(req)
		res.Attempts++
		res.StatusCode = status
		d.mu.Lock()
		d.stats.Attempted++
		d.mu.Unlock()
		d.log.Debug("webhook attempt", "url", res.URL, "message", res.MessageName, "entity", res.EntityName,
			"attempt", res.Attempts, "status", status, "duration", time.Since(start), "error", err)
		switch {
		case err != nil:
			res.Err = fmt.Errorf("webhook delivery to %s: %w", res.URL, err)
			return
		case status >= 200 && status < 300:
			res.Err = nil
			return
		case (status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout) && res.Attempts == 1:
			d.mu.Lock()
			d.stats.Retried++
			d.mu.Unlock()
			continue
		default:
			res.Err = fmt.Errorf("webhook delivery to %s: status %d", res.URL, status)
			return
		}
	}
}

func (d *Dispatcher) attempt(req *request) (int, error) {
	ctx, cancel := context.WithTimeout(d.ctx, d.opts.Timeout)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, req.url, bytes.NewReader(req.body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	r.Header = req.header.Clone()
	resp, err := d.opts.Client.Do(r)
	if err != nil {
		return 0, err
	}
	// Dataverse ignores the body; read a little so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

func (d *Dispatcher) record(res Result) {
	d.mu.Lock()
	if res.Err == nil {
		d.stats.Succeeded++
	} else {
		d.stats.Failed++
	}
	if res.Duplicate {
		d.stats.Duplicated++
	}
	d.mu.Unlock()
	attrs := []any{"url", res.URL, "message", res.MessageName, "entity", res.EntityName, "entity_id", res.EntityID,
		"correlation_id", res.CorrelationID, "attempts", res.Attempts, "status", res.StatusCode,
		"duplicate", res.Duplicate, "trimmed", res.Trimmed}
	if res.Err != nil {
		d.log.Warn("webhook delivery failed", append(attrs, "error", res.Err)...)
	} else {
		d.log.Info("webhook delivered", attrs...)
	}
	if d.opts.OnResult != nil {
		d.opts.OnResult(res)
	}
}

// sleep waits for dur, or returns false when the dispatcher closes first.
func (d *Dispatcher) sleep(dur time.Duration) bool {
	if dur <= 0 {
		return true
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.ctx.Done():
		return false
	}
}

func (d *Dispatcher) finish() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inflight--
	if d.inflight == 0 {
		d.idle.Broadcast()
	}
}

// Wait blocks until every delivery started so far has finished, retries and
// duplicates included.
func (d *Dispatcher) Wait() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.inflight > 0 {
		d.idle.Wait()
	}
}

// Stats returns the counters so far.
func (d *Dispatcher) Stats() DeliveryStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// Close stops accepting deliveries, aborts those waiting or in flight
// (they are recorded as failed) and waits for them to finish.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.Wait()
}

type setting struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// parseSettings reads the <settings><setting name=".." value=".."/></settings>
// form Dataverse uses for header and query-string credentials.
func parseSettings(s string) ([]setting, error) {
	var doc struct {
		XMLName  xml.Name  `xml:"settings"`
		Settings []setting `xml:"setting"`
	}
	if err := xml.Unmarshal([]byte(s), &doc); err != nil {
		return nil, fmt.Errorf("parse settings: %w", err)
	}
	for _, p := range doc.Settings {
		if p.Name == "" {
			return nil, errors.New("parse settings: setting without a name")
		}
	}
	return doc.Settings, nil
}

// redact drops the query string, which carries the webhook key for
// WebhookKey and HttpQueryString endpoints.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
