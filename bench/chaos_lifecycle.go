package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
)

// Reminder schedule of the lifecycle part: invitations expire two minutes
// after they are sent, with reminders 90 s and 60 s before, and every
// replica looks every two seconds.
const (
	lcExpiresAfter = 2 * time.Minute
	lcSchedule     = "@every 2s"
	// lcLease is intake.lifecycle.lease: a killed replica's claim lapses
	// well before the next reminder is due, as the 10-minute default does
	// for reminders days apart.
	lcLease = 12 * time.Second
)

var lcReminders = []time.Duration{90 * time.Second, 60 * time.Second}

type lifecycleChaosResult struct {
	Replicas int `json:"replicas"`

	// (a) reminders and expiry with replicas killed mid-run.
	Invitations     int      `json:"invitations"`
	Reminders       [2]int   `json:"reminders_by_index"`   // invitations with exactly one reminder of the index
	Missing         [2]int   `json:"missing_by_index"`     // invitations without it
	Twice           int      `json:"reminders_sent_twice"` // (invitation, index) pairs with more than one email
	HeldAtEnd       []string `json:"claims_held_by_killed_replicas"`
	MissingHeld     int      `json:"missing_explained_by_held_claims"`
	Expired         int      `json:"contacts_expired"`
	ExpiredTwice    int      `json:"contacts_expired_more_than_once"`
	NotExpired      int      `json:"contacts_not_expired"`
	NotExpiredHeld  int      `json:"not_expired_explained_by_held_claims"`
	InvitationMails int      `json:"invitation_emails"`
	Kills           []string `json:"kills"`

	// (b) Resend and Revoke racing on one contact.
	Raced          int         `json:"raced_contacts"`
	Sequential     int         `json:"resend_then_revoke"`
	Concurrent     int         `json:"fired_together"`
	LaterResend    int         `json:"resend_landed_later"`
	Final          map[int]int `json:"final_status"`
	Inconsistent   []string    `json:"inconsistent"`
	ResendEmails   int         `json:"resend_emails"`
	WorkingLinks   int         `json:"working_links_of_revoked"`
	StuckCommands  int         `json:"stuck_in_resend_or_revoke_requested"`
	HookStatuses   map[int]int `json:"webhook_statuses"`
	CommandMetrics map[string]float64
	Events         []string `json:"events"`
}

