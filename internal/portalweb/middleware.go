package portalweb

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Request-scoped values kept on the gin context (not dependencies: those
// live on the Server).
const (
	keyRequestID = "portalweb.request_id"
	keyClientIP  = "portalweb.client_ip"
	keyHTTPS     = "portalweb.https"
)

// requestContext gives every request an id (shown on error pages and in
// logs), resolves the client address through trusted proxies, and logs the
// request when it ends. The query string is never logged: it carries
// invitation codes and tokens.
func (s *Server) requestContext(c *gin.Context) {
	start := time.Now()
	id := newRequestID()
	c.Set(keyRequestID, id)
	ip, https := s.clientInfo(c.Request)
	c.Set(keyClientIP, ip)
	c.Set(keyHTTPS, https)
	c.Header("X-Request-ID", id)
	c.Next()
	status := c.Writer.Status()
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	s.log.LogAttrs(c.Request.Context(), level, "portal request",
		slog.String("request_id", id),
		slog.String("method", c.Request.Method),
		slog.String("path", c.Request.URL.Path),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)),
		slog.String("client_ip", ip),
	)
}

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func requestID(c *gin.Context) string { return c.GetString(keyRequestID) }
func clientIP(c *gin.Context) string  { return c.GetString(keyClientIP) }

// clientInfo returns the client address and whether the client reached us
// over HTTPS. Forwarded headers count only when the direct peer is a
// trusted proxy; X-Forwarded-For is read right to left, skipping trusted
// hops, so a client cannot choose its own address by sending the header.
func (s *Server) clientInfo(r *http.Request) (ip string, https bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host, r.TLS != nil
	}
	peer = peer.Unmap()
	if !s.trusted(peer) {
		return peer.String(), r.TLS != nil
	}
	https = r.TLS != nil || strings.EqualFold(strings.TrimSpace(lastCSV(r.Header.Values("X-Forwarded-Proto"))), "https")
	hops := splitCSV(r.Header.Values("X-Forwarded-For"))
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		client = a.Unmap()
		if !s.trusted(client) {
			break
		}
	}
	return client.String(), https
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func splitCSV(values []string) []string {
	var out []string
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if p := strings.TrimSpace(part); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func lastCSV(values []string) string {
	parts := splitCSV(values)
	if len(parts) == 0 {
		return ""
	}
	return parts[len(parts)-1]
}

// recoverPanics turns a panic into the 500 page with the request id; the
// stack goes to the log, never to the browser.
func (s *Server) recoverPanics(c *gin.Context) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.log.Error("portal panic", slog.String("request_id", requestID(c)),
			slog.String("panic", fmt.Sprint(v)), slog.String("stack", string(debug.Stack())))
		if c.Writer.Written() {
			c.Abort()
			return
		}
		c.Set(keySessionSaved, true) // the session state is unknown; do not write it
		s.fail(c, &Error{Status: http.StatusInternalServerError, Key: "internal", Err: fmt.Errorf("panic: %v", v)})
		c.Abort()
	}()
	c.Next()
}

// securityHeaders applies to every response: no framing, no sniffing, a
// script-free CSP, HSTS over HTTPS, and no caching of pages (they carry
// CSRF tokens and personal data). Static assets override Cache-Control.
func (s *Server) securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", s.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	h.Set("Cache-Control", "no-store")
	if c.GetBool(keyHTTPS) {
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	}
	c.Next()
}

// noReferrer is for pages whose URL carries a code or token: the browser
// must not pass that URL on to anything the page links to.
func noReferrer(c *gin.Context) { c.Header("Referrer-Policy", "no-referrer") }

// limitBody caps request bodies; forms here are a few hundred bytes.
func (s *Server) limitBody(c *gin.Context) {
	if c.Request.ContentLength > s.maxBody {
		s.fail(c, &Error{Status: http.StatusRequestEntityTooLarge, Key: "too_large"})
		c.Abort()
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.maxBody)
	c.Next()
}
