package dataverse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/go-resty/resty/v2"
)

// Client talks to one Dataverse environment. It is safe for concurrent use
// and meant to live as long as the process: it owns the connection pool, the
// token cache, the concurrency limiter and the pacing state.
type Client struct {
	orgURL  string // https://org.crm.dynamics.com
	apiURL  string // https://org.crm.dynamics.com/api/data/v9.2/
	apiPath string // /api/data/v9.2/
	origin  string // scheme://host of apiURL, to vet next links

	rc     *resty.Client
	tokens *tokenSource // nil: no Authorization header
	log    *slog.Logger
	hooks  Hooks

	timeout       time.Duration
	maxRetries    int
	retryDelay    time.Duration
	maxRetryDelay time.Duration
	logBodies     bool

	sem  *limiter
	pace *pacer

	// Seams for tests: the clock and the wait between attempts.
	now   func() time.Time
	sleep func(context.Context, time.Duration) error
}

// New returns a Client for cfg.URL. cred supplies bearer tokens for the scope
// "<cfg.URL>/.default"; a nil cred sends no Authorization header (local
// emulators with auth disabled). A nil opts means defaults. It fails when the
// URL is not absolute, or is plain http on a non-loopback host.
func New(cfg Config, cred azcore.TokenCredential, opts *Options) (*Client, error) {
	if opts == nil {
		opts = &Options{}
	}
	u, err := url.Parse(strings.TrimSpace(cfg.URL))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("dataverse: new client: organization URL %q must be absolute https", cfg.URL)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("dataverse: new client: plain http is only allowed for loopback hosts, not %q", u.Host)
	}
	org := u.Scheme + "://" + u.Host + strings.TrimRight(u.Path, "/")
	ver := cfg.APIVersion
	if ver == "" {
		ver = defaultAPIVersion
	}
	ver = strings.TrimPrefix(ver, "v")
	hc := opts.HTTPClient
	if hc == nil {
		if hc, err = NewHTTPClient(""); err != nil {
			return nil, err
		}
	}
	c := &Client{
		orgURL:        org,
		apiPath:       strings.TrimRight(u.Path, "/") + "/api/data/v" + ver + "/",
		origin:        u.Scheme + "://" + u.Host,
		log:           opts.Logger,
		hooks:         opts.Hooks,
		timeout:       cfg.Timeout,
		maxRetries:    cfg.MaxRetries,
		retryDelay:    opts.RetryDelay,
		maxRetryDelay: opts.MaxRetryDelay,
		logBodies:     opts.LogBodies,
		now:           time.Now,
		sleep:         sleepCtx,
	}
	c.apiURL = c.origin + c.apiPath
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.timeout <= 0 {
		c.timeout = defaultTimeout
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = defaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.retryDelay <= 0 {
		c.retryDelay = defaultRetryDelay
	}
	if c.maxRetryDelay <= 0 {
		c.maxRetryDelay = defaultMaxRetryDelay
	}
	if cfg.MaxConcurrency > 0 {
		c.sem = newLimiter(cfg.MaxConcurrency, true)
	} else {
		c.sem = newLimiter(defaultConcurrency, false)
	}
	c.pace = newPacer(func() time.Time { return c.now() })
	switch {
	case opts.RateLimitWindow > 0:
		c.pace.window = opts.RateLimitWindow
	case opts.RateLimitWindow < 0:
		c.pace.off = true
	}
	if cred != nil {
		c.tokens = newTokenSource(cred, org+"/.default", func() time.Time { return c.now() })
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = defaultUserAgent
	}
	// Retries, logging and auth are this package's; resty only carries the
	// request over the shared pool.
	c.rc = resty.NewWithClient(hc).
		SetRetryCount(0).
		SetDisableWarn(true).
		SetLogger(discardLogger{}).
		SetRedirectPolicy(resty.NoRedirectPolicy()).
		SetHeaders(map[string]string{
			"Accept":           "application/json",
			"OData-MaxVersion": "4.0",
			"OData-Version":    "4.0",
			"User-Agent":       ua,
		})
	return c, nil
}

