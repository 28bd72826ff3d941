package invite

import (
	"strings"
	"testing"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

// The caller's read (ReadContact) serves Invite: read + change set, two
// requests, on both data models; the reserved sender is the email's sender,
// and an open invitation to the other website does not count as this one's.
func TestInviteWithReadContactAndSender(t *testing.T) {
	e := newEnv(t, nil)
	for _, portal := range []string{partnerPortal, customerPortal} {
		e.invite(e.contact(5), portal) // warms the role cache
	}
	sender := "systemuser:" + strings.ToUpper(emulator.DemoAdminUserID)
	for i, portal := range []string{partnerPortal, customerPortal} {
		id := e.contact(i)
		if i == 1 {
			e.invite(id, partnerPortal) // an open invitation to the other website
		}
		e.em.ResetStats()
		rec, err := e.svc.ReadContact(e.ctx, id, "fullname")
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.svc.Invite(e.ctx, InviteRequest{ContactID: id, Portal: portal, Source: "test", Contact: rec, Sender: sender})
		if err != nil {
			t.Fatal(err)
		}
		if st := e.em.Stats(); st.Total != 2 {
			t.Errorf("%s: %d requests (%v), want 2", portal, st.Total, st.ByRoute)
		}
		if !res.Created || !res.EmailSent {
			t.Errorf("%s: %+v, want a new invitation emailed", portal, res)
		}
		from := ""
		for _, p := range e.em.Rows("activityparty") {
			if str(p["activityid"]) == res.EmailID && num(p["participationtypemask"]) == partySender {
				from = str(p["partyid"])
			}
		}
		if !strings.EqualFold(from, emulator.DemoAdminUserID) {
			t.Errorf("%s: email sent from %q, want the reserved sender %s", portal, from, emulator.DemoAdminUserID)
		}
	}
	if _, err := e.svc.Invite(e.ctx, InviteRequest{ContactID: e.contact(2), Portal: partnerPortal, Sender: "initiating_user"}); err == nil {
		t.Error("initiating_user accepted as a reserved sender")
	}
}
