package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
)

// requestsResult is benchmark 1's data.
type requestsResult struct {
	Invitations         int                `json:"invitations"`
	Redemptions         int                `json:"redemptions"`
	ConnInvite          float64            `json:"connector_requests_per_invitation"`
	ConnInviteOps       float64            `json:"connector_operations_per_invitation"`
	ConnPage            float64            `json:"connector_requests_per_invitation_page"`
	ConnSignup          float64            `json:"connector_requests_per_signup"`
	ConnSignupOps       float64            `json:"connector_operations_per_signup"`
	NaiveInvite         float64            `json:"naive_requests_per_invitation"`
	NaivePage           float64            `json:"naive_requests_per_invitation_page"`
	NaiveSignup         float64            `json:"naive_requests_per_signup"`
	ConnInviteRoutes    map[string]float64 `json:"connector_invitation_routes"`
	ConnDelivery        float64            `json:"connector_requests_per_delivery_followup"`
	ConnDeliveryOps     float64            `json:"connector_operations_per_delivery_followup"`
	ConnDeliveryRoutes  map[string]float64 `json:"connector_delivery_routes"`
	ConnRedemptionRoute map[string]float64 `json:"connector_redemption_routes"`
}

// benchRequests counts the Dataverse requests the connector makes per
// invitation (Invite to portal clicked → webhook → email sent → contact
// Sent) and per redemption (invitation page, then sign-up), against the
// naive baseline run on the same organization.
func benchRequests(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "requests", Title: "1. Dataverse requests per invitation and per redemption"}
	n, nRedeem := 50, 20
	if o.quick {
		n, nRedeem = 20, 10
	}
	st, err := h.stage("requests")
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	defer st.close()
	// Server-side sync holds each email in Pending Send for a few seconds
	// (Dataverse: minutes), so the invitations are all Sent, and counted,
	// before the first delivery follow-up starts; no mailbox limits, so
	// every email is delivered.
	c, err := st.startCluster(ctx, clusterOptions{
		Emulator: emulator.Options{RequestLogSize: 1 << 20, EmailSync: emulator.EmailSyncOptions{
			Delay: requestsSyncDelay, Limits: emulator.MailboxLimits{Messages: -1, Recipients: -1}}},
		Config: connectorConfig{CodeLookups: 10000, Redemptions: 10000}, // one address redeems them all
	})
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	g := c.org
	conn, err := g.insertContacts("conn", n, nil)
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	naiveCs, err := g.insertContacts("naive", n, nil)
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	res := requestsResult{Invitations: n, Redemptions: nRedeem}

	// The connector: clicks, webhooks, emails.
	st.logf("connector: %d invitations through the webhook", n)
	t0 := time.Now()
	if _, err := g.clickAll(ctx, conn, 4, 0); err != nil {
		sec.Error = err.Error()
		return sec
	}
	if err := waitStatus(ctx, g, conn, emulator.InviteSent, time.Minute); err != nil {
		sec.Error = err.Error()
		return sec
	}
	settle(g, emulator.AppUserID)
	tSent := time.Now()
	inv := countRequests(g.RequestLog(), emulator.AppUserID, t0, tSent)
	if inv.ByRoute["GET emails"] > 0 { // the follow-up's query for the invitation's newest email
		sec.Error = fmt.Sprintf("a delivery follow-up started before every invitation was Sent (%s Pending Send was too short for this machine)", requestsSyncDelay)
		return sec
	}
	res.ConnInvite = float64(inv.Requests) / float64(n)
	res.ConnInviteOps = float64(inv.Requests-inv.ByRoute["POST $batch"]+inv.BatchParts) / float64(n)
	res.ConnInviteRoutes = perN(inv.ByRoute, n)

	// Each email's Update step (statuscode) → contact Delivered.
	if err := waitStatus(ctx, g, conn, emulator.InviteDelivered, time.Minute); err != nil {
		sec.Error = err.Error()
		return sec
	}
	settle(g, emulator.AppUserID)
	del := countRequests(g.RequestLog(), emulator.AppUserID, tSent, time.Now())
	res.ConnDelivery = float64(del.Requests) / float64(n)
	res.ConnDeliveryOps = float64(del.Requests-del.ByRoute["POST $batch"]+del.BatchParts) / float64(n)
	res.ConnDeliveryRoutes = perN(del.ByRoute, n)

	// The connector's site: the invitation page, then the sign-up.
	st.logf("connector: %d redemptions on the site", nRedeem)
	codes := invitationCodes(g.Outbox())
	var page, signup, signupOps int
	redemptionRoutes := map[string]int{}
	for i, ct := range conn[:nRedeem] {
		code := codes[strings.ToLower(ct.Email)]
		b := newBrowser(c.replicas[0].URL, "")
		t1 := time.Now()
		p, err := b.get("/invitation?code=" + code)
		if err != nil || p.Status != http.StatusOK {
			sec.Error = fmt.Sprintf("invitation page: %v %v", err, statusOf(p))
			return sec
		}
		t2 := time.Now()
		form := hidden(p.Body)
		form.Set("username", fmt.Sprintf("conn-user-%d", i))
		form.Set("password", benchPassword)
		form.Set("confirm_password", benchPassword)
		p, err = b.do(http.MethodPost, "/invitation", form, nil)
		if err != nil || p.Status != http.StatusSeeOther {
			sec.Error = fmt.Sprintf("sign-up: %v %v", err, statusOf(p))
			return sec
		}
		settle(g, emulator.AppUserID)
		t3 := time.Now()
		log := g.RequestLog()
		pc := countRequests(log, emulator.AppUserID, t1, t2)
		sc := countRequests(log, emulator.AppUserID, t2, t3)
		page += pc.Requests
		signup += sc.Requests
		signupOps += sc.Requests - sc.ByRoute["POST $batch"] + sc.BatchParts
		for k, v := range pc.ByRoute {
			redemptionRoutes["page: "+k] += v
		}
		for k, v := range sc.ByRoute {
			redemptionRoutes["sign-up: "+k] += v
		}
	}
	res.ConnPage = float64(page) / float64(nRedeem)
	res.ConnSignup = float64(signup) / float64(nRedeem)
	res.ConnSignupOps = float64(signupOps) / float64(nRedeem)
	res.ConnRedemptionRoute = perN(redemptionRoutes, nRedeem)

	// The naive baseline, same organization, its own application user.
	st.logf("naive baseline: %d invitations, %d redemptions", n, nRedeem)
	dv, err := g.client(naiveClientID, naiveSecret, dataverse.Config{}, nil)
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	who, err := dv.WhoAmI(ctx)
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	nv, err := newNaive(dv, g, c.lb.URL)
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	t4 := time.Now()
	naiveCodes := make([]string, n)
	for i, ct := range naiveCs {
		if naiveCodes[i], err = nv.invite(ctx, ct.ID, clickRoles); err != nil {
			sec.Error = err.Error()
			return sec
		}
	}
	t5 := time.Now()
	for i := range nRedeem {
		if err := nv.lookup(ctx, naiveCodes[i]); err != nil {
			sec.Error = err.Error()
			return sec
		}
	}
	t6 := time.Now()
	for i := range nRedeem {
		if err := nv.redeem(ctx, naiveCodes[i], fmt.Sprintf("naive-user-%d", i), benchPassword); err != nil {
			sec.Error = err.Error()
			return sec
		}
	}
	t7 := time.Now()
	log := g.RequestLog()
	res.NaiveInvite = float64(countRequests(log, who.UserID, t4, t5).Requests) / float64(n)
	res.NaivePage = float64(countRequests(log, who.UserID, t5, t6).Requests) / float64(nRedeem)
	res.NaiveSignup = float64(countRequests(log, who.UserID, t6, t7).Requests) / float64(nRedeem)

	sec.Columns = []string{"operation", "connector: HTTP requests", "connector: operations incl. $batch parts", "naive: HTTP requests", "naive / connector"}
	sec.row("invitation (click → webhook → email sent → contact Sent)", res.ConnInvite, res.ConnInviteOps, res.NaiveInvite, ratio(res.NaiveInvite, res.ConnInvite))
	sec.row("delivery follow-up (email Sent → contact Delivered)", res.ConnDelivery, res.ConnDeliveryOps, "–", "–")
	sec.row("invitation page (GET /invitation?code=…)", res.ConnPage, res.ConnPage, res.NaivePage, ratio(res.NaivePage, res.ConnPage))
	sec.row("sign-up (POST /invitation)", res.ConnSignup, res.ConnSignupOps, res.NaiveSignup, ratio(res.NaiveSignup, res.ConnSignup))
	sec.row("redemption total (page + sign-up)", res.ConnPage+res.ConnSignup, res.ConnPage+res.ConnSignupOps,
		res.NaivePage+res.NaiveSignup, ratio(res.NaivePage+res.NaiveSignup, res.ConnPage+res.ConnSignup))
	sec.note("Means over %d invitations and %d redemptions, counted from the emulator's request log for the connector's application user (token requests excluded). Two web roles per invitation (%s).", n, nRedeem, strings.Join(clickRoles, ", "))
	sec.note("Service protection counts a `$batch` as one request; the operations column also counts its parts (what entitlement limits count).")
	sec.note("Connector per invitation, by route: %s.", routeList(res.ConnInviteRoutes))
	sec.note("Connector per delivery follow-up, by route: %s. Server-side sync held each email %s in Pending Send, so every invitation was Sent and counted before the first follow-up; the naive baseline does not follow its emails.", routeList(res.ConnDeliveryRoutes), requestsSyncDelay)
	sec.note("Connector per redemption, by route: %s.", routeList(res.ConnRedemptionRoute))
	sec.note("Naive baseline: the same Web API client, one request per row read or written (contact, open invitations, each web role by name, the invitation, each role association, the email with its parties, SendEmail, the invitation marked Sent, the contact write-back; for a sign-up: the invitation by code, the contact, the user-name check, the invitation's roles, the redemption count, the identity, each role association, the redemption activity). It skips the connector's duplicate-safe re-read, which flatters it.")
	sec.Data = res
	return sec
}