// APIURL returns the Web API service root, e.g.
// https://contoso.crm.dynamics.com/api/data/v9.2/ (with the trailing slash).
func (c *Client) APIURL() string { return c.apiURL }

// Concurrency returns the current limit on requests in flight (the
// configured MaxConcurrency, or the latest x-ms-dop-hint).
func (c *Client) Concurrency() int { return c.sem.size() }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// call is one logical request; do runs its attempts.
type call struct {
	op        string // error prefix: "create adx_invitations"
	operation string // hook label: "create"
	set       string
	method    string
	url       string // absolute
	body      []byte
	header    http.Header
	// replayable means repeating the request cannot change the outcome
	// (GET, PUT, DELETE, PATCH, or a request made safe by a client-chosen id).
	// Others are only repeated when the server surely did not run them.
	replayable bool
	// uncertain is set by do when an earlier attempt may have executed
	// (network failure after sending, 502/504), so callers can read a
	// 412/404/duplicate on a later attempt as their own earlier success.
	uncertain bool
	// accept, when set, lets a >= 400 response through as a result (batch
	// responses that carry per-op parts).
	accept func(*response) bool
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (c *Client) newCall(op, operation, set, method, u string) *call {
	// Hooks label by table; a navigation path ("contacts(<id>)/nav") would
	// put ids into metric labels.
	if i := strings.IndexAny(set, "(/"); i >= 0 {
		set = set[:i]
	}
	return &call{op: op, operation: operation, set: set, method: method, url: u, header: http.Header{},
		replayable: method != http.MethodPost}
}

// setJSON marshals body as the request payload.
func (cl *call) setJSON(body any) error {
	b, err := marshalBody(body)
	if err != nil {
		return err
	}
	cl.body = b
	cl.header.Set("Content-Type", "application/json; charset=utf-8")
	return nil
}

// do runs cl with retries and returns the 2xx/304 response, or an error that
// is an *Error (non-success status), the context's error, or a transport
// error, each wrapped with cl.op.
func (c *Client) do(ctx context.Context, cl *call) (*response, error) {
	if cl.method == http.MethodGet && cl.header.Get("If-None-Match") == "" {
		cl.header.Set("If-None-Match", "null")
	}
	for attempt := 1; ; attempt++ {
		resp, err, sent := c.attempt(ctx, cl, attempt)
		if err == nil && (resp.status < 400 || cl.accept != nil && resp.status != http.StatusTooManyRequests &&
			resp.status != http.StatusServiceUnavailable && cl.accept(resp)) {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, wrap(cl.op, ctx.Err())
		}
		var wait time.Duration
		retry := false
		if err != nil { // no HTTP response
			if errors.Is(err, errNoRetry) {
				return nil, wrap(cl.op, err)
			}
			// A request that never left, or one that may be replayed, is
			// safe to send again.
			retry = isNetworkError(err) && (cl.replayable || !sent)
			if retry && sent {
				cl.uncertain = true
			}
			wait = backoff(attempt, c.retryDelay, c.maxRetryDelay)
		} else {
			e := newError(cl.op, resp.status, resp.header, resp.body)
			err = e
			switch resp.status {
			case http.StatusTooManyRequests, http.StatusServiceUnavailable:
				// Service protection and "unavailable" reject the request
				// before running it, so any method may be resent.
				retry = true
				ra, ok := parseRetryAfter(resp.header.Get("Retry-After"), c.now())
				if ok {
					wait = ra
				} else {
					wait = backoff(attempt, c.retryDelay, c.maxRetryDelay)
				}
				if resp.status == http.StatusTooManyRequests {
					c.pace.pause(ra)
					if c.hooks.OnThrottle != nil {
						c.hooks.OnThrottle(c.info(cl, attempt, resp.status, 0, e), ra)
					}
				}
			case http.StatusBadGateway, http.StatusGatewayTimeout:
				// The backend may have run it; only replayable requests go again.
				retry = cl.replayable
				cl.uncertain = cl.uncertain || retry
				wait = backoff(attempt, c.retryDelay, c.maxRetryDelay)
			case http.StatusUnauthorized:
				if c.tokens != nil {
					c.tokens.expire()
				}
			}
		}
		if !retry || attempt > c.maxRetries {
			return nil, wrap(cl.op, err)
		}
		info := c.info(cl, attempt, statusOf(resp), 0, err)
		if c.hooks.OnRetry != nil {
			c.hooks.OnRetry(info, wait)
		}
		if c.hooks.OnWait != nil {
			c.hooks.OnWait(ctx, info, wait)
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "dataverse retry",
			slog.String("op", cl.op), slog.Int("attempt", attempt), slog.Int("status", info.StatusCode),
			slog.Duration("wait", wait), slog.String("error", err.Error()))
		if serr := c.sleep(ctx, wait); serr != nil {
			return nil, wrap(cl.op, serr)
		}
	}
}

var errNoRetry = errors.New("not retried")

func statusOf(r *response) int {
	if r == nil {
		return 0
	}
	return r.status
}

func (c *Client) info(cl *call, attempt, status int, d time.Duration, err error) RequestInfo {
	return RequestInfo{Set: cl.set, Operation: cl.operation, Method: cl.method, StatusCode: status,
		Attempt: attempt, Duration: d, Err: err}
}

// attempt sends cl once. sent reports whether any of the request reached the
// wire (only tracked for non-replayable requests; true otherwise).
func (c *Client) attempt(ctx context.Context, cl *call, attempt int) (resp *response, err error, sent bool) {
	if d := c.pace.delay(); d > 0 {
		if err := c.sleep(ctx, d); err != nil {
			return nil, err, false
		}
	}
	if err := c.sem.acquire(ctx); err != nil {
		return nil, err, false
	}
	defer c.sem.release()

	tok := ""
	if c.tokens != nil {
		if tok, err = c.tokens.token(ctx); err != nil {
			return nil, fmt.Errorf("get token: %w (%w)", err, errNoRetry), false
		}
	}
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var wrote atomic.Bool
	if !cl.replayable {
		actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
			WroteHeaderField: func(string, []string) { wrote.Store(true) },
		})
	} else {
		wrote.Store(true)
	}
	r := c.rc.R().SetContext(actx).SetDoNotParseResponse(true)
	for k, v := range cl.header {
		r.Header[k] = v
	}
	if cl.body != nil {
		r.SetBody(cl.body)
	}
	if tok != "" {
		r.SetAuthToken(tok)
	}
	start := c.now()
	rr, err := r.Execute(cl.method, cl.url)
	var body []byte
	if err == nil {
		body, err = readBody(rr.RawResponse)
	}
	dur := c.now().Sub(start)
	if err != nil {
		// *url.Error quotes the whole URL, filter values and keys included.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redactURL(ue.URL)
		}
		// The attempt timed out but the caller did not: report a timeout.
		if ctx.Err() == nil && actx.Err() != nil {
			err = fmt.Errorf("attempt timed out after %s: %w", c.timeout, context.DeadlineExceeded)
		}
		c.after(ctx, cl, attempt, nil, dur, err)
		return nil, err, wrote.Load() && !isDialError(err)
	}
	resp = &response{status: rr.StatusCode(), header: rr.Header(), body: body}
	c.sem.hint(resp.header.Get(dopHeader))
	c.pace.observe(resp.header, dur)
	c.pace.record(start.Add(dur))
	var herr error
	if resp.status >= 400 {
		herr = newError(cl.op, resp.status, resp.header, resp.body)
	}
	c.after(ctx, cl, attempt, resp, dur, herr)
	return resp, nil, true
}

