package sync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// RemoteExecutionContext is what a Dataverse webhook posts: the serialized
// Microsoft.Xrm.Sdk.RemoteExecutionContext of the step that fired, decoded
// from its DataContract JSON (key/value arrays, "__type" tags, "/Date(ms)/"
// dates). Only the parts the connector may use are kept; unknown keys are
// ignored.
type RemoteExecutionContext struct {
	MessageName         string // Create, Update, ...
	PrimaryEntityName   string // table logical name, e.g. "contact"
	PrimaryEntityID     string // lowercase GUID, "" when absent
	SecondaryEntityName string
	CorrelationID       string
	OperationID         string
	RequestID           string
	InitiatingUserID    string // the user who caused the event (systemuserid)
	UserID              string // the user the step ran as
	BusinessUnitID      string
	OrganizationID      string
	OrganizationName    string
	Depth               int
	Mode                int // 0 synchronous, 1 asynchronous
	Stage               int // 40 post-operation
	IsolationMode       int
	IsExecutingOffline  bool
	IsInTransaction     bool
	IsOfflinePlayback   bool
	OperationCreatedOn  time.Time
	InputParameters     map[string]any
	OutputParameters    map[string]any
	SharedVariables     map[string]any
	PreEntityImages     map[string]*Entity
	PostEntityImages    map[string]*Entity
	OwningExtension     *EntityReference // the sdkmessageprocessingstep
	ParentContext       *RemoteExecutionContext
}

// Entity is an Entity value: a table row with (some of) its attributes.
// Attribute values are string, bool, int64, float64, time.Time,
// EntityReference, OptionSetValue, Money, *Entity, []any, map[string]any (an
// unrecognised object) or nil.
type Entity struct {
	LogicalName     string
	ID              string
	Attributes      map[string]any
	FormattedValues map[string]string
	KeyAttributes   map[string]any
	RowVersion      string
}

// EntityReference is a lookup value.
type EntityReference struct {
	LogicalName string
	ID          string
	Name        string
}

// OptionSetValue is a choice (picklist, state, status) value.
type OptionSetValue struct{ Value int }

// Money is a currency value.
type Money struct{ Value float64 }

// Target returns InputParameters["Target"] when it is an Entity (Create,
// Update), else nil.
func (c *RemoteExecutionContext) Target() *Entity {
	if c == nil {
		return nil
	}
	e, _ := c.InputParameters["Target"].(*Entity)
	return e
}

// Attr returns the named attribute and whether the entity carries it.
func (e *Entity) Attr(name string) (any, bool) {
	if e == nil {
		return nil, false
	}
	v, ok := e.Attributes[name]
	return v, ok
}

// maxNesting bounds recursion through nested values and parent contexts, so
// a hostile body cannot exhaust the stack.
const maxNesting = 32

// ParseError says why a webhook body is not a RemoteExecutionContext.
type ParseError struct {
	Path string // where in the document, e.g. "InputParameters[0].value.Attributes[2]"
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Path == "" {
		return "parse execution context: " + e.Msg
	}
	return "parse execution context: " + e.Path + ": " + e.Msg
}

