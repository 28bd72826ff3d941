package config

import (
	"fmt"
	"strings"
)

// Exchange Online's per-mailbox sending limits, the defaults of
// portals[].email.rate.
const (
	DefaultRatePerMinute = 30
	DefaultRatePerDay    = 10000
)

// Rate is how many invitation emails one sender may send: the limits are
// counted per sender mailbox across every replica.
type Rate struct {
	PerMinute int `yaml:"per_minute"`
	PerDay    int `yaml:"per_day"`
}

// SenderList is the portal's sending mailboxes: email.senders when set,
// else email.sender when it names a mailbox; empty for initiating_user,
// whose mailbox is the CRM user's and is not paced.
func (e Email) SenderList() []string {
	if len(e.Senders) > 0 {
		return e.Senders
	}
	if s := strings.TrimSpace(e.Sender); s != "" && s != "initiating_user" {
		return []string{s}
	}
	return nil
}

// applyPacingDefaults fills email.rate where absent.
func (c *Config) applyPacingDefaults(present map[string]bool) {
	for i := range c.Portals {
		e := &c.Portals[i].Email
		if !present[portalKey(i, "email.sender")] && e.Sender == "" && len(e.Senders) > 0 && validMailbox(e.Senders[0]) {
			e.Sender = e.Senders[0]
		}
		r := &e.Rate
		if !present[portalKey(i, "email.rate.per_minute")] && r.PerMinute == 0 {
			r.PerMinute = DefaultRatePerMinute
		}
		if !present[portalKey(i, "email.rate.per_day")] && r.PerDay == 0 {
			r.PerDay = DefaultRatePerDay
		}
	}
}

// validatePacing checks each portal's rate and senders.
func (c *Config) validatePacing(v *validator) {
	for i, p := range c.Portals {
		e := p.Email
		if e.Rate.PerMinute <= 0 {
			v.add(portalKey(i, "email.rate.per_minute"), "must be greater than 0 (Exchange Online allows 30)")
		}
		if e.Rate.PerDay <= 0 {
			v.add(portalKey(i, "email.rate.per_day"), "must be greater than 0 (Exchange Online allows 10000)")
		}
		if e.Rate.PerDay > 0 && e.Rate.PerMinute > e.Rate.PerDay {
			v.add(portalKey(i, "email.rate.per_minute"), "must not be above email.rate.per_day")
		}
		seen := map[string]int{}
		for j, s := range e.Senders {
			key := portalKey(i, fmt.Sprintf("email.senders[%d]", j))
			if !validMailbox(s) {
				v.add(key, "must be systemuser:<guid> or queue:<guid>")
				continue
			}
			if k, dup := seen[strings.ToLower(s)]; dup {
				v.add(key, "repeats email.senders[%d]", k)
			}
			seen[strings.ToLower(s)] = j
		}
	}
}

// validMailbox reports whether s is systemuser:<guid> or queue:<guid>.
func validMailbox(s string) bool {
	kind, id, ok := strings.Cut(s, ":")
	return ok && (kind == "systemuser" || kind == "queue") && IsGUID(id)
}
