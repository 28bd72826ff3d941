package dataverse

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Record is one row as the Web API returns it: column values plus OData
// annotations ("@odata.etag", "name@OData.Community.Display.V1.FormattedValue").
// Numbers decode as float64, as encoding/json does.
type Record map[string]any

// Str returns the column as a string ("" when absent, null or not a string).
func (r Record) Str(k string) string {
	s, _ := r[k].(string)
	return s
}

// Int returns the column as an int (0 when absent or not a number).
func (r Record) Int(k string) int {
	switch v := r[k].(type) {
	case float64:
		return int(v)
	case int:
		return v
	case int64:
		return int(v)
	case json.Number:
		n, _ := v.Int64()
		return int(n)
	case string: // BigInt columns sometimes arrive quoted
		n, _ := strconv.Atoi(v)
		return n
	}
	return 0
}

// Float returns the column as a float64 (0 when absent or not a number).
func (r Record) Float(k string) float64 {
	switch v := r[k].(type) {
	case float64:
		return v
	case int:
		return float64(v)
	case json.Number:
		f, _ := v.Float64()
		return f
	}
	return 0
}

// Bool returns the column as a bool (false when absent or not a bool).
func (r Record) Bool(k string) bool {
	b, _ := r[k].(bool)
	return b
}

// Time returns the column parsed as an ISO-8601 date or date-time (zero when
// absent or unparsable). Date-only values are midnight UTC.
func (r Record) Time(k string) time.Time {
	s, _ := r[k].(string)
	if s == "" {
		return time.Time{}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// ETag returns the row version (@odata.etag), to pass back in If-Match.
func (r Record) ETag() string { return r.Str("@odata.etag") }

// ID returns the primary key column pk, e.g. rec.ID("contactid").
func (r Record) ID(pk string) string { return r.Str(pk) }

// FormattedValue returns the display label Dataverse sent for column k (needs
// Query.Annotations).
func (r Record) FormattedValue(k string) string {
	return r.Str(k + "@OData.Community.Display.V1.FormattedValue")
}

// WriteOptions tunes Create, Update, Upsert and Delete. A nil *WriteOptions
// means defaults.
type WriteOptions struct {
	Return      bool        // Prefer: return=representation, so the written row comes back; default false
	Select      []string    // columns of the returned row (with Return)
	IfMatch     string      // ETag or "*"; Update defaults to "*" (update only, never create); Delete: optimistic concurrency
	IfNoneMatch string      // "*" makes Upsert create-only (412 when the row exists)
	Headers     http.Header // extra request headers, e.g. MSCRMCallerID, CallerObjectId, MSCRM.BypassCustomPluginExecution
	// ID is the primary key Create gives the new row; "" means the client
	// generates one. See "Creating safely" in the package doc.
	ID string
	// IDColumn is the table's primary key column (e.g. "contactid"). When set,
	// Create POSTs the body with IDColumn=ID instead of a create-only upsert;
	// use it for deep inserts and tables without upsert.
	IDColumn string
}

// Query holds the OData system query options for Query, QueryPage, Retrieve
// and RetrieveByKey.
type Query struct {
	Select      []string // $select; always set it
	Filter      string   // $filter, raw OData, e.g. "statecode eq 0 and contains(fullname,'a')"; see Quote
	OrderBy     []string // $orderby items, e.g. "createdon desc"
	Top         int      // $top; when set PageSize is not sent (Dataverse ignores $top under odata.maxpagesize)
	Expand      []string // raw $expand items: "adx_invitation_webrole($select=adx_name)"
	Count       bool     // $count=true; Page.Count holds the total (capped at 5000 by Dataverse)
	PageSize    int      // Prefer: odata.maxpagesize (Dataverse caps it at 5000); 0 = server default (5000)
	Annotations string   // Prefer: odata.include-annotations="<value>", "*" for all
}

// Page is one page of a query.
type Page struct {
	Records  []Record
	NextLink string // "" on the last page
	Count    int    // @odata.count, -1 when not requested
}

// Key is an alternate key: column → value. Strings are quoted with embedded
// quotes doubled, other values are written as OData literals.
type Key map[string]any

// EntityRef names a row for bound actions and functions.
type EntityRef struct{ Set, ID string }

// WhoAmIResponse is the answer of the WhoAmI function.
type WhoAmIResponse struct {
	UserID         string `json:"UserId"`
	BusinessUnitID string `json:"BusinessUnitId"`
	OrganizationID string `json:"OrganizationId"`
}

// Literal is a function parameter or key value written verbatim into the
// URL (e.g. a GUID, an enum "Microsoft.Dynamics.CRM.EntityFilters'Entity'").
type Literal string

// Quote returns s as an OData string literal: wrapped in single quotes,
// embedded quotes doubled. Use it when building $filter expressions from
// data.
func Quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// NewGUID returns a random (version 4) GUID in Dataverse's lowercase form.
func NewGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// marshalBody turns a request body into JSON: []byte and json.RawMessage pass
// through, nil becomes "{}".
func marshalBody(body any) ([]byte, error) {
	switch v := body.(type) {
	case nil:
		return []byte("{}"), nil
	case []byte:
		return v, nil
	case json.RawMessage:
		return v, nil
	case string:
		return []byte(v), nil
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode body: %w", err)
	}
	return b, nil
}

// keyLiteral renders a key or function parameter value as an OData literal.
func keyLiteral(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "null", nil
	case Literal:
		return string(x), nil
	case string:
		return Quote(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", fmt.Errorf("cannot encode %v", x)
		}
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case time.Time:
		return x.UTC().Format(time.RFC3339), nil
	}
	// Complex values (entity references, arrays) go as JSON, which the
	// Web API accepts for parameter aliases.
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// escapeSegment escapes a literal for a path segment, keeping the OData
// punctuation readable ('(),=) while encoding everything a server could
// misread (/ ? # % spaces and non-ASCII).
func escapeSegment(s string) string { return escape(s, "-_.~'(),=:@!*$+;") }

// escapePath is escapeSegment keeping '/', for navigation paths.
func escapePath(s string) string { return escape(s, "-_.~'(),=:@!*$+;/") }

// escapeQueryValue escapes a query option value: ; & + # % and spaces are
// encoded (Go servers refuse raw ';', '+' would read as a space).
func escapeQueryValue(s string) string { return escape(s, "-_.~'(),=:@!*$/") }

func escape(s, keep string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i], keep) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if unreserved(ch, keep) {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexd[ch>>4])
		b.WriteByte(hexd[ch&15])
	}
	return b.String()
}

