package emulator

import (
	"encoding/json"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

var guidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func isGUID(s string) bool { return len(s) == 36 && guidRe.MatchString(s) }

// normGUID lower-cases a GUID and strips braces.
func normGUID(s string) string {
	return strings.ToLower(strings.Trim(strings.TrimSpace(s), "{}"))
}

// convertIn turns a JSON value from a request body into the stored representation.
func convertIn(t *table, c *Column, v any) (any, *apiError) {
	if v == nil {
		return nil, nil
	}
	bad := func() *apiError {
		return newErr(http.StatusBadRequest, codePayload,
			"Error identified in Payload provided by the user for Entity :'%s'  ---->  InnerException : Microsoft.OData.ODataException: Cannot convert the literal '%v' to the expected type 'Edm.%s'.",
			t.set, v, edmType(c))
	}
	switch c.Type {
	case TypeString, TypeMemo:
		s, ok := v.(string)
		if !ok {
			return nil, bad()
		}
		if s == "" {
			return nil, nil // Dataverse stores empty strings as null
		}
		if c.MaxLength > 0 && utf8.RuneCountInString(s) > c.MaxLength {
			return nil, newErr(http.StatusBadRequest, codeValidation,
				"A validation error occurred.  The length of the '%s' attribute of the '%s' entity exceeded the maximum allowed length of '%d'.",
				c.Name, t.logical, c.MaxLength)
		}
		return s, nil
	case TypeUniqueIdentifier:
		s, ok := v.(string)
		if !ok || !isGUID(normGUID(s)) {
			return nil, bad()
		}
		return normGUID(s), nil
	case TypeInteger, TypePicklist, TypeState, TypeStatus:
		n, ok := toInt64(v)
		if !ok || n > math.MaxInt32 || n < math.MinInt32 {
			return nil, bad()
		}
		if c.Options != nil && (c.Type == TypePicklist || c.Type == TypeState || c.Type == TypeStatus) {
			if _, ok := c.Options[int(n)]; !ok {
				return nil, newErr(http.StatusBadRequest, codeValidation,
					"A validation error occurred.  The value %d of '%s' on record of type '%s' is outside the valid range. Accepted Values: %s",
					n, c.Name, t.logical, acceptedValues(c.Options))
			}
		}
		return int(n), nil
	case TypeBigInt:
		n, ok := toInt64(v)
		if !ok {
			return nil, bad()
		}
		return n, nil
	case TypeBoolean:
		b, ok := v.(bool)
		if !ok {
			return nil, bad()
		}
		return b, nil
	case TypeDecimal, TypeDouble, TypeMoney:
		switch x := v.(type) {
		case json.Number:
			f, err := x.Float64()
			if err != nil {
				return nil, bad()
			}
			return f, nil
		case float64:
			return x, nil
		}
		return nil, bad()
	case TypeDateTime, TypeDateOnly:
		s, ok := v.(string)
		if !ok {
			return nil, bad()
		}
		tm, ok := parseDateTime(s)
		if !ok {
			return nil, bad()
		}
		if c.Type == TypeDateOnly {
			tm = time.Date(tm.Year(), tm.Month(), tm.Day(), 0, 0, 0, 0, time.UTC)
		}
		return tm, nil
	}
	return nil, bad()
}

func acceptedValues(opts map[int]string) string {
	ks := sortedKeys(opts)
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = strconv.Itoa(k)
	}
	return strings.Join(parts, ",")
}

func edmType(c *Column) string {
	switch c.Type {
	case TypeString, TypeMemo:
		return "String"
	case TypeUniqueIdentifier, TypeLookup:
		return "Guid"
	case TypeInteger, TypePicklist, TypeState, TypeStatus:
		return "Int32"
	case TypeBigInt:
		return "Int64"
	case TypeBoolean:
		return "Boolean"
	case TypeDecimal, TypeMoney:
		return "Decimal"
	case TypeDouble:
		return "Double"
	case TypeDateOnly:
		return "Date"
	}
	return "DateTimeOffset"
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	case float64:
		if x != math.Trunc(x) {
			return 0, false
		}
		return int64(x), true
	case int:
		return int64(x), true
	case int64:
		return x, true
	case int32:
		return int64(x), true
	}
	return 0, false
}

func parseDateTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if tm, err := time.Parse(layout, s); err == nil {
			return tm.UTC(), true
		}
	}
	return time.Time{}, false
}

// jsonValue is the Web API representation of a stored value.
func jsonValue(c *Column, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case time.Time:
		if c != nil && c.Type == TypeDateOnly {
			return x.UTC().Format("2006-01-02")
		}
		return x.UTC().Format("2006-01-02T15:04:05Z")
	case ref:
		return x.id
	}
	return v
}

// formatted is the OData.Community.Display.V1.FormattedValue of a stored value ("" = none).
func formatted(c *Column, v any) (string, bool) {
	if v == nil {
		return "", false
	}
	switch c.Type {
	case TypePicklist, TypeState, TypeStatus:
		if l, ok := c.Options[v.(int)]; ok {
			return l, true
		}
		return strconv.Itoa(v.(int)), true
	case TypeBoolean:
		i, def := 0, "No"
		if v.(bool) {
			i, def = 1, "Yes"
		}
		if c.boolLabels[i] != "" {
			return c.boolLabels[i], true
		}
		return def, true
	case TypeInteger:
		return groupDigits(int64(v.(int))), true
	case TypeBigInt:
		return groupDigits(v.(int64)), true
	case TypeDateTime:
		return v.(time.Time).UTC().Format("1/2/2006 3:04 PM"), true
	case TypeDateOnly:
		return v.(time.Time).UTC().Format("1/2/2006"), true
	case TypeMoney:
		return "$" + strconv.FormatFloat(v.(float64), 'f', 2, 64), true
	case TypeDecimal, TypeDouble:
		return strconv.FormatFloat(v.(float64), 'f', -1, 64), true
	}
	return "", false
}

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// obj is a JSON object that keeps its key order (Dataverse puts @odata.etag first).
type obj struct {
	keys []string
	vals []any
}

func (o *obj) set(k string, v any) {
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

func (o *obj) get(k string) (any, bool) {
	for i, kk := range o.keys {
		if kk == k {
			return o.vals[i], true
		}
	}
	return nil, false
}

func (o *obj) MarshalJSON() ([]byte, error) { return appendJSON(nil, o), nil }

// appendJSON encodes the small set of value types the emulator produces.
func appendJSON(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendJSONString(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case float64:
		return strconv.AppendFloat(b, x, 'f', -1, 64)
	case json.Number:
		return append(b, x...)
	case json.RawMessage:
		return append(b, x...)
	case *obj:
		b = append(b, '{')
		for i, k := range x.keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSON(b, x.vals[i])
		}
		return append(b, '}')
	case []*obj:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, e)
		}
		return append(b, ']')
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, e)
		}
		return append(b, ']')
	case map[string]any:
		ks := make([]string, 0, len(x))
		for k := range x {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		o := &obj{}
		for _, k := range ks {
			o.set(k, x[k])
		}
		return appendJSON(b, o)
	case time.Time:
		return appendJSONString(b, x.UTC().Format("2006-01-02T15:04:05Z"))
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, raw...)
}

const hexDigits = "0123456789abcdef"

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
