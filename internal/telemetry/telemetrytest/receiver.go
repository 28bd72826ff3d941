package telemetrytest

import (
	"compress/gzip"
	"encoding/hex"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Receiver is an OTLP/HTTP trace receiver (protobuf, optionally gzip) on a
// loopback port, decoding each export with the collector's types.
type Receiver struct {
	srv *http.Server
	ln  net.Listener

	mu    sync.Mutex
	spans []Span
	reqs  int
	count int  // spans received
	keep  bool // false: spans are decoded and counted, not kept
}

// Span is one received span, its ids in hex and its attributes as text.
type Span struct {
	TraceID, SpanID, ParentID string
	Name                      string
	Kind                      int32 // OTLP SpanKind: 2 server, 3 client, 4 producer, 5 consumer
	Attrs                     map[string]string
	Events                    []string          // event names
	LinkTraceIDs              []string          // trace ids of the links
	Resource                  map[string]string // the resource's attributes
}

// StartReceiver listens on 127.0.0.1 and serves until Close, keeping
// every span it receives.
func StartReceiver() (*Receiver, error) { return start(true) }

// StartCounter is a receiver that decodes every export like StartReceiver
// but only counts the spans (Count), so a long load does not grow the
// memory of the process it runs in (a benchmark's load generator).
func StartCounter() (*Receiver, error) { return start(false) }

func start(keep bool) (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{ln: ln, keep: keep}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// URL is the receiver's base URL (the exporter adds /v1/traces).
func (r *Receiver) URL() string { return "http://" + r.ln.Addr().String() }

// Close stops the receiver.
func (r *Receiver) Close() error { return r.srv.Close() }

// Requests is the number of export requests received.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reqs
}

// Count is the number of spans received so far.
func (r *Receiver) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Spans returns the spans received so far (none from a StartCounter).
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.NotFound(w, req)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, "bad gzip", http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &msg); err != nil {
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	var got []Span
	for _, rs := range msg.GetResourceSpans() {
		res := kvMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s := Span{
					TraceID:  hex.EncodeToString(sp.GetTraceId()),
					SpanID:   hex.EncodeToString(sp.GetSpanId()),
					ParentID: hex.EncodeToString(sp.GetParentSpanId()),
					Name:     sp.GetName(),
					Kind:     int32(sp.GetKind()),
					Attrs:    kvMap(sp.GetAttributes()),
					Resource: res,
				}
				for _, e := range sp.GetEvents() {
					s.Events = append(s.Events, e.GetName())
				}
				for _, l := range sp.GetLinks() {
					s.LinkTraceIDs = append(s.LinkTraceIDs, hex.EncodeToString(l.GetTraceId()))
				}
				got = append(got, s)
			}
		}
	}
	r.mu.Lock()
	r.reqs++
	r.count += len(got)
	if r.keep {
		r.spans = append(r.spans, got...)
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func kvMap(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyString(kv.GetValue())
	}
	return m
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return attribute.Int64Value(x.IntValue).Emit()
	case *commonpb.AnyValue_BoolValue:
		return attribute.BoolValue(x.BoolValue).Emit()
	case *commonpb.AnyValue_DoubleValue:
		return attribute.Float64Value(x.DoubleValue).Emit()
	case *commonpb.AnyValue_ArrayValue:
		var s []string
		for _, e := range x.ArrayValue.GetValues() {
			s = append(s, anyString(e))
		}
		return "[" + strings.Join(s, " ") + "]"
	default:
		return ""
	}
}