func perr(path, format string, args ...any) error {
	return &ParseError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// ParseContext decodes a webhook body. It is strict about the shape of the
// parts it reads (collections must be key/value lists, ids GUIDs, dates
// "/Date(ms)/") and lenient about everything else: unknown keys, unknown
// "__type" tags, key case, and JSON objects where a key/value list is
// expected. Errors are *ParseError.
func ParseContext(data []byte) (*RemoteExecutionContext, error) {
	// Dataverse sends UTF-8; Go's decoder would silently turn invalid bytes
	// into U+FFFD and let a forged or corrupted body through.
	if !utf8.Valid(data) {
		return nil, perr("", "body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, perr("", "invalid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, perr("", "unexpected data after the JSON object")
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, perr("", "body is %s, want a JSON object", kind(raw))
	}
	return parseContext(obj, "", 0)
}

func parseContext(obj map[string]any, path string, depth int) (*RemoteExecutionContext, error) {
	if depth > 4 {
		return nil, perr(path, "ParentContext nested too deep")
	}
	c := &RemoteExecutionContext{}
	var err error
	for k, v := range obj {
		p := join(path, k)
		switch strings.ToLower(k) {
		case "messagename":
			c.MessageName, err = str(p, v)
		case "primaryentityname":
			c.PrimaryEntityName, err = str(p, v)
		case "primaryentityid":
			c.PrimaryEntityID, err = guid(p, v)
		case "secondaryentityname":
			c.SecondaryEntityName, err = str(p, v)
		case "correlationid":
			c.CorrelationID, err = str(p, v)
		case "operationid":
			c.OperationID, err = str(p, v)
		case "requestid":
			c.RequestID, err = str(p, v)
		case "initiatinguserid":
			c.InitiatingUserID, err = guid(p, v)
		case "userid":
			c.UserID, err = guid(p, v)
		case "businessunitid":
			c.BusinessUnitID, err = str(p, v)
		case "organizationid":
			c.OrganizationID, err = str(p, v)
		case "organizationname":
			c.OrganizationName, err = str(p, v)
		case "depth":
			c.Depth, err = integer(p, v)
		case "mode":
			c.Mode, err = integer(p, v)
		case "stage":
			c.Stage, err = integer(p, v)
		case "isolationmode":
			c.IsolationMode, err = integer(p, v)
		case "isexecutingoffline":
			c.IsExecutingOffline, err = boolean(p, v)
		case "isintransaction":
			c.IsInTransaction, err = boolean(p, v)
		case "isofflineplayback":
			c.IsOfflinePlayback, err = boolean(p, v)
		case "operationcreatedon":
			c.OperationCreatedOn, err = date(p, v)
		case "inputparameters":
			c.InputParameters, err = collection(p, v, depth)
		case "outputparameters":
			c.OutputParameters, err = collection(p, v, depth)
		case "sharedvariables":
			c.SharedVariables, err = collection(p, v, depth)
		case "preentityimages":
			c.PreEntityImages, err = images(p, v, depth)
		case "postentityimages":
			c.PostEntityImages, err = images(p, v, depth)
		case "owningextension":
			if v != nil {
				m, ok := v.(map[string]any)
				if !ok {
					return nil, perr(p, "is %s, want an EntityReference object", kind(v))
				}
				var ref EntityReference
				ref, err = entityRef(p, m)
				c.OwningExtension = &ref
			}
		case "parentcontext":
			if v != nil {
				m, ok := v.(map[string]any)
				if !ok {
					return nil, perr(p, "is %s, want an object", kind(v))
				}
				c.ParentContext, err = parseContext(m, p, depth+1)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// collection decodes a DataContract collection: [{"key":k,"value":v},...].
// A plain JSON object is accepted too.
func collection(path string, v any, depth int) (map[string]any, error) {
	out := map[string]any{}
	switch x := v.(type) {
	case nil:
		return out, nil
	case map[string]any:
		for k, val := range x {
			d, err := value(join(path, k), val, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = d
		}
		return out, nil
	case []any:
		for n, item := range x {
			p := fmt.Sprintf("%s[%d]", path, n)
			k, val, err := pair(p, item)
			if err != nil {
				return nil, err
			}
			d, err := value(p+".value", val, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = d
		}
		return out, nil
	}
	return nil, perr(path, "is %s, want a list of key/value pairs", kind(v))
}

func pair(path string, item any) (string, any, error) {
	m, ok := item.(map[string]any)
	if !ok {
		return "", nil, perr(path, "is %s, want {\"key\":..,\"value\":..}", kind(item))
	}
	var key any
	var val any
	found := false
	for k, x := range m {
		switch strings.ToLower(k) {
		case "key":
			key, found = x, true
		case "value":
			val = x
		}
	}
	ks, ok := key.(string)
	if !found || !ok {
		return "", nil, perr(path, "key/value pair without a string \"key\"")
	}
	return ks, val, nil
}

func images(path string, v any, depth int) (map[string]*Entity, error) {
	coll, err := collection(path, v, depth)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Entity, len(coll))
	for k, x := range coll {
		switch e := x.(type) {
		case *Entity:
			out[k] = e
		case nil:
		default:
			return nil, perr(join(path, k), "image is %s, want an Entity", kind(x))
		}
	}
	return out, nil
}

// value decodes one typed value.
func value(path string, v any, depth int) (any, error) {
	if depth > maxNesting {
		return nil, perr(path, "nested too deep")
	}
	switch x := v.(type) {
	case nil, bool:
		return x, nil
	case json.Number:
		return number(path, x)
	case string:
		if isDate(x) {
			// A text column may hold "/Date(" too; WCF writes both alike, so
			// keep what does not parse as text.
			if t, err := date(path, x); err == nil {
				return t, nil
			}
		}
		return x, nil
	case []any:
		out := make([]any, len(x))
		for n, item := range x {
			d, err := value(fmt.Sprintf("%s[%d]", path, n), item, depth+1)
			if err != nil {
				return nil, err
			}
			out[n] = d
		}
		return out, nil
	case map[string]any:
		return object(path, x, depth)
	}
	return nil, perr(path, "unexpected %s", kind(v))
}

func object(path string, m map[string]any, depth int) (any, error) {
	typ := typeName(m)
	switch typ {
	case "Entity":
		return entity(path, m, depth)
	case "EntityReference":
		return entityRef(path, m)
	case "OptionSetValue":
		n, err := integer(path+".Value", field(m, "Value"))
		return OptionSetValue{Value: n}, err
	case "Money":
		f, err := float(path+".Value", field(m, "Value"))
		return Money{Value: f}, err
	case "EntityCollection":
		return value(path+".Entities", field(m, "Entities"), depth+1)
	case "":
		// Untagged: images and OwningExtension are often sent without
		// "__type"; recognise them by shape.
		if _, ok := lookup(m, "Attributes"); ok {
			if _, ok := lookup(m, "LogicalName"); ok {
				return entity(path, m, depth)
			}
		}
		if _, ok := lookup(m, "LogicalName"); ok {
			if _, ok := lookup(m, "Id"); ok {
				return entityRef(path, m)
			}
		}
	}
	out := make(map[string]any, len(m))
	for k, x := range m {
		if k == "__type" {
			continue
		}
		d, err := value(join(path, k), x, depth+1)
		if err != nil {
			return nil, err
		}
		out[k] = d
	}
	return out, nil
}

func entity(path string, m map[string]any, depth int) (*Entity, error) {
	e := &Entity{}
	var err error
	for k, v := range m {
		p := join(path, k)
		switch strings.ToLower(k) {
		case "logicalname":
			e.LogicalName, err = str(p, v)
		case "id":
			e.ID, err = guid(p, v)
		case "rowversion":
			e.RowVersion, err = str(p, v)
		case "attributes":
			e.Attributes, err = collection(p, v, depth)
		case "keyattributes":
			e.KeyAttributes, err = collection(p, v, depth)
		case "formattedvalues":
			var fv map[string]any
			if fv, err = collection(p, v, depth); err == nil {
				e.FormattedValues = make(map[string]string, len(fv))
				for name, x := range fv {
					if s, ok := x.(string); ok {
						e.FormattedValues[name] = s
					}
				}
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if e.Attributes == nil {
		e.Attributes = map[string]any{}
	}
	return e, nil
}

func entityRef(path string, m map[string]any) (EntityReference, error) {
	var r EntityReference
	var err error
	for k, v := range m {
		p := join(path, k)
		switch strings.ToLower(k) {
		case "logicalname":
			r.LogicalName, err = str(p, v)
		case "id":
			r.ID, err = guid(p, v)
		case "name":
			r.Name, err = str(p, v)
		}
		if err != nil {
			return EntityReference{}, err
		}
	}
	return r, nil
}

// typeName returns the contract name of a "__type" tag:
// "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts" -> "OptionSetValue".
func typeName(m map[string]any) string {
	t, _ := m["__type"].(string)
	name, _, _ := strings.Cut(t, ":")
	return name
}

func lookup(m map[string]any, name string) (any, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

func field(m map[string]any, name string) any {
	v, _ := lookup(m, name)
	return v
}

func str(path string, v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	}
	return "", perr(path, "is %s, want a string", kind(v))
}

func guid(path string, v any) (string, error) {
	s, err := str(path, v)
	if err != nil || s == "" {
		return s, err
	}
	g, ok := normalizeGUID(s)
	if !ok {
		return "", perr(path, "%q is not a GUID", truncate(s, 60))
	}
	return g, nil
}

func boolean(path string, v any) (bool, error) {
	switch x := v.(type) {
	case nil:
		return false, nil
	case bool:
		return x, nil
	}
	return false, perr(path, "is %s, want true or false", kind(v))
}

func integer(path string, v any) (int, error) {
	switch x := v.(type) {
	case nil:
		return 0, nil
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 32)
		if err != nil {
			return 0, perr(path, "%s is not a 32-bit integer", truncate(string(x), 40))
		}
		return int(n), nil
	}
	return 0, perr(path, "is %s, want an integer", kind(v))
}

func float(path string, v any) (float64, error) {
	switch x := v.(type) {
	case nil:
		return 0, nil
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			return 0, perr(path, "%s is not a number", truncate(string(x), 40))
		}
		return f, nil
	}
	return 0, perr(path, "is %s, want a number", kind(v))
}

// number keeps integers exact (BigInt columns) and the rest as float64.
func number(path string, x json.Number) (any, error) {
	if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
		return n, nil
	}
	return float(path, x)
}

func isDate(s string) bool { return strings.HasPrefix(s, "/Date(") }

// date parses WCF's "/Date(1506384247000)/" and "/Date(1506409448000-0700)/"
// (milliseconds since the Unix epoch, UTC; the optional offset only says
// which zone the value was displayed in).
func date(path string, v any) (time.Time, error) {
	s, err := str(path, v)
	if err != nil || s == "" {
		return time.Time{}, err
	}
	in, ok := strings.CutPrefix(s, "/Date(")
	if ok {
		in, ok = strings.CutSuffix(in, ")/")
	}
	if !ok || in == "" {
		return time.Time{}, perr(path, "%q is not a /Date(ms)/ value", truncate(s, 60))
	}
	ms, zone := in, ""
	if i := strings.LastIndexAny(in, "+-"); i > 0 {
		ms, zone = in[:i], in[i:]
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	// ±100M days is time.Time's Unix range; stay well inside it.
	if err != nil || n > 253402300799999 || n < -62135596800000 {
		return time.Time{}, perr(path, "%q has a bad millisecond count", truncate(s, 60))
	}
	t := time.UnixMilli(n).UTC()
	if zone != "" {
		if len(zone) != 5 {
			return time.Time{}, perr(path, "%q has a bad offset", truncate(s, 60))
		}
		hh, err1 := strconv.Atoi(zone[1:3])
		mm, err2 := strconv.Atoi(zone[3:5])
		if err1 != nil || err2 != nil || hh > 14 || mm > 59 || zone[1] == '+' || zone[1] == '-' || zone[3] == '+' || zone[3] == '-' {
			return time.Time{}, perr(path, "%q has a bad offset", truncate(s, 60))
		}
		off := hh*3600 + mm*60
		if zone[0] == '-' {
			off = -off
		}
		t = t.In(time.FixedZone(zone, off))
	}
	return t, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// normalizeGUID accepts "6D81597F-0F9F-E711-8122-000D3AA2331C", with or
// without braces, and returns the lowercase form.
func normalizeGUID(s string) (string, bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "{"), "}")
	if len(s) != 36 {
		return "", false
	}
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return "", false
			}
		}
	}
	return string(b), true
}

// intValue reads a choice value however it arrived: OptionSetValue, a plain
// number, a numeric string, or an untagged {"Value": n}.
func intValue(v any) (int, bool) {
	switch x := v.(type) {
	case OptionSetValue:
		return x.Value, true
	case *OptionSetValue:
		if x != nil {
			return x.Value, true
		}
	case int64:
		return int(x), true
	case int:
		return x, true
	case float64:
		if x == math.Trunc(x) {
			return int(x), true
		}
	case string:
		if n, err := strconv.Atoi(strings.TrimSpace(x)); err == nil {
			return n, true
		}
	case map[string]any:
		if inner, ok := lookup(x, "Value"); ok {
			switch n := inner.(type) {
			case int64:
				return int(n), true
			case float64:
				if n == math.Trunc(n) {
					return int(n), true
				}
			}
		}
	}
	return 0, false
}

// stringValue reads a text attribute ("" and false when absent or not text).
func stringValue(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}
