package emulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator/schema"
	"github.com/d365portal/connector/internal/dataverse/emulator/sts"
	"github.com/d365portal/connector/internal/dataverse/emulator/throttle"
	"github.com/d365portal/connector/internal/dataverse/emulator/webhook"
)

// Fixed identities of the emulated organization. The client id/secret are the defaults
// used when AuthOptions leaves them empty (the same values `connector dev` prints).
const (
	DefaultTenantID     = "c0ffee00-d365-4e00-9000-000000000001"
	DefaultClientID     = "c0ffee00-d365-4e00-9000-0000000000c1"
	DefaultClientSecret = "emulator-client-secret"

	OrganizationID   = "c0ffee00-d365-4e00-9000-00000000000a"
	BusinessUnitID   = "c0ffee00-d365-4e00-9000-00000000000b"
	OrganizationName = "contoso"
	// AppUserID is the systemuserid of the application user bound to the default client id.
	AppUserID = "c0ffee00-d365-4e00-9000-0000000000a1"

	apiPrefix = "/api/data/v9.2/"
)

// AuthOptions configures the token endpoint and bearer validation.
type AuthOptions struct {
	TenantID     string // default DefaultTenantID
	ClientID     string // default DefaultClientID; an application user is created for it
	ClientSecret string // default DefaultClientSecret
	// Disabled accepts requests without a bearer token (plain-HTTP tests); the caller is
	// then the application user unless impersonation headers say otherwise.
	Disabled bool
	TokenTTL time.Duration // default 1h
}

// WebhookOptions shapes webhook deliveries.
type WebhookOptions struct {
	Duplicate float64       // probability that a delivery is sent twice
	Delay     time.Duration // added before each delivery
	Timeout   time.Duration // per attempt; default 60s like Dataverse
}

// Costs are the simulated server execution times reported to the service protection
// limiter per operation (zero fields take the defaults shown).
type Costs struct {
	Create    time.Duration // default 15ms
	Retrieve  time.Duration // default 3ms
	Query     time.Duration // default 10ms (+1ms per 100 rows returned)
	Update    time.Duration // default 12ms
	Delete    time.Duration // default 10ms
	Associate time.Duration // default 8ms
	Action    time.Duration // default 25ms
}

func (c Costs) withDefaults() Costs {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Create, 15*time.Millisecond)
	def(&c.Retrieve, 3*time.Millisecond)
	def(&c.Query, 10*time.Millisecond)
	def(&c.Update, 12*time.Millisecond)
	def(&c.Delete, 10*time.Millisecond)
	def(&c.Associate, 8*time.Millisecond)
	def(&c.Action, 25*time.Millisecond)
	return c
}

// Options configures a Server. The zero value is a working emulator with auth on,
// limits and faults off.
type Options struct {
	Logger        *slog.Logger     // default: discard
	Now           func() time.Time // default time.Now
	Auth          AuthOptions
	Limits        throttle.Limits // zero = off
	Faults        FaultOptions
	Latency       time.Duration // added to every API request
	WebhookClient *http.Client  // for deliveries; default a plain client
	Webhooks      WebhookOptions
	Costs         Costs
	// ChangeTrackingExpiry is organization.expirechangetrackingindays; default 7 days.
	ChangeTrackingExpiry time.Duration
	// RequestLogSize bounds RequestLog; default 10000 entries.
	RequestLogSize int
	// EmailSync shapes the emulated server-side synchronization that
	// delivers emails sent with SendEmail(IssueSend=true); the zero value
	// delivers at once through approved mailboxes (mail.go).
	EmailSync EmailSyncOptions
}

// Server is the emulator; it implements http.Handler.
type Server struct {
	opts        Options
	log         *slog.Logger
	now         func() time.Time
	reg         *registry
	st          *store
	sts         *sts.Service
	limiter     *throttle.Limiter
	hooks       *webhook.Dispatcher
	faults      *faultInjector
	costs       Costs
	appUser     string
	statsMu     sync.Mutex
	stats       Stats
	reqLog      []LoggedRequest
	hookResults []webhook.Result
	mail        *mailSync
	closeOne    sync.Once
}