// chaosLifecycle: (a) open invitations go through their reminders and
// expiry while a replica is SIGKILLed during each reminder run and started
// again; (b) a Resend and a Revoke race on each of many contacts, as the
// CRM user's two clicks, with every webhook delivered twice.
func chaosLifecycle(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "lifecycle", Title: "Reminders and expiry with replicas killed mid-run; Resend and Revoke racing on one contact"}
	n, m := 200, 100
	if o.quick {
		n, m = 40, 20
	}
	if o.contacts > 0 {
		n, m = o.contacts, max(2, o.contacts/2)
	}
	res, err := runLifecycleChaos(ctx, h, n, m)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	sec.Columns = []string{"check", "expected", "got"}
	sec.row("(a) invitations with reminder 1 (90 s before expiry) exactly once", n, res.Reminders[0])
	sec.row("(a) invitations with reminder 2 (60 s before expiry) exactly once", n, res.Reminders[1])
	sec.row("(a) reminders sent twice to one invitation", 0, res.Twice)
	sec.row("(a) missing reminders (of them, claims a killed replica still held)", "0", fmt.Sprintf("%d (%d)", res.Missing[0]+res.Missing[1], res.MissingHeld))
	sec.row("(a) contacts Expired (expiry written more than once)", fmt.Sprintf("%d (0)", n), fmt.Sprintf("%d (%d)", res.Expired, res.ExpiredTwice))
	sec.row("(b) contacts raced (Resend then Revoke / fired together)", fmt.Sprintf("%d", m), fmt.Sprintf("%d (%d / %d)", res.Raced, res.Sequential, res.Concurrent))
	sec.row("(b) outcome matches the later click, written back", m, m-len(res.Inconsistent))
	sec.row("(b) working links of Revoked contacts", 0, res.WorkingLinks)
	sec.row("(b) left in Resend requested / Revoke requested", 0, res.StuckCommands)

	sec.check(res.Twice == 0, "%d reminders went out twice for one invitation", res.Twice)
	// The lease is short enough for a killed replica's claim to lapse while
	// its reminder is still due, so every reminder must go out exactly once.
	sec.check(res.Missing[0]+res.Missing[1] == 0, "%d reminders missing (%d of them claims a killed replica still held)", res.Missing[0]+res.Missing[1], res.MissingHeld)
	sec.check(res.ExpiredTwice == 0, "%d contacts had their expiry written more than once", res.ExpiredTwice)
	sec.check(res.NotExpired == 0, "%d contacts not Expired (%d of them claims a killed replica still held)", res.NotExpired, res.NotExpiredHeld)
	sec.check(res.InvitationMails == n, "%d invitation emails for %d invitations", res.InvitationMails, n)
	sec.check(len(res.Inconsistent) == 0, "inconsistent outcomes: %s", strings.Join(first(res.Inconsistent, 10), "; "))
	sec.check(res.WorkingLinks == 0, "%d links of revoked invitations still open the sign-up page", res.WorkingLinks)
	sec.check(res.StuckCommands == 0, "%d contacts left in Resend requested or Revoke requested", res.StuckCommands)
	sec.check(res.Raced == m, "%d contacts raced, want %d", res.Raced, m)

	sec.note("(a) %d replicas of `connector serve`, `intake.lifecycle.schedule: %q`, `lease: %s`; the partner portal's invitations expire %s after they are sent with `reminders: [%s, %s]`. %d contacts invited by the CRM user's clicks; every webhook delivered twice. A reminder is an email regarding the invitation whose subcategory carries `pinv:reminder:<index>:<expiry>`, counted in the emulator per invitation and index; an expiry is the connector's PATCH of the contact (the request log, per contact) and the Expired status.",
		res.Replicas, lcSchedule, lcLease, lcExpiresAfter, lcReminders[0], lcReminders[1], n)
	sec.note("Kills: %s.", strings.Join(res.Kills, "; "))
	if len(res.HeldAtEnd) > 0 {
		sec.note("Claims still held at the end by killed replicas (the %s lease had not lapsed): %s.", lcLease, strings.Join(res.HeldAtEnd, ", "))
	} else {
		sec.note("No claim was left held by a killed replica.")
	}
	sec.note("(b) %d contacts invited to the customer portal, then for each the CRM user's Resend invitation and Revoke invitation clicks (PATCHes of the status column to Resend requested and Revoke requested, as the demo buttons do): %d contacts Resend then Revoke as soon as the first returned, %d with both PATCHes fired at once (the later one told by the row version each returned; Resend landed later for %d). What the product guarantees: the worker acts on the status it reads under the per-contact lock and writes back only if the row is unchanged, so the contact ends as the later click says. Revoked: every invitation of the contact deactivated (statecode 1, statuscode 2), no link that opens the sign-up page. Sent or Delivered: one open invitation whose newest link works. Final statuses: %v; resend emails %d.",
		m, res.Sequential, res.Concurrent, res.LaterResend, res.Final, res.ResendEmails)
	sec.note("Webhook POSTs at the balancer by answer: %v. Timeline: %s.", res.HookStatuses, strings.Join(res.Events, "; "))
	sec.Data = res
	return sec
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func runLifecycleChaos(ctx context.Context, h *harness, n, m int) (*lifecycleChaosResult, error) {
	st, err := h.stage("chaos-lifecycle")
	if err != nil {
		return nil, err
	}
	defer st.close()
	c, err := st.startCluster(ctx, clusterOptions{
		Emulator: emulator.Options{Webhooks: emulator.WebhookOptions{Duplicate: 1}, RequestLogSize: 200000},
		Replicas: 3,
		Config: connectorConfig{
			PollSchedule: "@every 5s", Lease: 10 * time.Second, CodeLookups: 1_000_000,
			LifecycleSchedule: lcSchedule, LifecycleLease: lcLease,
			PartnerInvitation: fmt.Sprintf("      expires_after: %s\n      reminders: [%s, %s]\n", lcExpiresAfter, lcReminders[0], lcReminders[1]),
		},
	})
	if err != nil {
		return nil, err
	}
	res := &lifecycleChaosResult{Replicas: len(c.replicas)}
	start := time.Now()
	var evMu sync.Mutex
	event := func(format string, args ...any) {
		msg := fmt.Sprintf("%.1fs ", time.Since(start).Seconds()) + fmt.Sprintf(format, args...)
		evMu.Lock()
		res.Events = append(res.Events, msg)
		evMu.Unlock()
		st.logf("%s", msg)
	}
	if err := lifecycleReminders(ctx, c, n, res, event); err != nil {
		return res, err
	}
	if err := lifecycleRace(ctx, c, m, res, event); err != nil {
		return res, err
	}
	res.HookStatuses = c.lb.hookStatuses()
	return res, nil
}

