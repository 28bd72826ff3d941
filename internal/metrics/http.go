package metrics

import (
	"net/http"
	"strconv"
	"time"
)

// Middleware records connector_http_request_duration_seconds for every
// request, labelled by route, method and final status.
//
// route is called after the wrapped handler returns, so it sees what routing
// left on the request: with net/http's ServeMux that is r.Pattern (for
// example "GET /api/v1/invitations/{id}"), set by the innermost mux that
// received this same *http.Request. It must return a route template, never
// the raw path, to keep the number of series bounded; an empty result is
// recorded as "unmatched". Methods outside the standard set are recorded as
// "OTHER".
func (m *Metrics) Middleware(route func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			m.httpInFlight.Inc()
			rw := &statusWriter{ResponseWriter: w}
			completed := false
			defer func() {
				m.httpInFlight.Dec()
				status := rw.status
				switch {
				case status == 0 && !completed:
					status = http.StatusInternalServerError // the handler panicked before writing
				case status == 0:
					status = http.StatusOK // nothing written: net/http sends 200
				}
				name := ""
				if route != nil {
					name = route(r)
				}
				if name == "" {
					name = "unmatched"
				}
				m.httpDuration.WithLabelValues(name, methodLabel(r.Method), strconv.Itoa(status)).
					Observe(time.Since(start).Seconds())
			}()
			next.ServeHTTP(rw, r)
			completed = true
		})
	}
}

// methodLabel keeps client-chosen methods from creating series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// statusWriter remembers the final status code. Unwrap lets
// http.ResponseController reach the underlying writer's optional interfaces
// (deadlines, hijacking); Flush is forwarded for handlers that type-assert
// http.Flusher directly.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx responses (103 Early Hints) are not the final status.
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