// requestsSyncDelay is how long the emulator keeps each email in Pending
// Send in benchmark 1.
const requestsSyncDelay = 4 * time.Second

// waitStatus waits until every contact shows the invite status want.
func waitStatus(ctx context.Context, g *org, cs []contact, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n := 0
		for _, c := range cs {
			row, _ := g.Row("contact", c.ID)
			if st, _ := row[emulator.ColInviteStatus].(int); st == want {
				n++
			}
		}
		if n == len(cs) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d contacts reached status %d after %s", n, len(cs), want, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// settle waits until the caller's request log stops growing (the outbox is
// visible a moment before the request that filled it is logged).
func settle(g *org, caller string) {
	prev := -1
	for range 50 {
		n := countRequests(g.RequestLog(), caller, time.Time{}, time.Time{}).Requests
		if n == prev {
			return
		}
		prev = n
		time.Sleep(40 * time.Millisecond)
	}
}

func perN(m map[string]int, n int) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = float64(v) / float64(n)
	}
	return out
}

func routeList(m map[string]float64) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("`%s` ×%s", k, cellString(m[k])))
	}
	return strings.Join(parts, ", ")
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f×", a/b)
}

func statusOf(p *page) string {
	if p == nil {
		return "(no response)"
	}
	return fmt.Sprintf("status %d %s", p.Status, p.Location)
}
