package telemetry

import (
	"context"
	"net/url"
	"regexp"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Rule says what values an allowed attribute key may carry. A value that
// does not fit its rule is dropped, so an allowed key still cannot carry a
// code, a token or an email address by accident.
type Rule int

const (
	// Number allows integers, floats and booleans only.
	Number Rule = iota + 1
	// Name allows a short identifier: letters, digits and _ . - : / * (at
	// most 64), such as a table name, a status or an error class (a Go type
	// such as *url.Error). No @, no spaces, nothing long.
	Name
	// ID allows a GUID only (a Dataverse record id).
	ID
	// Path allows a URL path, kept as its pattern (see PathPattern).
	Path
	// URL allows an absolute URL, kept as scheme, host and path pattern:
	// no user information, query or fragment.
	URL
)

// Attribute keys the connector sets beyond the semantic conventions.
const (
	KeyCorrelationID = attribute.Key("dataverse.correlation_request_id") // ID; see WebhookAttributes
	KeyEntity        = attribute.Key("dataverse.entity")                 // Name: table logical name
	KeyMessage       = attribute.Key("dataverse.message")                // Name: Create, Update, ...
	KeyContactID     = attribute.Key("connector.contact.id")             // ID
	KeyInvitationID  = attribute.Key("connector.invitation.id")          // ID
	KeyEmailID       = attribute.Key("connector.email.id")               // ID: the email activity
	KeyPortal        = attribute.Key("connector.portal")                 // Name: portal key from the config
	KeyOutcome       = attribute.Key("connector.outcome")                // Name: what the step ended with
	KeyChannel       = attribute.Key("connector.delivery.channel")       // Name: dataverse or smtp
	KeyRetryWaitMS   = attribute.Key("connector.retry.wait_ms")          // Number: the wait before a retry
	KeyRetryAfter    = attribute.Key("http.response.header.retry-after") // Name, per value
	KeyAttempt       = attribute.Key("connector.attempt")                // Number: 1 for a queued request's first try
	KeySource        = attribute.Key("connector.source")                 // Name: webhook, poll, api, cli
	KeyKind          = attribute.Key("connector.kind")                   // Name: invite, delivery, email
)

// DefaultRules is the allow-list: the semantic-convention keys the
// connector's instrumentation and its libraries set that cannot carry a
// secret once their rule applies, and the connector's own keys. Anything
// else (url.query, db.query.text, exception.message, client.address,
// http.request.header.*, an invitation code, a password, an email body) is
// dropped. Add a key only after checking where its values come from.
func DefaultRules() map[attribute.Key]Rule {
	return map[attribute.Key]Rule{
		semconv.HTTPRequestMethodKey:          Name,
		semconv.HTTPResponseStatusCodeKey:     Number,
		semconv.HTTPRouteKey:                  Path,
		semconv.HTTPRequestResendCountKey:     Number,
		semconv.URLPathKey:                    Path,
		semconv.URLFullKey:                    URL,
		semconv.URLSchemeKey:                  Name,
		semconv.ServerAddressKey:              Name,
		semconv.ServerPortKey:                 Number,
		semconv.NetworkProtocolVersionKey:     Name,
		semconv.ErrorTypeKey:                  Name,
		semconv.ExceptionTypeKey:              Name,
		semconv.MessagingSystemKey:            Name,
		semconv.MessagingOperationNameKey:     Name,
		semconv.MessagingOperationTypeKey:     Name,
		semconv.MessagingDestinationNameKey:   Name,
		semconv.MessagingConsumerGroupNameKey: Name,
		semconv.MessagingMessageIDKey:         Name,
		semconv.MessagingBatchMessageCountKey: Number,
		semconv.DBSystemNameKey:               Name,
		semconv.DBOperationNameKey:            Name,
		KeyCorrelationID:                      ID,
		KeyEntity:                             Name,
		KeyMessage:                            Name,
		KeyContactID:                          ID,
		KeyInvitationID:                       ID,
		KeyEmailID:                            ID,
		KeyPortal:                             Name,
		KeyOutcome:                            Name,
		KeyChannel:                            Name,
		KeyRetryWaitMS:                        Number,
		KeyRetryAfter:                         Name,
		KeyAttempt:                            Number,
		KeySource:                             Name,
		KeyKind:                               Name,
		semconv.HTTPResponseBodySizeKey:       Number,
	}
}

// Sanitizer keeps the attributes its rules allow, in the form they allow.
type Sanitizer struct {
	rules map[attribute.Key]Rule
}

// NewSanitizer returns a sanitizer for rules (copied).
func NewSanitizer(rules map[attribute.Key]Rule) *Sanitizer {
	s := &Sanitizer{rules: make(map[attribute.Key]Rule, len(rules))}
	for k, r := range rules {
		s.rules[k] = r
	}
	return s
}

// Attributes returns the allowed attributes of in, each value in its
// allowed form. in is not modified.
func (s *Sanitizer) Attributes(in []attribute.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(in))
	for _, kv := range in {
		if v, ok := s.value(kv); ok {
			out = append(out, attribute.KeyValue{Key: kv.Key, Value: v})
		}
	}
	return out
}

