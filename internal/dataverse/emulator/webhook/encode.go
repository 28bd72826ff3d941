// Package webhook delivers Dataverse webhooks: it serialises a
// RemoteExecutionContext exactly as Dataverse's DataContract JSON serializer
// does, and posts it to registered endpoints with Dataverse's headers,
// authentication options, 256 KB trimming, 60-second timeout and
// single-retry rule (reference §7).
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Context is the execution context of one plug-in pipeline event, the
// information Dataverse serialises into a webhook body.
type Context struct {
	MessageName, PrimaryEntityName, PrimaryEntityID string
	InitiatingUserID, UserID                        string
	OrganizationID, OrganizationName                string
	BusinessUnitID, CorrelationID, OperationID      string
	RequestID                                       string // empty encodes as null, as for asynchronous steps
	OwningExtensionID                               string // the sdkmessageprocessingstep id; empty encodes as null
	OperationCreatedOn                              time.Time
	Depth                                           int // 0 encodes as 1: the pipeline starts at depth 1
	Mode                                            int // 0 synchronous, 1 asynchronous
	Stage                                           int // 10 pre-validation, 20 pre-operation, 40 post-operation
	Target                                          *Entity
	PreImages, PostImages                           map[string]Entity
	OutputParameters                                map[string]any
}

// Entity is a row as the SDK sees it. Attribute values may be string, bool,
// int, int32, int64, float64, time.Time, EntityReference, OptionSetValue,
// Money or nil; GUIDs are plain strings.
type Entity struct {
	LogicalName, ID string
	Attributes      map[string]any
}

// EntityReference is a lookup value.
type EntityReference struct {
	LogicalName, ID, Name string
}

// OptionSetValue is a choice value.
type OptionSetValue int

// Money is a currency value.
type Money float64

// maxPayload is the size above which Dataverse strips the bulky properties
// and flags the request with x-ms-dynamics-msg-size-exceeded.
const maxPayload = 256 * 1024

const (
	contracts = "http://schemas.microsoft.com/xrm/2011/Contracts"
	zeroGUID  = "00000000-0000-0000-0000-000000000000"
)

// Encode serialises c in Dataverse's webhook body format: DataContract JSON
// with members in alphabetical order, collections as arrays of key/value
// pairs, "__type" tags on polymorphic values, "\/Date(ms)\/" dates and "/"
// escaped as "\/". It includes the members recent Dataverse versions add
// (InitiatingUserAgent and the two Entra object ids, empty here) so
// receivers are exercised against them. ParentContext is always null and
// SharedVariables empty.
func Encode(c Context) ([]byte, error) {
	return encode(c, false)
}

// encode renders c; trimmed drops the members Dataverse removes from
// oversized payloads.
func encode(c Context, trimmed bool) ([]byte, error) {
	w := &writer{b: make([]byte, 0, 2048)}
	depth := c.Depth
	if depth == 0 {
		depth = 1
	}
	w.raw('{')
	w.field("BusinessUnitId")
	w.guid(c.BusinessUnitID)
	w.field("CorrelationId")
	w.guid(c.CorrelationID)
	w.field("Depth")
	w.int(int64(depth))
	w.field("InitiatingUserAgent")
	w.str("")
	w.field("InitiatingUserAzureActiveDirectoryObjectId")
	w.guid("")
	w.field("InitiatingUserId")
	w.guid(c.InitiatingUserID)
	if !trimmed {
		w.field("InputParameters")
		w.raw('[')
		if c.Target != nil {
			w.raw('{')
			w.field("key")
			w.str("Target")
			w.field("value")
			if c.MessageName == "Delete" {
				// Delete's target is a reference: the row is gone.
				w.entityReference(EntityReference{LogicalName: c.Target.LogicalName, ID: c.Target.ID}, true)
			} else {
				w.entity(*c.Target, true)
			}
			w.raw('}')
		}
		w.raw(']')
	}
	w.field("IsExecutingOffline")
	w.bool(false)
	w.field("IsInTransaction")
	// Synchronous pre- and post-operation steps run inside the database
	// transaction; pre-validation and asynchronous steps do not.
	w.bool(c.Mode == 0 && c.Stage >= 20 && c.Stage <= 40)
	w.field("IsOfflinePlayback")
	w.bool(false)
	w.field("IsolationMode")
	w.int(1)
	w.field("MessageName")
	w.str(c.MessageName)
	w.field("Mode")
	w.int(int64(c.Mode))
	w.field("OperationCreatedOn")
	// Asynchronous contexts come back from the system job store as local
	// times and carry an offset; synchronous ones are UTC and do not.
	w.date(c.OperationCreatedOn, c.Mode == 1)
	w.field("OperationId")
	w.guid(c.OperationID)
	w.field("OrganizationId")
	w.guid(c.OrganizationID)
	w.field("OrganizationName")
	w.str(c.OrganizationName)
	w.field("OutputParameters")
	w.collection(c.OutputParameters)
	w.field("OwningExtension")
	if c.OwningExtensionID == "" {
		w.null()
	} else {
		w.entityReference(EntityReference{LogicalName: "sdkmessageprocessingstep", ID: c.OwningExtensionID}, false)
	}
	if !trimmed {
		w.field("ParentContext")
		w.null()
		w.field("PostEntityImages")
		w.images(c.PostImages)
		w.field("PreEntityImages")
		w.images(c.PreImages)
	}
	w.field("PrimaryEntityId")
	w.guid(c.PrimaryEntityID)
	w.field("PrimaryEntityName")
	w.str(c.PrimaryEntityName)
	w.field("RequestId")
	if c.RequestID == "" {
		w.null()
	} else {
		w.guid(c.RequestID)
	}
	w.field("SecondaryEntityName")
	w.str("none")
	w.field("SharedVariables")
	w.raw('[', ']')
	w.field("Stage")
	w.int(int64(c.Stage))
	w.field("UserAzureActiveDirectoryObjectId")
	w.guid("")
	w.field("UserId")
	w.guid(c.UserID)
	w.raw('}')
	if w.err != nil {
		return nil, fmt.Errorf("webhook.Encode %s %s: %w", c.MessageName, c.PrimaryEntityName, w.err)
	}
	return w.b, nil
}