// isDialError reports a failure to connect, when nothing was sent.
func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// maxResponseBody bounds what one response may hold (large batches and
// 5000-row pages stay far below it).
const maxResponseBody = 256 << 20

// readBody reads the response to the end and closes it, so the connection
// returns to the pool even when the body is an error page.
func readBody(r *http.Response) ([]byte, error) {
	if r == nil || r.Body == nil {
		return nil, nil
	}
	defer r.Body.Close()
	var buf []byte
	if n := r.ContentLength; n > 0 && n <= maxResponseBody {
		buf = make([]byte, 0, n+1)
	}
	buf, err := readAll(io.LimitReader(r.Body, maxResponseBody+1), buf)
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if len(buf) > maxResponseBody {
		return nil, fmt.Errorf("%w: response larger than %d bytes", errNoRetry, maxResponseBody)
	}
	return buf, nil
}

// readAll is io.ReadAll into a caller-sized buffer.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	if b == nil {
		b = make([]byte, 0, 512)
	}
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				return b, nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// after reports an attempt to the hooks and the log.
func (c *Client) after(ctx context.Context, cl *call, attempt int, resp *response, d time.Duration, err error) {
	status := statusOf(resp)
	if c.hooks.OnRequest != nil {
		c.hooks.OnRequest(c.info(cl, attempt, status, d, err))
	}
	if !c.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("op", cl.op),
		slog.String("method", cl.method),
		slog.String("url", redactURL(cl.url)),
		slog.Int("attempt", attempt),
		slog.Int("status", status),
		slog.Duration("duration", d))
	if resp != nil {
		if id := requestID(resp.header); id != "" {
			attrs = append(attrs, slog.String("request_id", id))
		}
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	if c.logBodies {
		attrs = append(attrs, slog.String("request_body", string(cl.body)))
		if resp != nil {
			attrs = append(attrs, slog.String("response_body", string(resp.body)))
		}
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "dataverse request", attrs...)
}

