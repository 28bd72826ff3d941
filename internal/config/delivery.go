package config

import (
	"net"
	"strings"
	"time"
)

// SMTP is the submission server used by portals whose email.channel is
// smtp: Azure Communication Services Email, SendGrid, an Exchange relay or
// any server that accepts authenticated submission.
type SMTP struct {
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"` // default 587 (starttls), 465 (tls), 25 (none)
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Security is starttls (default), tls or none (loopback hosts only).
	Security string `yaml:"security"`
	// From is the sender, "Name <address>" or an address; its domain names
	// the Message-IDs.
	From string `yaml:"from"`
}

// Email channels (portals[].email.channel).
const (
	ChannelDataverse = "dataverse"
	ChannelSMTP      = "smtp"
)

// Defaults of the delivery keys.
const (
	StatusDelivered          = 100000004
	DefaultPendingAlertAfter = 30 * time.Minute
)

// UsesSMTP reports whether any portal sends through the smtp block.
func (c *Config) UsesSMTP() bool {
	for _, p := range c.Portals {
		if p.Email.Channel == ChannelSMTP {
			return true
		}
	}
	return false
}

// applyDeliveryDefaults fills the delivery keys absent from the file.
func (c *Config) applyDeliveryDefaults(present map[string]bool) {
	if !present["intake.contact.status.delivered"] && c.Intake.Contact.Status.Delivered == 0 {
		c.Intake.Contact.Status.Delivered = StatusDelivered
	}
	for i := range c.Portals {
		e := &c.Portals[i].Email
		if !present[portalKey(i, "email.channel")] && e.Channel == "" {
			e.Channel = ChannelDataverse
		}
		if !present[portalKey(i, "email.pending_alert_after")] && e.PendingAlertAfter == 0 {
			e.PendingAlertAfter = Duration(DefaultPendingAlertAfter)
		}
	}
	if c.UsesSMTP() && !present["smtp.security"] && c.SMTP.Security == "" {
		c.SMTP.Security = "starttls"
	}
}

// validateDelivery checks the delivery keys: the Delivered option value,
// each portal's channel and alert delay, and the smtp block when a portal
// uses it.
func (c *Config) validateDelivery(v *validator) {
	st := c.Intake.Contact.Status
	for key, val := range map[string]int{
		"intake.contact.status.requested": st.Requested,
		"intake.contact.status.sent":      st.Sent,
		"intake.contact.status.failed":    st.Failed,
		"intake.contact.status.redeemed":  st.Redeemed,
	} {
		if val == st.Delivered {
			v.add("intake.contact.status.delivered", "has the same option value as %s", key)
		}
	}
	for i, p := range c.Portals {
		if !oneOf(p.Email.Channel, ChannelDataverse, ChannelSMTP) {
			v.add(portalKey(i, "email.channel"), "must be dataverse or smtp")
		}
		if p.Email.PendingAlertAfter <= 0 {
			v.add(portalKey(i, "email.pending_alert_after"), "must be greater than 0 (e.g. 30m)")
		}
	}
	if !c.UsesSMTP() {
		return
	}
	s := c.SMTP
	host := strings.Trim(strings.TrimSpace(s.Host), "[]")
	if host == "" {
		v.add("smtp.host", "is required when a portal's email.channel is smtp")
	}
	if s.Port < 0 || s.Port > 65535 {
		v.add("smtp.port", "must be between 1 and 65535 (0 = the default for smtp.security)")
	}
	switch s.Security {
	case "starttls", "tls":
	case "none":
		if host != "" && !loopbackHost(host) {
			v.add("smtp.security", "none sends credentials and invitation links in clear text and is allowed only for a loopback host; use starttls or tls for %s", host)
		}
	default:
		v.add("smtp.security", "must be starttls, tls or none (loopback only)")
	}
	if s.Password != "" && s.Username == "" {
		v.add("smtp.username", "is required when smtp.password is set")
	}
	if at := strings.LastIndexByte(s.From, '@'); strings.TrimSpace(s.From) == "" || at < 1 || at >= len(strings.TrimRight(s.From, "> "))-1 {
		v.add("smtp.from", "must be the sender address, e.g. \"Contoso Portal <portal@contoso.com>\"")
	}
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// PendingAlertAfterOf returns the portal's pending_alert_after, or the default.
func (p Portal) PendingAlertAfterOf() time.Duration {
	if p.Email.PendingAlertAfter > 0 {
		return p.Email.PendingAlertAfter.D()
	}
	return DefaultPendingAlertAfter
}