// writer appends DataContract-style JSON. It tracks whether a comma is due
// so the encoder above reads as a list of members.
type writer struct {
	b     []byte
	comma bool // a value was just written at the current level
	err   error
}

func (w *writer) raw(bs ...byte) {
	for _, c := range bs {
		switch c {
		case '{', '[':
			w.sep()
			w.b = append(w.b, c)
			w.comma = false
		case '}', ']':
			w.b = append(w.b, c)
			w.comma = true
		default:
			w.b = append(w.b, c)
		}
	}
}

func (w *writer) sep() {
	if w.comma {
		w.b = append(w.b, ',')
		w.comma = false
	}
}

func (w *writer) field(name string) {
	w.sep()
	w.quoted(name)
	w.b = append(w.b, ':')
}

func (w *writer) str(s string) { w.sep(); w.quoted(s); w.comma = true }
func (w *writer) null()        { w.sep(); w.b = append(w.b, "null"...); w.comma = true }
func (w *writer) bool(v bool)  { w.sep(); w.b = strconv.AppendBool(w.b, v); w.comma = true }
func (w *writer) int(v int64)  { w.sep(); w.b = strconv.AppendInt(w.b, v, 10); w.comma = true }

func (w *writer) uint(v uint64) { w.sep(); w.b = strconv.AppendUint(w.b, v, 10); w.comma = true }

func (w *writer) float(v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		w.fail(fmt.Errorf("unsupported number %v", v))
		return
	}
	b, _ := json.Marshal(v) // shortest round-trip form, like .NET's "R" format
	w.sep()
	w.b = append(w.b, b...)
	w.comma = true
}

func (w *writer) guid(s string) {
	if s == "" {
		s = zeroGUID
	}
	w.str(s)
}

// date writes a WCF JSON date: milliseconds since the Unix epoch, with the
// time's UTC offset appended when withOffset is set.
func (w *writer) date(t time.Time, withOffset bool) {
	s := "/Date(" + strconv.FormatInt(t.UnixMilli(), 10)
	if withOffset {
		_, off := t.Zone()
		sign := byte('+')
		if off < 0 {
			sign, off = '-', -off
		}
		s += string(sign) + fmt.Sprintf("%02d%02d", off/3600, off%3600/60)
	}
	w.str(s + ")/")
}

