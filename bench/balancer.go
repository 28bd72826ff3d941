package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// balancer is the loopback load balancer in front of the replicas, the
// address Dataverse posts webhooks to and email links point at. It forwards
// round-robin and, when a replica does not answer (killed), tries the next
// one; with none left it answers 503, which Dataverse retries once.
type balancer struct {
	URL string

	srv *http.Server
	tr  *http.Transport

	mu        sync.Mutex
	backends  []string
	next      int
	firstHook map[string]time.Time // contact id -> first webhook arrival
	hookCodes map[int]int          // webhook answers by status

	hooks     atomic.Int64 // webhook POSTs received
	failovers atomic.Int64 // attempts that found a replica gone
	refused   atomic.Int64 // requests answered 503 for want of a replica
}

func startBalancer() (*balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("balancer: %w", err)
	}
	b := &balancer{
		URL:       "http://" + ln.Addr().String(),
		tr:        &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second, DisableCompression: true},
		firstHook: map[string]time.Time{},
		hookCodes: map[int]int{},
	}
	b.srv = &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

func (b *balancer) close() {
	_ = b.srv.Close()
	b.tr.CloseIdleConnections()
}

func (b *balancer) add(addr string) {
	b.mu.Lock()
	b.backends = append(b.backends, addr)
	b.mu.Unlock()
}

// order is the backends starting at the next one in turn.
func (b *balancer) order() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.backends)
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, b.backends[(b.next+i)%n])
	}
	if n > 0 {
		b.next = (b.next + 1) % n
	}
	return out
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	hook := r.Method == http.MethodPost && r.URL.Path == webhookPath
	if hook {
		b.hooks.Add(1)
		var rc struct {
			ID string `json:"PrimaryEntityId"`
		}
		if json.Unmarshal(body, &rc) == nil && rc.ID != "" {
			id := strings.ToLower(rc.ID)
			now := time.Now()
			b.mu.Lock()
			if _, ok := b.firstHook[id]; !ok {
				b.firstHook[id] = now
			}
			b.mu.Unlock()
		}
	}
	for _, be := range b.order() {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+be+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		req.Header = r.Header.Clone()
		req.Host = r.Host // the site checks Origin against Host
		resp, err := b.tr.RoundTrip(req)
		if err != nil {
			b.failovers.Add(1)
			continue
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		if hook {
			b.mu.Lock()
			b.hookCodes[resp.StatusCode]++
			b.mu.Unlock()
		}
		return
	}
	b.refused.Add(1)
	if hook {
		b.mu.Lock()
		b.hookCodes[http.StatusServiceUnavailable]++
		b.mu.Unlock()
	}
	http.Error(w, "no replica available", http.StatusServiceUnavailable)
}

// hookArrivals returns a copy of the first webhook arrival per contact.
func (b *balancer) hookArrivals() map[string]time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]time.Time, len(b.firstHook))
	for k, v := range b.firstHook {
		out[k] = v
	}
	return out
}

func (b *balancer) hookStatuses() map[int]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[int]int, len(b.hookCodes))
	for k, v := range b.hookCodes {
		out[k] = v
	}
	return out
}
