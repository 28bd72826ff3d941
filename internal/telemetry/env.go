package telemetry

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/net/http/httpproxy"
)

// settings is everything New needs, read from Config and the OTEL_*
// variables. Each field is passed to the SDK explicitly, so what the SDK
// would read from the process environment by itself never wins over getenv.
type settings struct {
	endpoint    string // full URL spans are POSTed to
	headers     map[string]string
	timeout     time.Duration // one export request
	compression otlptracehttp.Compression
	encoding    otlptracehttp.Encoding
	tls         *tls.Config // nil: system roots, no client certificate
	proxy       func(*http.Request) (*url.URL, error)

	sampler sdktrace.Sampler
	limits  sdktrace.SpanLimits
	batch   batchSettings

	serviceName string
	resource    []attribute.KeyValue // OTEL_RESOURCE_ATTRIBUTES, service.name removed
}

type batchSettings struct {
	delay         time.Duration // OTEL_BSP_SCHEDULE_DELAY
	exportTimeout time.Duration // OTEL_BSP_EXPORT_TIMEOUT
	queue         int           // OTEL_BSP_MAX_QUEUE_SIZE
	size          int           // OTEL_BSP_MAX_EXPORT_BATCH_SIZE
}

// The specification's defaults.
const (
	defaultEndpoint      = "http://localhost:4318/v1/traces"
	tracesPath           = "v1/traces"
	defaultTimeout       = 10 * time.Second
	defaultDelay         = 5 * time.Second
	defaultExportTimeout = 30 * time.Second
	defaultQueue         = 2048
	defaultBatch         = 512
)

// env reads variables through the getenv the command passes in.
type env func(string) string

// first returns the first variable of names that is set, with its name; a
// signal-specific name goes before the general one.
func (e env) first(names ...string) (name, value string) {
	for _, n := range names {
		if v := strings.TrimSpace(e(n)); v != "" {
			return n, v
		}
	}
	return names[len(names)-1], ""
}

// disabled reports whether the environment turns tracing off even though the
// configuration turns it on: OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none.
func (e env) disabled() (bool, error) {
	if strings.EqualFold(strings.TrimSpace(e("OTEL_SDK_DISABLED")), "true") {
		return true, nil
	}
	switch v := strings.TrimSpace(e("OTEL_TRACES_EXPORTER")); v {
	case "", "otlp":
		return false, nil
	case "none":
		return true, nil
	default:
		return false, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q: only otlp (OTLP over HTTP) or none is supported", v)
	}
}

func readSettings(cfg Config, e env) (*settings, error) {
	s := &settings{}
	var err error
	if s.endpoint, err = tracesURL(cfg.Endpoint, e); err != nil {
		return nil, err
	}
	if s.headers, err = e.headers(); err != nil {
		return nil, err
	}
	if s.timeout, err = e.millis(defaultTimeout, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"); err != nil {
		return nil, err
	}
	switch n, v := e.first("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"); v {
	case "", "none":
		s.compression = otlptracehttp.NoCompression
	case "gzip":
		s.compression = otlptracehttp.GzipCompression
	default:
		return nil, fmt.Errorf("telemetry: %s=%q: want gzip or none", n, v)
	}
	switch n, v := e.first("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); v {
	case "", "http/protobuf":
		s.encoding = otlptracehttp.EncodingProtobuf
	case "http/json":
		s.encoding = otlptracehttp.EncodingJSON
	default:
		return nil, fmt.Errorf("telemetry: %s=%q: traces are sent over OTLP/HTTP; use http/protobuf (port 4318) or http/json", n, v)
	}
	if s.tls, err = e.tlsConfig(); err != nil {
		return nil, err
	}
	s.proxy = e.proxy()
	if s.sampler, err = e.sampler(); err != nil {
		return nil, err
	}
	if s.limits, err = e.spanLimits(); err != nil {
		return nil, err
	}
	if s.batch, err = e.batch(); err != nil {
		return nil, err
	}
	if s.resource, s.serviceName, err = e.resource(); err != nil {
		return nil, err
	}
	if s.serviceName == "" {
		s.serviceName = cfg.ServiceName
	}
	if s.serviceName == "" {
		s.serviceName = DefaultServiceName
	}
	return s, nil
}