func (s *Sanitizer) value(kv attribute.KeyValue) (attribute.Value, bool) {
	rule, ok := s.rules[kv.Key]
	if !ok {
		return attribute.Value{}, false
	}
	v := kv.Value
	switch v.Type() {
	case attribute.BOOL, attribute.INT64, attribute.FLOAT64:
		return v, rule == Number
	case attribute.STRING:
		str, ok := cleanString(rule, v.AsString())
		return attribute.StringValue(str), ok
	case attribute.STRINGSLICE:
		var kept []string
		for _, e := range v.AsStringSlice() {
			if str, ok := cleanString(rule, e); ok {
				kept = append(kept, str)
			}
		}
		return attribute.StringSliceValue(kept), len(kept) > 0
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE:
		return v, rule == Number
	default:
		return attribute.Value{}, false
	}
}

var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9_.:/*-]{1,64}$`)
	guidPattern = regexp.MustCompile(`^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$`)
	guidAny     = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
)

func cleanString(rule Rule, v string) (string, bool) {
	switch rule {
	case Name:
		return v, namePattern.MatchString(v)
	case ID:
		if !guidPattern.MatchString(v) {
			return "", false
		}
		return strings.ToLower(strings.Trim(v, "{}")), true
	case Path:
		if v == "" {
			return "", false
		}
		return PathPattern(v), true
	case URL:
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return "", false
		}
		return u.Scheme + "://" + u.Host + PathPattern(u.EscapedPath()), true
	default:
		return "", false
	}
}

// PathPattern is path as a span may show it: the query and fragment cut
// off, each GUID replaced by {id} (so contacts(<guid>) becomes
// contacts({id})), any other key or parameters in parentheses by {key}
// (an alternate key such as emailaddress1='…'), and a segment that holds an
// @, a percent-escape or a token-like run (16 or more letters, digits, _
// and -, with both letters and digits) by {key} or {token}. Routes and
// table names come through as they are.
func PathPattern(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if !strings.ContainsAny(p, "(-@%'\"") && len(p) < 16 {
		return p // nothing to replace: the common short route
	}
	var b strings.Builder
	b.Grow(len(p))
	for i, seg := range strings.Split(p, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(segmentPattern(seg))
	}
	return b.String()
}

func segmentPattern(seg string) string {
	if seg == "" {
		return seg
	}
	if open := strings.IndexByte(seg, '('); open >= 0 {
		// name(key) or name(key)/...: keep the name, replace the key.
		end := strings.LastIndexByte(seg, ')')
		if end < open {
			end = len(seg)
		}
		head, inner := seg[:open], seg[open+1:end]
		if end == len(seg) {
			return segmentPattern(head) + "({key}"
		}
		tail := seg[end+1:]
		switch {
		case inner == "":
			return segmentPattern(head) + "()" + segmentPattern(tail)
		case guidPattern.MatchString(inner) || inner == "{id}":
			return segmentPattern(head) + "({id})" + segmentPattern(tail)
		default:
			return segmentPattern(head) + "({key})" + segmentPattern(tail)
		}
	}
	switch {
	case guidPattern.MatchString(seg):
		return "{id}"
	case strings.ContainsAny(seg, "@%'\""):
		return "{key}"
	case tokenLike(seg):
		return "{token}"
	case guidAny.MatchString(seg):
		return guidAny.ReplaceAllString(seg, "{id}")
	}
	return seg
}

func tokenLike(seg string) bool {
	if len(seg) < 16 {
		return false
	}
	var letter, digit bool
	for _, r := range seg {
		switch {
		case r >= '0' && r <= '9':
			digit = true
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			letter = true
		case r == '_' || r == '-':
		default:
			return false
		}
	}
	return letter && digit
}

// SpanName is a span or event name as it may leave the process: cut at the
// first ? or #, and each space-separated word through PathPattern, so
// "GET /contacts(<guid>)?$filter=…" becomes "GET /contacts({id})" and
// "mail to ann@example.com" becomes "mail to {key}".
func (s *Sanitizer) SpanName(name string) string {
	if !strings.ContainsAny(name, "/?#@%'(-\"") && len(name) < 16 {
		return name
	}
	if i := strings.IndexAny(name, "?#"); i >= 0 {
		name = name[:i]
	}
	words := strings.Split(name, " ")
	for i, w := range words {
		words[i] = PathPattern(w)
	}
	return strings.Join(words, " ")
}

// SanitizeExporter wraps exp so spans reach it with only allowed attributes
// (on the span, its events and its links), a sanitized name and no status
// description: error text is free text (an OData message can quote the
// email address that failed), so the class goes in error.type instead.
// Resource attributes are the operator's and pass as they are.
func SanitizeExporter(exp sdktrace.SpanExporter, s *Sanitizer) sdktrace.SpanExporter {
	return &sanitizingExporter{next: exp, s: s}
}

type sanitizingExporter struct {
	next sdktrace.SpanExporter
	s    *Sanitizer
}

func (e *sanitizingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, sp := range spans {
		out[i] = e.s.span(sp)
	}
	return e.next.ExportSpans(ctx, out)
}

func (e *sanitizingExporter) Shutdown(ctx context.Context) error { return e.next.Shutdown(ctx) }

func (s *Sanitizer) span(sp sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
	c := &cleanSpan{ReadOnlySpan: sp, name: s.SpanName(sp.Name()), attrs: s.Attributes(sp.Attributes())}
	if ev := sp.Events(); len(ev) > 0 {
		c.events = make([]sdktrace.Event, len(ev))
		for i, e := range ev {
			e.Name = s.SpanName(e.Name)
			e.Attributes = s.Attributes(e.Attributes)
			c.events[i] = e
		}
	}
	if ls := sp.Links(); len(ls) > 0 {
		c.links = make([]sdktrace.Link, len(ls))
		for i, l := range ls {
			l.Attributes = s.Attributes(l.Attributes)
			c.links[i] = l
		}
	}
	c.status = sdktrace.Status{Code: sp.Status().Code}
	return c
}

// cleanSpan is a span with its sanitized parts; everything else (ids,
// times, kind, resource, scope) comes from the span it wraps.
type cleanSpan struct {
	sdktrace.ReadOnlySpan
	name   string
	attrs  []attribute.KeyValue
	events []sdktrace.Event
	links  []sdktrace.Link
	status sdktrace.Status
}

func (c *cleanSpan) Name() string                     { return c.name }
func (c *cleanSpan) Attributes() []attribute.KeyValue { return c.attrs }
func (c *cleanSpan) Events() []sdktrace.Event         { return c.events }
func (c *cleanSpan) Links() []sdktrace.Link           { return c.links }
func (c *cleanSpan) Status() sdktrace.Status          { return c.status }