func (w *writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// quoted escapes like DataContractJsonSerializer: solidus as "\/", no HTML
// escaping, control characters as \uXXXX.
func (w *writer) quoted(s string) {
	const hex = "0123456789abcdef"
	w.b = append(w.b, '"')
	start := 0 // s[start:i] is pending and needs no escaping
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' && c != '/' {
			i++
			continue
		}
		r, size := rune(c), 1
		if c >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
			if r != 0x2028 && r != 0x2029 && (r != utf8.RuneError || size != 1) {
				i += size
				continue
			}
		}
		w.b = append(w.b, s[start:i]...)
		switch r {
		case '"', '\\', '/':
			w.b = append(w.b, '\\', byte(r))
		case '\b':
			w.b = append(w.b, '\\', 'b')
		case '\f':
			w.b = append(w.b, '\\', 'f')
		case '\n':
			w.b = append(w.b, '\\', 'n')
		case '\r':
			w.b = append(w.b, '\\', 'r')
		case '\t':
			w.b = append(w.b, '\\', 't')
		case utf8.RuneError:
			w.b = append(w.b, `\ufffd`...)
		default: // other control characters, U+2028, U+2029
			w.b = append(w.b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		}
		i += size
		start = i
	}
	w.b = append(w.b, s[start:]...)
	w.b = append(w.b, '"')
}

// entity writes an Entity. typed adds the "__type" tag, which the serializer
// emits only where the declared type is object (parameter and attribute
// values), not for images whose declared type is Entity.
func (w *writer) entity(e Entity, typed bool) {
	w.raw('{')
	if typed {
		w.field("__type")
		w.str("Entity:" + contracts)
	}
	w.field("Attributes")
	w.collection(e.Attributes)
	w.field("EntityState")
	w.null()
	w.field("FormattedValues")
	w.raw('[', ']')
	w.field("Id")
	w.guid(e.ID)
	w.field("KeyAttributes")
	w.raw('[', ']')
	w.field("LogicalName")
	w.str(e.LogicalName)
	w.field("RelatedEntities")
	w.raw('[', ']')
	w.field("RowVersion")
	w.null()
	w.raw('}')
}

func (w *writer) entityReference(r EntityReference, typed bool) {
	w.raw('{')
	if typed {
		w.field("__type")
		w.str("EntityReference:" + contracts)
	}
	w.field("Id")
	w.guid(r.ID)
	w.field("KeyAttributes")
	w.raw('[', ']')
	w.field("LogicalName")
	w.str(r.LogicalName)
	w.field("Name")
	if r.Name == "" {
		w.null()
	} else {
		w.str(r.Name)
	}
	w.field("RowVersion")
	w.null()
	w.raw('}')
}

// collection writes a map as the serializer writes a DataCollection: an
// array of {"key","value"} pairs. Keys are sorted so output is stable.
func (w *writer) collection(m map[string]any) {
	w.raw('[')
	for _, k := range sortedKeys(m) {
		w.raw('{')
		w.field("key")
		w.str(k)
		w.field("value")
		w.value(k, m[k])
		w.raw('}')
	}
	w.raw(']')
}

func (w *writer) images(m map[string]Entity) {
	w.raw('[')
	for _, k := range sortedKeys(m) {
		w.raw('{')
		w.field("key")
		w.str(k)
		w.field("value")
		w.entity(m[k], false)
		w.raw('}')
	}
	w.raw(']')
}

func (w *writer) typedValue(kind string, write func()) {
	w.raw('{')
	w.field("__type")
	w.str(kind + ":" + contracts)
	w.field("Value")
	write()
	w.raw('}')
}

// value writes an attribute or parameter value.
func (w *writer) value(key string, v any) {
	switch v := v.(type) {
	case nil:
		w.null()
	case string:
		w.str(v)
	case bool:
		w.bool(v)
	case int:
		w.int(int64(v))
	case int32:
		w.int(int64(v))
	case int64:
		w.int(v)
	case uint32:
		w.uint(uint64(v))
	case float32:
		w.float(float64(v))
	case float64:
		w.float(v)
	case time.Time:
		w.date(v.UTC(), false) // column values are stored and sent as UTC
	case EntityReference:
		w.entityReference(v, true)
	case *EntityReference:
		if v == nil {
			w.null()
		} else {
			w.entityReference(*v, true)
		}
	case OptionSetValue:
		w.typedValue("OptionSetValue", func() { w.int(int64(v)) })
	case Money:
		w.typedValue("Money", func() { w.float(float64(v)) })
	case Entity:
		w.entity(v, true)
	case *Entity:
		if v == nil {
			w.null()
		} else {
			w.entity(*v, true)
		}
	default:
		w.null()
		w.fail(errors.New("value of " + strconv.Quote(key) + ": unsupported type " + fmt.Sprintf("%T", v)))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