// tracesURL picks where spans go: telemetry.traces.endpoint, else
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, else OTEL_EXPORTER_OTLP_ENDPOINT
// as a base URL, else the specification's default. A configured endpoint
// with no path gets /v1/traces, so both "http://collector:4318" and a full
// traces URL work.
func tracesURL(configured string, e env) (string, error) {
	if configured != "" {
		u, err := parseEndpoint("telemetry.traces.endpoint", configured)
		if err != nil {
			return "", err
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/" + tracesPath
		}
		return u.String(), nil
	}
	if v := strings.TrimSpace(e("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")); v != "" {
		u, err := parseEndpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", v)
		if err != nil {
			return "", err
		}
		if u.Path == "" {
			u.Path = "/"
		}
		return u.String(), nil
	}
	if v := strings.TrimSpace(e("OTEL_EXPORTER_OTLP_ENDPOINT")); v != "" {
		u, err := parseEndpoint("OTEL_EXPORTER_OTLP_ENDPOINT", v)
		if err != nil {
			return "", err
		}
		u.Path = path.Join("/", u.Path, tracesPath)
		return u.String(), nil
	}
	return defaultEndpoint, nil
}

func parseEndpoint(name, v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: not a URL: %w", name, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("telemetry: %s=%q: want an http:// or https:// URL with a host", name, redactURL(u))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("telemetry: %s=%q: a query or fragment is not allowed (headers go in OTEL_EXPORTER_OTLP_HEADERS)", name, redactURL(u))
	}
	return u, nil
}

// redactURL is u for messages: no user information, no query.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery, c.ForceQuery, c.Fragment = "", false, ""
	return c.String()
}

// headers reads OTEL_EXPORTER_OTLP_TRACES_HEADERS, else
// OTEL_EXPORTER_OTLP_HEADERS. Values are often API keys, so no message
// quotes them.
func (e env) headers() (map[string]string, error) {
	n, v := e.first("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
	h := map[string]string{}
	pairs, err := keyValues(n, v)
	if err != nil {
		return nil, err
	}
	for _, p := range pairs {
		if !validHeaderName(p[0]) {
			return nil, fmt.Errorf("telemetry: %s: %q is not a header name", n, p[0])
		}
		h[p[0]] = p[1]
	}
	return h, nil
}

// keyValues parses the specification's list format: key=value pairs
// separated by commas, values percent-encoded. The error names the entry by
// position rather than quoting it.
func keyValues(name, v string) ([][2]string, error) {
	var out [][2]string
	if v == "" {
		return out, nil
	}
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		k, val, ok := strings.Cut(entry, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("telemetry: %s: entry %d is not key=value", name, i+1)
		}
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("telemetry: %s: entry %d (%s): bad percent-encoding", name, i+1, k)
		}
		out = append(out, [2]string{k, dec})
	}
	return out, nil
}

func validHeaderName(k string) bool {
	for _, r := range k {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r) {
			continue
		}
		return false
	}
	return k != ""
}