func unreserved(ch byte, keep string) bool {
	return 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || strings.IndexByte(keep, ch) >= 0
}

// entityPath is "<set>(<id>)".
func entityPath(set, id string) string {
	return escapeSegment(set) + "(" + escapeSegment(strings.Trim(id, "{}")) + ")"
}

// keyPath is "<set>(k1='x',k2=5)" with the keys in sorted order.
func keyPath(set string, key Key) (string, error) {
	if len(key) == 0 {
		return "", fmt.Errorf("empty key")
	}
	names := make([]string, 0, len(key))
	for k := range key {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(escapeSegment(set))
	b.WriteByte('(')
	for i, k := range names {
		lit, err := keyLiteral(key[k])
		if err != nil {
			return "", fmt.Errorf("key %s: %w", k, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(escapeSegment(k))
		b.WriteByte('=')
		b.WriteString(escapeSegment(lit))
	}
	b.WriteByte(')')
	return b.String(), nil
}

// encode renders the query options in a stable order.
func (q *Query) encode() string {
	if q == nil {
		return ""
	}
	var b strings.Builder
	add := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(escapeQueryValue(v))
	}
	if len(q.Select) > 0 {
		add("$select", strings.Join(q.Select, ","))
	}
	if q.Filter != "" {
		add("$filter", q.Filter)
	}
	if len(q.OrderBy) > 0 {
		add("$orderby", strings.Join(q.OrderBy, ","))
	}
	if q.Top > 0 {
		add("$top", strconv.Itoa(q.Top))
	}
	if len(q.Expand) > 0 {
		add("$expand", strings.Join(q.Expand, ","))
	}
	if q.Count {
		add("$count", "true")
	}
	return b.String()
}

// prefer renders the Prefer header for reads.
func (q *Query) prefer() string {
	if q == nil {
		return ""
	}
	var parts []string
	if q.PageSize > 0 && q.Top == 0 {
		parts = append(parts, "odata.maxpagesize="+strconv.Itoa(min(q.PageSize, 5000)))
	}
	if q.Annotations != "" {
		parts = append(parts, `odata.include-annotations="`+q.Annotations+`"`)
	}
	return strings.Join(parts, ",")
}

// guidFromEntityID pulls the id out of an OData-EntityId / Location value
// like https://org/api/data/v9.2/contacts(00000000-...) . Alternate-key URIs
// (contacts(emailaddress1='x')) return the key text.
func guidFromEntityID(v string) string {
	i := strings.LastIndexByte(v, '(')
	j := strings.LastIndexByte(v, ')')
	if i < 0 || j <= i {
		return ""
	}
	id := v[i+1 : j]
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	return id
}

var nullJSON = []byte("null")

func isEmptyBody(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || bytes.Equal(b, nullJSON)
}