var _ http.Handler = (*Server)(nil)

// New builds an emulator with the standard tables and seed metadata (sdkmessage rows,
// the root business unit and the application user).
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Auth.TenantID == "" {
		o.Auth.TenantID = DefaultTenantID
	}
	if o.Auth.ClientID == "" {
		o.Auth.ClientID = DefaultClientID
	}
	if o.Auth.ClientSecret == "" {
		o.Auth.ClientSecret = DefaultClientSecret
	}
	if o.ChangeTrackingExpiry == 0 {
		o.ChangeTrackingExpiry = 7 * 24 * time.Hour
	}
	if o.RequestLogSize == 0 {
		o.RequestLogSize = 10000
	}
	if o.Webhooks.Timeout == 0 {
		o.Webhooks.Timeout = 60 * time.Second
	}
	s := &Server{opts: o, log: o.Logger, now: o.Now, costs: o.Costs.withDefaults()}
	sc, err := schema.Load()
	if err != nil {
		panic(err) // the embedded facts are broken: a build defect, not a run-time condition
	}
	reg, err := newRegistry(sc)
	if err != nil {
		panic(err)
	}
	s.reg = reg
	s.st = newStore(s.reg, o.Now())
	s.sts = sts.New(sts.Options{TenantID: o.Auth.TenantID, TokenTTL: o.Auth.TokenTTL, Now: o.Now})
	s.sts.AddSecretClient(o.Auth.ClientID, o.Auth.ClientSecret)
	s.limiter = throttle.New(o.Limits, o.Now)
	client := o.WebhookClient
	if client == nil {
		client = &http.Client{}
	}
	s.hooks = webhook.NewDispatcher(webhook.DispatcherOptions{
		Client: client, Timeout: o.Webhooks.Timeout, Duplicate: o.Webhooks.Duplicate,
		Delay: o.Webhooks.Delay, Logger: o.Logger, OrgName: OrganizationName + ".crm.dynamics.com",
		OnResult: func(r webhook.Result) { s.recordHook(r) },
	})
	s.faults = newFaultInjector(o.Faults)
	s.stats = newStats()
	s.mail = newMailSync(s, o.EmailSync)
	s.seedSystem()
	return s
}

// STS returns the token service (to add clients or issue tokens directly).
func (s *Server) STS() *sts.Service { return s.sts }

// WaitWebhooks blocks until in-flight webhook deliveries finish (tests).
func (s *Server) WaitWebhooks() { s.hooks.Wait() }

// Close stops server-side sync and webhook delivery.
func (s *Server) Close() {
	s.closeOne.Do(func() {
		s.mail.close()
		s.hooks.Close()
	})
}

// caller is who a request runs as.
type caller struct {
	userID    string // systemuserid (after impersonation)
	principal string // limiter key: the authenticated user
}

