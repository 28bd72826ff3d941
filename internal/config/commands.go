package config

// Defaults of the Resend/Revoke command values and the statuses they lead to.
const (
	StatusResend  = 100000005
	StatusRevoke  = 100000006
	StatusRevoked = 100000007
	StatusExpired = 100000008
)

// applyCommandDefaults fills the command status values absent from the file.
func (c *Config) applyCommandDefaults(present map[string]bool) {
	st := &c.Intake.Contact.Status
	for _, f := range []struct {
		v   *int
		key string
		def int
	}{
		{&st.Resend, "intake.contact.status.resend", StatusResend},
		{&st.Revoke, "intake.contact.status.revoke", StatusRevoke},
		{&st.Revoked, "intake.contact.status.revoked", StatusRevoked},
		{&st.Expired, "intake.contact.status.expired", StatusExpired},
	} {
		if !present[f.key] && *f.v == 0 {
			*f.v = f.def
		}
	}
}

// validateCommands checks that each command and lifecycle status has an
// option value of its own: a shared value would make a Revoke click read
// as another status.
func (c *Config) validateCommands(v *validator) {
	st := c.Intake.Contact.Status
	all := []struct {
		key string
		val int
	}{
		{"intake.contact.status.requested", st.Requested},
		{"intake.contact.status.sent", st.Sent},
		{"intake.contact.status.failed", st.Failed},
		{"intake.contact.status.redeemed", st.Redeemed},
		{"intake.contact.status.delivered", st.Delivered},
		{"intake.contact.status.resend", st.Resend},
		{"intake.contact.status.revoke", st.Revoke},
		{"intake.contact.status.revoked", st.Revoked},
		{"intake.contact.status.expired", st.Expired},
	}
	for i, a := range all[5:] {
		if a.val <= 0 {
			v.add(a.key, "must be a positive option value")
			continue
		}
		for _, b := range all[:5+i] {
			if a.val == b.val {
				v.add(a.key, "has the same option value as %s", b.key)
				break
			}
		}
	}
}