// millis reads a whole number of milliseconds; 0 is allowed and kept.
func (e env) millis(def time.Duration, names ...string) (time.Duration, error) {
	n, v := e.first(names...)
	if v == "" {
		return def, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 0 {
		return 0, fmt.Errorf("telemetry: %s=%q: want a whole number of milliseconds", n, v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// count reads a positive whole number.
func (e env) count(def int, names ...string) (int, error) {
	n, v := e.first(names...)
	if v == "" {
		return def, nil
	}
	c, err := strconv.Atoi(v)
	if err != nil || c <= 0 {
		return 0, fmt.Errorf("telemetry: %s=%q: want a whole number above 0", n, v)
	}
	return c, nil
}

func (e env) batch() (batchSettings, error) {
	var b batchSettings
	var err error
	if b.delay, err = e.millis(defaultDelay, "OTEL_BSP_SCHEDULE_DELAY"); err != nil {
		return b, err
	}
	if b.exportTimeout, err = e.millis(defaultExportTimeout, "OTEL_BSP_EXPORT_TIMEOUT"); err != nil {
		return b, err
	}
	if b.queue, err = e.count(defaultQueue, "OTEL_BSP_MAX_QUEUE_SIZE"); err != nil {
		return b, err
	}
	if b.size, err = e.count(defaultBatch, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"); err != nil {
		return b, err
	}
	if b.delay == 0 {
		return b, fmt.Errorf("telemetry: OTEL_BSP_SCHEDULE_DELAY=0: want at least 1 millisecond")
	}
	if b.size > b.queue {
		return b, fmt.Errorf("telemetry: OTEL_BSP_MAX_EXPORT_BATCH_SIZE (%d) is larger than OTEL_BSP_MAX_QUEUE_SIZE (%d)", b.size, b.queue)
	}
	return b, nil
}

// sampler follows OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG. The
// default, parentbased_always_on, keeps a caller's decision when there is a
// parent and samples everything else.
func (e env) sampler() (sdktrace.Sampler, error) {
	name := strings.TrimSpace(e("OTEL_TRACES_SAMPLER"))
	arg := strings.TrimSpace(e("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1", arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.TraceIDRatioBased(r), nil
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or their parentbased_ forms", name)
	}
}

// spanLimits reads the OTEL_SPAN_* and OTEL_ATTRIBUTE_* limits; the
// span-specific name wins over the general one.
func (e env) spanLimits() (sdktrace.SpanLimits, error) {
	l := sdktrace.SpanLimits{
		AttributeValueLengthLimit:   sdktrace.DefaultAttributeValueLengthLimit,
		AttributeCountLimit:         sdktrace.DefaultAttributeCountLimit,
		EventCountLimit:             sdktrace.DefaultEventCountLimit,
		LinkCountLimit:              sdktrace.DefaultLinkCountLimit,
		AttributePerEventCountLimit: sdktrace.DefaultAttributePerEventCountLimit,
		AttributePerLinkCountLimit:  sdktrace.DefaultAttributePerLinkCountLimit,
	}
	for _, f := range []struct {
		dst   *int
		names []string
	}{
		{&l.AttributeValueLengthLimit, []string{"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"}},
		{&l.AttributeCountLimit, []string{"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"}},
		{&l.EventCountLimit, []string{"OTEL_SPAN_EVENT_COUNT_LIMIT"}},
		{&l.LinkCountLimit, []string{"OTEL_SPAN_LINK_COUNT_LIMIT"}},
		{&l.AttributePerEventCountLimit, []string{"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT"}},
		{&l.AttributePerLinkCountLimit, []string{"OTEL_LINK_ATTRIBUTE_COUNT_LIMIT"}},
	} {
		n, v := e.first(f.names...)
		if v == "" {
			continue
		}
		c, err := strconv.Atoi(v)
		if err != nil || c < 0 {
			return l, fmt.Errorf("telemetry: %s=%q: want a whole number, 0 or more", n, v)
		}
		*f.dst = c
	}
	return l, nil
}

// resource reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME. The service
// name is returned apart: OTEL_SERVICE_NAME wins over a service.name in the
// attributes, and either wins over Config.ServiceName.
func (e env) resource() ([]attribute.KeyValue, string, error) {
	pairs, err := keyValues("OTEL_RESOURCE_ATTRIBUTES", strings.TrimSpace(e("OTEL_RESOURCE_ATTRIBUTES")))
	if err != nil {
		return nil, "", err
	}
	var attrs []attribute.KeyValue
	var service string
	for _, p := range pairs {
		if p[0] == "service.name" {
			service = p[1]
			continue
		}
		attrs = append(attrs, attribute.String(p[0], p[1]))
	}
	if v := strings.TrimSpace(e("OTEL_SERVICE_NAME")); v != "" {
		service = v
	}
	return attrs, service, nil
}

// tlsConfig reads the CA and client certificate files for an https
// endpoint. nil means the system roots and no client certificate.
func (e env) tlsConfig() (*tls.Config, error) {
	caName, caFile := e.first("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")
	certName, certFile := e.first("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
	keyName, keyFile := e.first("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY")
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("telemetry: %s: %w", caName, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("telemetry: %s=%s: no PEM certificate in the file", caName, caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("telemetry: %s and %s go together: set both or neither", certName, keyName)
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("telemetry: %s and %s: %w", certName, keyName, err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// proxy honours HTTPS_PROXY, HTTP_PROXY and NO_PROXY (either case) through
// getenv, as net/http would through the process environment.
func (e env) proxy() func(*http.Request) (*url.URL, error) {
	pick := func(upper string) string {
		if v := e(upper); v != "" {
			return v
		}
		return e(strings.ToLower(upper))
	}
	pf := (&httpproxy.Config{
		HTTPProxy:  pick("HTTP_PROXY"),
		HTTPSProxy: pick("HTTPS_PROXY"),
		NoProxy:    pick("NO_PROXY"),
	}).ProxyFunc()
	return func(r *http.Request) (*url.URL, error) { return pf(r.URL) }
}