// request is one Web API operation (a top-level request or a $batch part).
type request struct {
	method     string
	path       string // after /api/data/v9.2/, unescaped segments kept raw
	rawQuery   string
	query      url.Values
	header     http.Header
	body       []byte
	base       string // https://host/api/data/v9.2/
	caller     *caller
	reqID      string
	corrID     string
	contentIDs map[string]string // "1" -> absolute entity URL (change sets)
	tx         *tx               // non-nil inside a change set
	cost       time.Duration
	route      string
	set        string
	inBatch    bool
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func newResponse(status int) *response { return &response{status: status, header: http.Header{}} }

func jsonResponse(status int, body []byte) *response {
	r := newResponse(status)
	r.header.Set("Content-Type", "application/json; odata.metadata=minimal")
	r.header.Set("OData-Version", "4.0")
	r.body = body
	return r
}

func errorResponse(e *apiError) *response {
	o := &obj{}
	inner := &obj{}
	inner.set("code", e.code)
	inner.set("message", e.message)
	o.set("error", inner)
	r := jsonResponse(e.status, appendJSON(nil, o))
	if e.retryAfter > 0 {
		r.header.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	return r
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ServeHTTP serves the Web API under /api/data/v9.2/ and the token endpoint paths.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := newGUID()
	w.Header().Set("REQ_ID", reqID)
	w.Header().Set("x-ms-service-request-id", reqID)

	if s.sts.Handles(r.URL.Path) {
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		s.sts.ServeHTTP(rec, r)
		s.record(LoggedRequest{Time: s.now(), Method: r.Method, Path: r.URL.Path, Route: "sts", Status: rec.status, RequestID: reqID, Duration: time.Since(start)})
		return
	}
	if !strings.HasPrefix(r.URL.Path, apiPrefix) && r.URL.Path != strings.TrimSuffix(apiPrefix, "/") {
		writeResponse(w, errNoResourceResp(r))
		return
	}
	path := strings.TrimPrefix(strings.TrimPrefix(r.URL.EscapedPath(), strings.TrimSuffix(apiPrefix, "/")), "/")
	route, set := routeOf(r.Method, path)

	// Fault injection happens before anything else, like a failing front end would.
	if f := s.faults.pick(r.Method, set); f != nil {
		if s.applyFault(w, r, f, reqID, route, set, start) {
			return
		}
	}
	if s.opts.Latency > 0 {
		sleepCtx(r.Context(), s.opts.Latency)
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		writeResponse(w, errorResponse(errBadRequest("read body: %v", err)))
		return
	}
	c, aerr := s.authenticate(r)
	if aerr != nil {
		resp := errorResponse(aerr)
		if aerr.status == http.StatusUnauthorized {
			resp = newResponse(http.StatusUnauthorized)
			resp.header.Set("WWW-Authenticate", `Bearer authorization_uri=https://`+r.Host+`/`+s.opts.Auth.TenantID+`/oauth2/authorize, resource_id=`+baseURL(r))
		}
		writeResponse(w, resp)
		s.record(LoggedRequest{Time: s.now(), Method: r.Method, Path: r.URL.RequestURI(), Route: route, Set: set, Status: resp.status, RequestID: reqID, Duration: time.Since(start)})
		return
	}

	ticket, rej := s.limiter.Begin(c.principal)
	if rej != nil {
		e := newErr(http.StatusTooManyRequests, rej.Code, "%s", rej.Message)
		e.retryAfter = max(1, int((rej.RetryAfter+time.Second-1)/time.Second))
		resp := errorResponse(e)
		s.limitHeaders(c.principal, resp.header)
		writeResponse(w, resp)
		s.record(LoggedRequest{Time: s.now(), Method: r.Method, Path: r.URL.RequestURI(), Route: route, Set: set, Status: resp.status, Caller: c.userID, RequestID: reqID, Duration: time.Since(start), Throttled: true})
		return
	}

	req := &request{
		method: r.Method, path: path, rawQuery: r.URL.RawQuery, query: parseRawQuery(r.URL.RawQuery), header: r.Header,
		body: body, base: baseURL(r) + apiPrefix, caller: c, reqID: reqID, corrID: newGUID(), route: route, set: set,
	}
	var resp *response
	if path == "$batch" {
		resp = s.serveBatch(req)
	} else {
		resp = s.dispatch(req)
	}
	ticket.End(req.cost)
	s.limitHeaders(c.principal, resp.header)
	if resp.header.Get("REQ_ID") == "" {
		resp.header.Set("REQ_ID", reqID)
	}
	s.record(LoggedRequest{Time: s.now(), Method: r.Method, Path: r.URL.RequestURI(), Route: route, Set: set, Status: resp.status, Caller: c.userID, RequestID: reqID, Duration: time.Since(start)})
	if f := s.faults.slowBody(r.Method, set); f > 0 {
		writeSlow(w, resp, f)
		return
	}
	writeResponse(w, resp)
}

func (s *Server) limitHeaders(principal string, h http.Header) {
	s.limiter.Headers(principal, h)
	if h.Get("x-ms-dop-hint") == "" {
		h.Set("x-ms-dop-hint", "4")
	}
}

func errNoResourceResp(r *http.Request) *response {
	return errorResponse(errNoResource(baseURL(r) + r.URL.RequestURI()))
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func writeResponse(w http.ResponseWriter, resp *response) {
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	if len(resp.body) > 0 {
		h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	}
	w.WriteHeader(resp.status)
	if len(resp.body) > 0 {
		_, _ = w.Write(resp.body)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// authenticate maps the bearer token (or, with auth disabled, nothing) to a caller and
// applies the MSCRMCallerID / CallerObjectId impersonation headers.
func (s *Server) authenticate(r *http.Request) (*caller, *apiError) {
	var userID string
	if s.opts.Auth.Disabled {
		userID = s.appUser
	} else {
		h := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, newErr(http.StatusUnauthorized, "", "")
		}
		clientID, ok := s.sts.Validate(strings.TrimSpace(tok))
		if !ok {
			return nil, newErr(http.StatusUnauthorized, "", "")
		}
		userID = s.applicationUser(clientID)
	}
	c := &caller{userID: userID, principal: userID}
	if id := r.Header.Get("MSCRMCallerID"); id != "" {
		id = normGUID(id)
		s.st.mu.RLock()
		_, ok := s.st.data["systemuser"].rows[id]
		s.st.mu.RUnlock()
		if !ok {
			return nil, newErr(http.StatusNotFound, codeObjectDoesNotExist, "Entity 'systemuser' With Id = %s Does Not Exist", id)
		}
		c.userID = id
	} else if oid := r.Header.Get("CallerObjectId"); oid != "" {
		oid = normGUID(oid)
		s.st.mu.RLock()
		td := s.st.data["systemuser"]
		var found string
		for rr := range s.st.index(td, "azureactivedirectoryobjectid")[oid] {
			found = rr.id
		}
		s.st.mu.RUnlock()
		if found == "" {
			return nil, newErr(http.StatusBadRequest, codeObjectDoesNotExist, "The user with AzureActiveDirectoryObjectId = %s does not exist in the organization.", oid)
		}
		c.userID = found
	}
	return c, nil
}

// applicationUser returns (creating on first use) the application user of a client id.
func (s *Server) applicationUser(clientID string) string {
	clientID = normGUID(clientID)
	s.st.mu.RLock()
	td := s.st.data["systemuser"]
	var id string
	for rr := range s.st.index(td, "applicationid")[clientID] {
		id = rr.id
	}
	s.st.mu.RUnlock()
	if id != "" {
		return id
	}
	id, _ = s.Insert("systemuser", map[string]any{
		"applicationid": clientID, "fullname": "# " + clientID, "accessmode": 4,
		"azureactivedirectoryobjectid": newGUID(), "businessunitid": BusinessUnitID,
	})
	return id
}

// routeOf derives a stable route name and entity set for stats and fault rules.
func routeOf(method, path string) (route, set string) {
	segs := splitPath(path)
	if len(segs) == 0 {
		return "/", ""
	}
	first := segs[0]
	name, key, hasKey := cutKey(first)
	set = name
	route = name
	if hasKey {
		_ = key
		route += "({id})"
	}
	for _, sg := range segs[1:] {
		n, _, k := cutKey(sg)
		route += "/" + n
		if k {
			route += "({id})"
		}
	}
	if strings.HasPrefix(name, "WhoAmI") {
		set, route = "WhoAmI", "WhoAmI"
	}
	return route, set
}

// splitPath splits on '/' outside quotes and parentheses, dropping empty
// segments (leading, trailing or doubled slashes).
func splitPath(p string) []string {
	return slices.DeleteFunc(splitTop(p, '/'), func(seg string) bool { return seg == "" })
}

// cutKey splits "contacts(<key>)" into name and key.
func cutKey(seg string) (name, key string, ok bool) {
	i := strings.IndexByte(seg, '(')
	if i < 0 || !strings.HasSuffix(seg, ")") {
		return seg, "", false
	}
	return seg[:i], seg[i+1 : len(seg)-1], true
}

func unescape(s string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}

func bytesTrim(b []byte) []byte { return bytes.TrimSpace(b) }

// parseRawQuery splits on '&' only: OData nests options with ';' inside $expand, which
// url.ParseQuery rejects.
func parseRawQuery(raw string) url.Values {
	v := url.Values{}
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, val, _ := strings.Cut(part, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if uv, err := url.QueryUnescape(val); err == nil {
			val = uv
		}
		v.Add(k, val)
	}
	return v
}
