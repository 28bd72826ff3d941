package invite

import (
	"errors"
	"strings"
	"testing"
)

func TestResendAndRevokeForContact(t *testing.T) {
	e := newEnv(t, nil)
	c := e.contact(2)
	first := e.invite(c, partnerPortal)

	// Resend with hashed codes: a new code, the old one is gone, Sent.
	re, err := e.svc.ResendForContact(e.ctx, c, "")
	if err != nil {
		t.Fatalf("ResendForContact: %v", err)
	}
	if re.Invitation.ID != first.Invitation.ID || re.Code == first.Code || !re.EmailSent {
		t.Fatalf("resend = invitation %s code %s sent %v; first %s %s", re.Invitation.ID, re.Code, re.EmailSent, first.Invitation.ID, first.Code)
	}
	if _, err := e.svc.Lookup(e.ctx, string(first.Code)); !errors.Is(err, ErrCodeUnknown) {
		t.Fatalf("old code after resend: %v", err)
	}
	if got := num(e.row("contact", c)[DefaultContactColumns.Status]); got != DefaultContactColumns.Sent {
		t.Fatalf("contact status after resend = %d, want Sent", got)
	}

	// Revoke: the invitation is inactive (1/2), the contact Revoked.
	ids, err := e.svc.RevokeForContact(e.ctx, c, "")
	if err != nil || len(ids) != 1 || ids[0] != first.Invitation.ID {
		t.Fatalf("RevokeForContact = %v, %v", ids, err)
	}
	row := e.row("adx_invitation", first.Invitation.ID)
	if num(row["statecode"]) != 1 || num(row["statuscode"]) != invStatusInactive {
		t.Fatalf("revoked row %v/%v", row["statecode"], row["statuscode"])
	}
	if got := num(e.row("contact", c)[DefaultContactColumns.Status]); got != DefaultContactColumns.Revoked {
		t.Fatalf("contact status after revoke = %d, want Revoked", got)
	}
	if _, err := e.svc.Lookup(e.ctx, string(re.Code)); !errors.Is(err, ErrCodeRevoked) {
		t.Fatalf("code after revoke: %v", err)
	}
}

func TestResendRevokeWithoutOpenInvitation(t *testing.T) {
	e := newEnv(t, nil)
	c := e.contact(3)
	before := e.row("contact", c)
	for _, op := range []string{"resend", "revoke"} {
		var err error
		if op == "resend" {
			_, err = e.svc.ResendForContact(e.ctx, c, "")
		} else {
			_, err = e.svc.RevokeForContact(e.ctx, c, "")
		}
		if !errors.Is(err, ErrNoOpenInvitation) || !IsPermanent(err) {
			t.Fatalf("%s: err = %v, want ErrNoOpenInvitation", op, err)
		}
		after := e.row("contact", c)
		msg, _ := after[DefaultContactColumns.Error].(string)
		if !strings.Contains(msg, "No open invitation to "+op) {
			t.Fatalf("%s: error column = %q", op, msg)
		}
		if num(after[DefaultContactColumns.Status]) != num(before[DefaultContactColumns.Status]) {
			t.Fatalf("%s: status changed from %v to %v", op, before[DefaultContactColumns.Status], after[DefaultContactColumns.Status])
		}
	}
	list, err := e.svc.List(e.ctx, ListFilter{ContactID: c})
	if err != nil || len(list) != 0 {
		t.Fatalf("invitations = %d, %v; want none", len(list), err)
	}
}