// reminderEmails maps invitation id -> reminder index -> emails.
func reminderEmails(g *org) map[string]map[int]int {
	out := map[string]map[int]int{}
	for _, e := range g.Outbox() {
		if !strings.HasPrefix(e.Subject, "Reminder: ") {
			continue
		}
		row, _ := g.Row("email", e.ID)
		sub, _ := row["subcategory"].(string)
		rest, ok := strings.CutPrefix(sub, "pinv:reminder:")
		if !ok {
			continue
		}
		var idx int
		if _, err := fmt.Sscanf(rest, "%d:", &idx); err != nil {
			continue
		}
		inv := strings.ToLower(e.RegardingID)
		if out[inv] == nil {
			out[inv] = map[int]int{}
		}
		out[inv][idx]++
	}
	return out
}

func lifecycleReminders(ctx context.Context, c *cluster, n int, res *lifecycleChaosResult, event func(string, ...any)) error {
	g := c.org
	cs, err := g.insertContacts("lifecycle", n, nil)
	if err != nil {
		return err
	}
	if err := parallel(ctx, 8, n, func(i int) error { return g.clickPortal(ctx, cs[i].ID, partnerPortal, clickRoles) }); err != nil {
		return err
	}
	event("%d clicks done", n)
	if _, err := g.waitSent(ctx, cs, 60*time.Second, nil); err != nil {
		return err
	}
	event("%d invitations sent", n)
	want := map[string]bool{}
	for _, ct := range cs {
		want[ct.ID] = true
	}
	invOf := map[string]string{} // invitation -> contact
	var lastExpiry time.Time
	for _, inv := range g.Rows("adx_invitation") {
		cid, _ := inv["adx_invitecontact"].(string)
		if !want[cid] {
			continue
		}
		id, _ := inv["adx_invitationid"].(string)
		invOf[strings.ToLower(id)] = cid
		if t, ok := inv["adx_expirydate"].(time.Time); ok && t.After(lastExpiry) {
			lastExpiry = t
		}
	}
	res.Invitations = len(invOf)
	if lastExpiry.IsZero() {
		lastExpiry = time.Now().Add(lcExpiresAfter)
	}

	// Kill a replica when a third of each reminder's emails are out, and
	// start it again three seconds later, as a supervisor would.
	victims := []*replica{c.replicas[1], c.replicas[2]}
	for idx, victim := range victims {
		deadline := time.Now().Add(lcExpiresAfter)
		for {
			sent := 0
			for _, per := range reminderEmails(g) {
				if per[idx] > 0 {
					sent++
				}
			}
			if sent >= n/3 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("reminder %d: only %d of %d sent after %s", idx+1, sent, n, lcExpiresAfter)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		victim.kill()
		msg := fmt.Sprintf("SIGKILL %s during the run of reminder %d", victim.Name, idx+1)
		res.Kills = append(res.Kills, msg)
		event("%s", msg)
		time.Sleep(3 * time.Second)
		if err := victim.start(ctx); err != nil {
			return err
		}
		event("%s restarted", victim.Name)
	}
	// Wait for every expiry (or the claims a killed replica still holds).
	deadline := lastExpiry.Add(45 * time.Second)
	for time.Now().Before(deadline) {
		expired := 0
		for _, ct := range cs {
			if s, _ := g.statusOf(ct.ID); s == emulator.InviteExpired {
				expired++
			}
		}
		if expired == n {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	event("expiry settled")

	held := heldClaims(ctx, c.redis)
	rem := reminderEmails(g)
	for inv := range invOf {
		for idx := range 2 {
			switch k := rem[inv][idx]; {
			case k == 1:
				res.Reminders[idx]++
			case k > 1:
				res.Twice++
			default:
				res.Missing[idx]++
				if held[fmt.Sprintf("%s:reminder:%d", inv, idx)] {
					res.MissingHeld++
				}
			}
		}
	}
	for k := range held {
		res.HeldAtEnd = append(res.HeldAtEnd, k)
	}
	slices.Sort(res.HeldAtEnd)
	// Expiry writes: the connector's PATCHes of each contact outside a
	// change set (the invitation's write-back and Delivered are inside
	// theirs; the reminders write nothing on the contact).
	app := appUserID(g, g.ClientID)
	patches := map[string]int{}
	for _, l := range g.RequestLog() {
		if l.Caller != app || l.InBatch || l.Method != http.MethodPatch || l.Route != "contacts({id})" {
			continue
		}
		if i := strings.Index(l.Path, "contacts("); i >= 0 {
			id := strings.ToLower(strings.SplitN(l.Path[i+len("contacts("):], ")", 2)[0])
			patches[id]++
		}
	}
	invByContact := map[string]string{}
	for inv, cid := range invOf {
		invByContact[cid] = inv
	}
	for _, ct := range cs {
		if s, _ := g.statusOf(ct.ID); s == emulator.InviteExpired {
			res.Expired++
		} else {
			res.NotExpired++
			if held[invByContact[ct.ID]+":expiry"] {
				res.NotExpiredHeld++
			}
		}
		if patches[strings.ToLower(ct.ID)] > 1 {
			res.ExpiredTwice++
		}
	}
	_, res.InvitationMails = invitationEmailsTo(g, cs)
	return nil
}

// invitationEmailsTo counts the emails to the contacts that are not
// reminders: per address and in all.
func invitationEmailsTo(g *org, cs []contact) (map[string]int, int) {
	addr := map[string]bool{}
	for _, ct := range cs {
		addr[strings.ToLower(ct.Email)] = true
	}
	per, total := map[string]int{}, 0
	for _, e := range g.Outbox() {
		if strings.HasPrefix(e.Subject, "Reminder: ") {
			continue
		}
		for _, to := range e.To {
			if addr[strings.ToLower(to)] {
				per[strings.ToLower(to)]++
				total++
			}
		}
	}
	return per, total
}

// heldClaims lists the lifecycle claims left in Redis ("<invitation>:reminder:<i>"
// or "<invitation>:expiry"): the live replicas drop theirs when done, so
// what is left was held by a killed one.
func heldClaims(ctx context.Context, rs *redisServer) map[string]bool {
	rdb := rs.client()
	defer rdb.Close()
	out := map[string]bool{}
	iter := rdb.Scan(ctx, 0, "pinv:lifecycle:*:claim", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		lb, rb := strings.Index(k, "{"), strings.Index(k, "}")
		if lb < 0 || rb < lb {
			continue
		}
		inv, rest := k[lb+1:rb], strings.TrimPrefix(k[rb+1:], ":")
		what := "expiry"
		if strings.HasPrefix(rest, "reminder:") {
			what = "reminder:" + strings.SplitN(strings.TrimPrefix(rest, "reminder:"), ":", 2)[0]
		}
		out[inv+":"+what] = true
	}
	return out
}

// command is the CRM user's Resend or Revoke click: a PATCH of the status
// column; it returns the row version the update produced.
func (g *org) command(ctx context.Context, id string, status int) (int64, error) {
	var (
		rec dataverse.Record
		err error
	)
	for range 10 {
		rec, err = g.crm.Update(ctx, "contacts", id, map[string]any{emulator.ColInviteStatus: status},
			&dataverse.WriteOptions{Return: true, Select: []string{"versionnumber"},
				Headers: http.Header{"MSCRMCallerID": {emulator.DemoAdminUserID}}})
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("command %d on %s: %w", status, id, err)
	}
	return rowVersion(rec), nil
}

// rowVersion is the version a write returned: versionnumber, else the
// digits of the ETag (W/"<version>").
func rowVersion(rec dataverse.Record) int64 {
	if v := rec.Int("versionnumber"); v > 0 {
		return int64(v)
	}
	var v int64
	for _, r := range rec.ETag() {
		if r >= '0' && r <= '9' {
			v = v*10 + int64(r-'0')
		}
	}
	return v
}

func lifecycleRace(ctx context.Context, c *cluster, m int, res *lifecycleChaosResult, event func(string, ...any)) error {
	g := c.org
	cs, err := g.insertContacts("race", m, nil)
	if err != nil {
		return err
	}
	if err := parallel(ctx, 8, m, func(i int) error { return g.clickPortal(ctx, cs[i].ID, customerPortal, []string{"Customers"}) }); err != nil {
		return err
	}
	if _, err := g.waitSent(ctx, cs, 60*time.Second, nil); err != nil {
		return err
	}
	event("%d contacts invited to the customer portal", m)
	emailsBefore, _ := invitationEmailsTo(g, cs)
	laterResend := make([]bool, m)
	var mu sync.Mutex
	err = parallel(ctx, 8, m, func(i int) error {
		id := cs[i].ID
		if i%2 == 0 {
			// Resend, then Revoke as soon as the first click returned.
			if _, err := g.command(ctx, id, emulator.InviteResend); err != nil {
				return err
			}
			_, err := g.command(ctx, id, emulator.InviteRevoke)
			return err
		}
		var (
			wg     sync.WaitGroup
			vr, vk int64
			er, ek error
		)
		resend := func() { defer wg.Done(); vr, er = g.command(ctx, id, emulator.InviteResend) }
		revoke := func() { defer wg.Done(); vk, ek = g.command(ctx, id, emulator.InviteRevoke) }
		wg.Add(2)
		// Alternate which goroutine starts first: the scheduler tends to
		// run the newest one first.
		if i%4 == 1 {
			go resend()
			go revoke()
		} else {
			go revoke()
			go resend()
		}
		wg.Wait()
		if er != nil {
			return er
		}
		if ek != nil {
			return ek
		}
		if vr == 0 || vk == 0 {
			return fmt.Errorf("contact %s: no row version returned (resend %d, revoke %d)", id, vr, vk)
		}
		mu.Lock()
		laterResend[i] = vr > vk
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	event("%d Resend and Revoke pairs clicked", m)
	// Wait until no contact asks for a command any more.
	deadline := time.Now().Add(90 * time.Second)
	for {
		pending := 0
		for _, ct := range cs {
			if s, _ := g.statusOf(ct.ID); s == emulator.InviteResend || s == emulator.InviteRevoke {
				pending++
			}
		}
		res.StuckCommands = pending
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	// Let duplicated webhooks and the write-backs' own webhooks settle.
	g.WaitWebhooks()
	time.Sleep(3 * time.Second)
	event("commands settled (%d still asking)", res.StuckCommands)

	res.Raced, res.Final = m, map[int]int{}
	invs := map[string][]map[string]any{}
	for _, inv := range g.Rows("adx_invitation") {
		cid, _ := inv["adx_invitecontact"].(string)
		invs[cid] = append(invs[cid], inv)
	}
	codes := allInvitationCodes(g.Outbox())
	emailsAfter, _ := invitationEmailsTo(g, cs)
	lookup := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, ct := range cs {
		if i%2 == 0 {
			res.Sequential++
		} else {
			res.Concurrent++
			if laterResend[i] {
				res.LaterResend++
			}
		}
		s, errText := g.statusOf(ct.ID)
		res.Final[s]++
		addr := strings.ToLower(ct.Email)
		resent := emailsAfter[addr] - emailsBefore[addr]
		res.ResendEmails += resent
		bad := func(format string, args ...any) {
			res.Inconsistent = append(res.Inconsistent, ct.ID+": "+fmt.Sprintf(format, args...))
		}
		if resent < 0 || resent > 1 {
			bad("%d resend emails", resent)
		}
		if len(invs[ct.ID]) != 1 {
			bad("%d invitations", len(invs[ct.ID]))
			continue
		}
		inv := invs[ct.ID][0]
		state, reason := num(inv["statecode"]), num(inv["statuscode"])
		wantRevoked := !laterResend[i]
		working := 0
		var newestWorks bool
		for k, code := range codes[addr] {
			ok, err := linkWorks(ctx, lookup, c.lb.URL, code)
			if err != nil {
				bad("link: %v", err)
				continue
			}
			if ok {
				working++
				newestWorks = k == len(codes[addr])-1
			}
		}
		switch {
		case wantRevoked:
			if s != emulator.InviteRevoked || state != 1 || reason != 2 || errText != "" {
				bad("later click Revoke: status %d, invitation %d/%d, error %q", s, state, reason, errText)
			}
			res.WorkingLinks += working
		default:
			if (s != emulator.InviteSent && s != emulator.InviteDelivered) || state != 0 || working != 1 || !newestWorks || resent != 1 {
				bad("later click Resend: status %d, invitation %d/%d, %d working links (newest works %v), %d resend emails", s, state, reason, working, newestWorks, resent)
			}
		}
	}
	return nil
}

// allInvitationCodes maps recipient address -> the codes of the emails sent
// to it, oldest first.
func allInvitationCodes(out []emulator.SentEmail) map[string][]string {
	codes := map[string][]string{}
	slices.SortStableFunc(out, func(a, b emulator.SentEmail) int { return a.SentAt.Compare(b.SentAt) })
	for _, e := range out {
		mm := linkRe.FindStringSubmatch(e.HTML)
		if mm == nil {
			continue
		}
		u, err := url.Parse(strings.ReplaceAll(mm[1], "&amp;", "&"))
		if err != nil {
			continue
		}
		for _, to := range e.To {
			codes[strings.ToLower(to)] = append(codes[strings.ToLower(to)], u.Query().Get("code"))
		}
	}
	return codes
}

// linkWorks reports whether an invitation link opens the sign-up page.
func linkWorks(ctx context.Context, client *http.Client, base, code string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/invitation?code="+url.QueryEscape(code), nil)
	if err != nil {
		return false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return false, fmt.Errorf("GET /invitation: %s", resp.Status)
	}
	return resp.StatusCode == http.StatusOK, nil
}

// num reads an integer column value.
func num(v any) int {
	switch x := v.(type) {
	case int:
		return x
	case int64:
		return int(x)
	case float64:
		return int(x)
	}
	return -1
}
