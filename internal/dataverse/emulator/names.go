package emulator

import "strings"

// Option-set values used across the package (the real ones).
const (
	emailStatusDraft = EmailDraft

	contractWebhook = 8
)

func joinName(row map[string]any) string {
	f, _ := row["firstname"].(string)
	l, _ := row["lastname"].(string)
	return strings.TrimSpace(strings.TrimSpace(f) + " " + strings.TrimSpace(l))
}
