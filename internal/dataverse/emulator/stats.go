package emulator

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Stats counts requests. Route is a template such as "contacts", "contacts({id})" or
// "$batch"; operations inside a $batch are counted in ByRoute (not in Total).
type Stats struct {
	Total     int            // HTTP requests (token endpoint included, batch parts excluded)
	Throttled int            // 429 responses (limiter and injected)
	Faults    int            // injected faults (error answers and connection resets)
	ByRoute   map[string]int // "METHOD route status", e.g. "POST contacts 204"
	ByStatus  map[int]int
}

func newStats() Stats { return Stats{ByRoute: map[string]int{}, ByStatus: map[int]int{}} }

// Count sums ByRoute over statuses for a method ("" = any) and route.
func (st Stats) Count(method, route string) int {
	n := 0
	for k, v := range st.ByRoute {
		parts := strings.Split(k, " ")
		if len(parts) != 3 {
			continue
		}
		if (method == "" || parts[0] == method) && parts[1] == route {
			n += v
		}
	}
	return n
}

// LoggedRequest is one entry of the request log.
type LoggedRequest struct {
	Time      time.Time
	Method    string
	Path      string // path and query as received
	Route     string
	Set       string // entity set ("" for the token endpoint)
	Status    int    // 0 for a reset connection
	Caller    string // systemuserid the request ran as
	RequestID string
	Duration  time.Duration
	InBatch   bool // an operation inside a $batch
	Throttled bool
	Fault     bool
}

func (s *Server) record(l LoggedRequest) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if !l.InBatch {
		s.stats.Total++
	}
	if l.Status == 429 {
		s.stats.Throttled++
	}
	if l.Fault {
		s.stats.Faults++
	}
	s.stats.ByRoute[fmt.Sprintf("%s %s %d", l.Method, l.Route, l.Status)]++
	s.stats.ByStatus[l.Status]++
	if len(s.reqLog) >= s.opts.RequestLogSize {
		s.reqLog = slices.Delete(s.reqLog, 0, len(s.reqLog)/2)
	}
	s.reqLog = append(s.reqLog, l)
	s.log.Debug("dataverse emulator request", "method", l.Method, "route", l.Route, "status", l.Status, "duration", l.Duration, "batch", l.InBatch)
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := s.stats
	st.ByRoute = maps.Clone(s.stats.ByRoute)
	st.ByStatus = maps.Clone(s.stats.ByStatus)
	return st
}

// RequestLog returns the most recent requests (bounded by Options.RequestLogSize).
func (s *Server) RequestLog() []LoggedRequest {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return slices.Clone(s.reqLog)
}

// ResetStats clears the counters and the request log.
func (s *Server) ResetStats() {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	s.stats = newStats()
	s.reqLog = nil
}