// Query parameters whose values are safe to log; all others (filters, key
// values, tokens, function parameters) are replaced by "REDACTED".
var loggedParams = map[string]bool{"$select": true, "$top": true, "$count": true, "$orderby": true}

// redactURL keeps the path (with quoted key literals masked) and the values
// of allow-listed query parameters.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	var b strings.Builder
	b.WriteString(maskQuoted(u.EscapedPath()))
	if u.RawQuery == "" {
		return b.String()
	}
	b.WriteByte('?')
	for i, kv := range strings.Split(u.RawQuery, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		k, _, _ := strings.Cut(kv, "=")
		name, _ := url.QueryUnescape(k)
		b.WriteString(k)
		b.WriteByte('=')
		if loggedParams[name] {
			_, v, _ := strings.Cut(kv, "=")
			b.WriteString(v)
		} else {
			b.WriteString("REDACTED")
		}
	}
	return b.String()
}

// maskQuoted replaces the contents of '...' (and %27...%27) literals, which
// in key segments may hold e-mail addresses or names.
func maskQuoted(p string) string {
	p = strings.ReplaceAll(p, "%27", "'")
	if !strings.Contains(p, "'") {
		return p
	}
	var b strings.Builder
	in := false
	for i := 0; i < len(p); i++ {
		ch := p[i]
		if ch == '\'' {
			if in && i+1 < len(p) && p[i+1] == '\'' { // escaped quote
				i++
				continue
			}
			if !in {
				b.WriteString("'***")
			} else {
				b.WriteByte('\'')
			}
			in = !in
			continue
		}
		if !in {
			b.WriteByte(ch)
		}
	}
	return b.String()
}

// discardLogger silences resty's own logger; this package logs via slog.
type discardLogger struct{}

func (discardLogger) Errorf(string, ...any) {}
func (discardLogger) Warnf(string, ...any)  {}
func (discardLogger) Debugf(string, ...any) {}
