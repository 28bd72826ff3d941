package main

import (
	"io"
	"log/slog"
	"strings"

	"github.com/d365portal/connector/internal/config"
)

// sensitiveKeys are attribute names whose values never reach a log line, as a
// last line of defence behind code that should not log them at all.
var sensitiveKeys = []string{"password", "secret", "token", "authorization", "code", "cookie", "api_key", "authvalue"}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redactAttr}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func redactAttr(_ []string, a slog.Attr) slog.Attr {
	k := strings.ToLower(a.Key)
	for _, s := range sensitiveKeys {
		if k == s || strings.HasSuffix(k, "_"+s) {
			return slog.String(a.Key, "[redacted]")
		}
	}
	return a
}
