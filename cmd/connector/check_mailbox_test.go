package main

import (
	"strings"
	"testing"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

// TestCheckMailbox: connector check reads the sender's mailbox and, for a
// mailbox that is not approved and not sending through server-side sync,
// prints each ✗ with the fix in the admin centre.
func TestCheckMailbox(t *testing.T) {
	org := newTestOrg(t)
	env := org.getenv(org.emu.ClientSecret)
	_, out, _ := runCLI(t, env, "check", "--config", org.cfgPath)
	for _, want := range []string{
		`✓ portal "Contoso Partner Portal": sender mailbox`,
		"email address approved (emailrouteraccessapproval: approved)",
		"outgoing email through server-side synchronization",
		`portal "Contoso Customer Portal": emails are sent from the CRM user who clicks Invite`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	mb, ok := org.emu.MailboxOf(org.seed.MailerUserID)
	if !ok {
		t.Fatal("the demo mailer has no mailbox")
	}
	if err := org.emu.SetMailbox(mb, map[string]any{"emailrouteraccessapproval": emulator.ApprovalPending,
		"outgoingemaildeliverymethod": emulator.OutgoingOutlook}); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, env, "check", "--config", org.cfgPath)
	if code != exitFail {
		t.Fatalf("exit %d with an unapproved mailbox, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"email address approved (emailrouteraccessapproval: pending approval)\n    → Power Platform admin center",
		"select Approve Email",
		"outgoing email through server-side synchronization (outgoingemaildeliverymethod: Dynamics 365 for Outlook)\n    → ",
		"set Outgoing Email to Server-Side Synchronization or Email Router",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}
