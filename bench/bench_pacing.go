package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/bulk"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dataverse/emulator/throttle"
)

// The bulk command runs as its own application user, so its requests (a
// check for an open invitation and the Requested mark, per row) are told
// apart from the replicas' in the request log.
const (
	bulkClientID = "b3e0c0de-0000-4000-8000-0000000000c4"
	bulkSecret   = "bench-bulk-client-secret"
	benchAPIKey  = "bench-api-key-0123456789abcdef0123456789"
)

type pacingResult struct {
	Contacts int `json:"contacts"`
	Replicas int `json:"replicas"`
	Workers  int `json:"workers_per_replica"`
	// Scale multiplies every budget (mailbox and service protection) and
	// keeps every window.
	Scale           int     `json:"scale"`
	PerMinute       int     `json:"per_minute_per_sender"`
	PerDay          int     `json:"per_day_per_sender"`
	SenderLimit     float64 `json:"sender_limit_per_min"`    // sum over the senders
	DataverseLimit  float64 `json:"dataverse_limit_per_min"` // invitations a minute the request budget allows
	Achieved        float64 `json:"achieved_per_min"`
	Shortest        float64 `json:"shortest_possible_s"`
	Actual          float64 `json:"actual_s"` // start of the bulk command to the last email accepted
	FirstSend       float64 `json:"first_send_s"`
	Estimate        float64 `json:"estimate_s"`
	EstimateErr     float64 `json:"estimate_error"`
	PrintedEstimate string  `json:"printed_estimate"`
	CommandTook     float64 `json:"command_s"`
	CommandExit     int     `json:"command_exit"`
	CommandQueued   int     `json:"command_queued"`
	Schedule        string  `json:"schedule_printed"`

	Invitations   int            `json:"invitations"`
	MaxPerContact int            `json:"max_invitations_per_contact"`
	Emails        int            `json:"emails"`
	MaxEmails     int            `json:"max_emails_per_contact"`
	BySender      map[string]int `json:"emails_by_sender"`
	NotSent       int            `json:"emails_not_sent"`
	Status        map[int]int    `json:"contact_status"`
	QuotaAlerts   int            `json:"quota_alerts"`
	MaxParked     int            `json:"max_queued_seen"`
	QueueLeft     int64          `json:"queue_left"`
	DeadLetters   int64          `json:"dead_letters"`

	Requests      int            `json:"replica_requests"`
	PerInvitation float64        `json:"invitation_requests_per_invitation"`
	Split         requestSplit   `json:"replica_requests_split"`
	ByRoute       map[string]int `json:"replica_requests_by_route"`
	Throttled     int            `json:"replica_429s"`
	BulkRequests  int            `json:"bulk_command_requests"`
	BulkByRoute   map[string]int `json:"bulk_command_requests_by_route"`
	LogOverflow   bool           `json:"request_log_overflowed"`
}

// benchPacing: a bulk run of `connector invite --file` over two sender
// mailboxes, paced by several `connector serve` replicas to the mailboxes'
// limits, with the emulator's mailbox limits and service-protection limits
// raised by one factor (budgets × factor, windows unchanged) and the
// connector's email.rate raised by the same factor.
func benchPacing(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "pacing", Title: "Bulk invitations paced to two senders' mailbox limits (connector invite --file, three replicas)"}
	n, scale := 20000, 40
	if o.quick {
		n, scale = 2000, 8
	}
	if o.contacts > 0 {
		// Keep about eight rolling minutes of sending whatever the size.
		n, scale = o.contacts, max(1, o.contacts/500)
	}
	res, err := runPacing(ctx, h, n, scale)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	limit := min(res.SenderLimit, res.DataverseLimit)
	sec.Columns = []string{"contacts", "senders (limit each)", "replicas", "limit (inv/min)", "achieved (inv/min)", "fraction", "estimate", "actual finish", "estimate error", "requests / invitation", "quota alerts", "lost", "duplicated"}
	lost := res.Contacts - min(res.Contacts, res.Emails)
	dup := res.Emails - (res.Contacts - lost)
	sec.row(res.Contacts, fmt.Sprintf("2 (%d/min, %d/day)", res.PerMinute, res.PerDay), res.Replicas, limit, res.Achieved, res.Achieved/limit,
		fmt.Sprintf("%.0f s", res.Estimate), fmt.Sprintf("%.0f s", res.Actual), fmt.Sprintf("%+.1f %%", 100*res.EstimateErr),
		res.PerInvitation, res.QuotaAlerts, lost, dup)
	sec.check(res.Achieved >= 0.95*limit, "achieved %.0f invitations/min, below 0.95 × %.0f", res.Achieved, limit)
	sec.check(res.QuotaAlerts == 0, "%d quota alerts (ErrorSubmissionQuotaExceeded): the connector sent past a mailbox's limit", res.QuotaAlerts)
	sec.check(res.EstimateErr <= 0.10 && res.EstimateErr >= -0.10, "expected finish %.0f s after the start, actual %.0f s (%+.1f %%)", res.Estimate, res.Actual, 100*res.EstimateErr)
	sec.check(res.PerInvitation <= 2.0 && res.Split.InviteChangeSets == n, "%.3f Dataverse requests per invitation (want ≤ 2.0): %+v", res.PerInvitation, res.Split)
	sec.check(!res.LogOverflow && res.Split.Unattributed == 0, "request log: overflowed %v, %d reads of contacts never invited", res.LogOverflow, res.Split.Unattributed)
	sec.check(res.Invitations == n && res.MaxPerContact == 1, "invitations: %d (max %d per contact), want %d", res.Invitations, res.MaxPerContact, n)
	sec.check(res.Emails == n && res.MaxEmails == 1 && res.NotSent == 0, "emails: %d (max %d per contact, %d not accepted), want %d", res.Emails, res.MaxEmails, res.NotSent, n)
	sec.check(res.Status[emulator.InviteRequested] == 0 && res.Status[emulator.InviteSent]+res.Status[emulator.InviteDelivered] == n,
		"contact statuses %v: want all %d Sent or Delivered, none Requested", res.Status, n)
	sec.check(res.CommandExit == 0 && res.CommandQueued == n, "connector invite --file exited %d with %d rows queued of %d", res.CommandExit, res.CommandQueued, n)
	sec.check(res.MaxParked > 0, "no request ever waited for a budget: the run did not exercise pacing")
	sec.check(res.QueueLeft == 0 && res.DeadLetters == 0, "queue: %d left, %d dead letters", res.QueueLeft, res.DeadLetters)

	sec.note("Scale: the emulator's mailbox limits (30 messages a minute, 10,000 recipients a day per mailbox) and its service-protection limits (6000 requests and 20 minutes of execution per 5 minutes per user, 52 concurrent) have every budget multiplied by %d and every window kept; each portal's `email.rate` is 30 × %d = %d a minute and 10,000 × %d = %d a day. The pacer, the Dataverse client and the estimate all count in the real minute, as in production, so the 2 s pacing guard and the Dataverse round trips keep their real size against the window; only the budget per window is %d× larger.", res.Scale, res.Scale, res.PerMinute, res.Scale, res.PerDay, res.Scale)
	sec.note("Sender limit: 2 senders × %d messages a minute = %.0f invitations a minute (one message each). Dataverse ceiling: %d requests per 300 s per user ÷ %.2f requests per invitation (everything the replicas sent, following included) = %.0f invitations a minute (the execution budget, %d min per 300 s, allows far more at the emulator's default costs of milliseconds to tens of milliseconds per operation). The lower of the two, %.0f, is the limit.",
		res.PerMinute, res.SenderLimit, 6000*res.Scale, float64(res.Requests)/float64(res.Contacts), res.DataverseLimit, 20*res.Scale, limit)
	sec.note("Achieved = %d invitations ÷ %.1f s from the start of `connector invite --file` to the last email accepted by the mail server (first accepted at %.1f s). A rolling minute lets the first minute's budget go at once, so the shortest possible run is ⌊(n−1) ÷ limit⌋ minutes = %.0f s, %.3f of the measured run; the connector's 2 s guard (each send counts for 62 s in its sender's budget) costs 3 %% of it by design.",
		res.Contacts, res.Actual, res.FirstSend, res.Shortest, res.Shortest/res.Actual)
	sec.note("Estimate: what `connector invite --file` computes from the senders' budgets when it starts (bulk.Budget over the senders' state from `GET /api/v1/schedule`: nothing sent, nothing queued) for %d rows: %.0f s; its first progress line (after 10 s) printed %q. Error = (estimate − actual) ÷ actual. The command queued every row in %.0f s and ended.", res.Contacts, res.Estimate, res.PrintedEstimate, res.CommandTook)
	sp := res.Split
	sec.note("Requests per invitation: the replicas' HTTP requests in the emulator's request log (their application user, token requests left out, a $batch counted once), attributed per contact. An invitation's path is the worker's reads of the contact under the lock (the read Invite uses; %d, retries included) up to the change set that creates and sends it (%d): %.3f requests per invitation. Besides: %d reads of the same shape after the invitation, one per later message for the same row (the command queues each row and its Requested mark also fires the webhook; the second message reads the contact, finds it Sent and stops, spending no sender budget); %d reads and %d change sets following each email to Delivered (the email's Update step); %d other; %d reads of contacts never invited. In all %d requests (%.2f per invitation): %s; %d answered 429.",
		sp.PathReads, sp.InviteChangeSets, res.PerInvitation, sp.LaterReads, sp.Following, sp.OtherChangeSets, sp.Other, sp.Unattributed, res.Requests, float64(res.Requests)/float64(res.Contacts), routeSummary(res.ByRoute), res.Throttled)
	sec.note("The bulk command runs as its own application user: %d requests (%s), per row one query for an open invitation and the Requested mark, the equivalent of the button's update.", res.BulkRequests, routeSummary(res.BulkByRoute))
	sec.note("Emails by sender: %v. Most contacts waiting for a budget at once (`GET /api/v1/schedule` queued, sampled every 2 s): %d. Schedule printed by the command at its end:\n\n```\n%s\n```", res.BySender, res.MaxParked, strings.TrimSpace(res.Schedule))
	sec.Data = res
	return sec
}

func routeSummary(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s × %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// scaledBudgets multiplies the budgets of the limits by k, windows kept.
func scaledBudgets(k int) (throttle.Limits, emulator.MailboxLimits) {
	dv := throttle.Default()
	dv.MaxRequests *= k
	dv.MaxExecution *= time.Duration(k)
	mb := emulator.DefaultMailboxLimits()
	mb.Messages *= k
	mb.Recipients *= k
	return dv, mb
}

func runPacing(ctx context.Context, h *harness, n, k int) (*pacingResult, error) {
	st, err := h.stage("bench-pacing")
	if err != nil {
		return nil, err
	}
	defer st.close()
	dvLimits, mbLimits := scaledBudgets(k)
	res := &pacingResult{Contacts: n, Replicas: 3, Workers: 4, Scale: k, PerMinute: 30 * k, PerDay: 10000 * k}
	c, err := st.startCluster(ctx, clusterOptions{
		Emulator: emulator.Options{
			Limits:    dvLimits,
			EmailSync: emulator.EmailSyncOptions{Limits: mbLimits},
			// Every request and $batch part of the run: the bulk command's
			// two per row, the replicas' eight or so per invitation with its
			// parts, and the following's.
			RequestLogSize: 30*n + 10000,
		},
		Replicas: res.Replicas,
		Config: connectorConfig{
			Workers: res.Workers, RatePerMinute: res.PerMinute, RatePerDay: res.PerDay,
			PartnerSenders: func(g *org) []string {
				return []string{"systemuser:" + g.seed.MailerUserID, "queue:" + g.seed.QueueID}
			},
			TopLevel: fmt.Sprintf("api:\n  keys: [%q]\n", benchAPIKey),
		},
	})
	if err != nil {
		return nil, err
	}
	g := c.org
	g.STS().AddSecretClient(bulkClientID, bulkSecret)
	st.logf("inserting %d contacts", n)
	cs, err := g.insertContacts("pace", n, nil)
	if err != nil {
		return nil, err
	}
	csvPath := filepath.Join(st.dir, "contacts.csv")
	var b strings.Builder
	b.WriteString("contactid\n")
	for _, ct := range cs {
		b.WriteString(ct.ID + "\n")
	}
	if err := os.WriteFile(csvPath, []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("write csv: %w", err)
	}
	// The bulk command's config: the replicas' file with its own app
	// registration.
	raw, err := os.ReadFile(c.replicas[0].cfgPath)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cliCfg := filepath.Join(st.dir, "bulk.yaml")
	if err := os.WriteFile(cliCfg, []byte(strings.Replace(string(raw), fmt.Sprintf("client_id: %q", g.ClientID), fmt.Sprintf("client_id: %q", bulkClientID), 1)), 0o600); err != nil {
		return nil, fmt.Errorf("write bulk config: %w", err)
	}

	// The estimate the command makes when it starts: the senders' budgets
	// as the schedule reports them, over every row.
	sched, err := getSchedule(ctx, c.lb.URL)
	if err != nil {
		return nil, err
	}
	var senders []bulk.Sender
	for _, s := range sched.Senders {
		if s.SentToday != 0 || s.Queued != 0 {
			return nil, fmt.Errorf("sender %s not idle before the run: %+v", s.Sender, s)
		}
		senders = append(senders, bulk.Sender{Name: s.Sender, PerMinute: res.PerMinute, PerDay: s.PerDay})
	}
	if len(senders) != 2 {
		return nil, fmt.Errorf("schedule lists %d senders, want 2: %+v", len(senders), sched)
	}
	res.SenderLimit = float64(2 * res.PerMinute)

	logPath := filepath.Join(st.dir, "bulk.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	outPath := filepath.Join(st.dir, "bulk.out")
	outf, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer outf.Close()
	cmd := exec.CommandContext(ctx, h.bin, "invite", "--config", cliCfg, "--file", csvPath, "--portal", partnerPortal)
	cmd.Env = append(connectorEnv(g), "BENCH_DV_SECRET="+bulkSecret)
	cmd.Stdout, cmd.Stderr = outf, logf
	t0 := time.Now()
	est, ok := bulk.BudgetFinish(t0, senders, n)
	if !ok {
		return nil, fmt.Errorf("no estimate from senders %+v", senders)
	}
	res.Estimate = est.Sub(t0).Seconds()
	st.logf("connector invite --file with %d rows; estimated finish in %.0f s", n, res.Estimate)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start connector invite: %w", err)
	}
	cmdDone := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		res.CommandTook = time.Since(t0).Seconds()
		res.CommandExit = cmd.ProcessState.ExitCode()
		close(cmdDone)
	}()

	// Sample the schedule's queue while waiting for the emails.
	var (
		mu        sync.Mutex
		stopWatch = make(chan struct{})
		watchDone = make(chan struct{})
	)
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(2 * time.Second):
			}
			if s, err := getSchedule(ctx, c.lb.URL); err == nil {
				q := 0
				for _, x := range s.Senders {
					q += x.Queued
				}
				mu.Lock()
				res.MaxParked = max(res.MaxParked, q)
				mu.Unlock()
			}
		}
	}()
	timeout := 3*time.Duration(res.Estimate*float64(time.Second)) + 3*time.Minute
	_, werr := g.waitSent(ctx, cs, timeout, func(m int) { st.logf("%d of %d emails sent after %.0f s", m, n, time.Since(t0).Seconds()) })
	close(stopWatch)
	<-watchDone
	select {
	case <-cmdDone:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-cmdDone
	}
	end := time.Now()
	if werr != nil {
		st.logf("%v", werr)
	}
	// Let the write-backs and the delivery following settle.
	if _, err := g.waitOutcomes(ctx, cs, 30*time.Second, nil); err != nil {
		st.logf("outcomes: %v", err)
	}
	res.QueueLeft, res.DeadLetters, _ = drainQueueParked(ctx, c.redis, 10*time.Second)

	collectPacing(res, g, cs, t0, end)
	res.Achieved = float64(n) / res.Actual * 60
	limit := min(res.SenderLimit, res.DataverseLimit)
	res.Shortest = float64((n-1)/int(limit)) * 60
	res.EstimateErr = (res.Estimate - res.Actual) / res.Actual
	readBulkOutput(res, logPath, outPath)
	return res, werr
}

// collectPacing fills the outcome, the emails and the request counts.
func collectPacing(res *pacingResult, g *org, cs []contact, t0, end time.Time) {
	byEmail := make(map[string]string, len(cs))
	want := make(map[string]bool, len(cs))
	for _, ct := range cs {
		byEmail[strings.ToLower(ct.Email)] = ct.ID
		want[ct.ID] = true
	}
	per := map[string]int{}
	for _, inv := range g.Rows("adx_invitation") {
		if id, _ := inv["adx_invitecontact"].(string); want[id] {
			res.Invitations++
			per[id]++
			res.MaxPerContact = max(res.MaxPerContact, per[id])
		}
	}
	mailboxName := map[string]string{}
	for name, id := range g.seed.Mailboxes {
		mailboxName[id] = name
	}
	res.BySender = map[string]int{}
	emails := map[string]int{}
	var first, last time.Time
	for _, e := range g.Outbox() {
		for _, to := range e.To {
			if _, ok := byEmail[strings.ToLower(to)]; !ok {
				continue
			}
			res.Emails++
			emails[to]++
			res.MaxEmails = max(res.MaxEmails, emails[to])
			res.BySender[mailboxName[e.MailboxID]]++
			if e.Status != emulator.EmailSent {
				res.NotSent++
				continue
			}
			// With no sync delay the mail server takes the email inside
			// SendEmail; SentAt has full precision (senton has seconds).
			at := e.SentAt
			if first.IsZero() || at.Before(first) {
				first = at
			}
			if at.After(last) {
				last = at
			}
		}
	}
	res.FirstSend = first.Sub(t0).Seconds()
	res.Actual = last.Sub(t0).Seconds()
	res.Status = map[int]int{}
	for _, ct := range cs {
		s, _ := g.statusOf(ct.ID)
		res.Status[s]++
	}
	for _, r := range g.Rows("tracelog") {
		if s, _ := r["text"].(string); strings.Contains(s, "ErrorSubmissionQuotaExceeded") {
			res.QuotaAlerts++
		}
	}
	app, bulkUser := appUserID(g, g.ClientID), appUserID(g, bulkClientID)
	log := g.RequestLog()
	rc := countRequests(log, app, t0, end)
	res.Requests, res.ByRoute, res.Throttled = rc.Requests, rc.ByRoute, rc.Throttled
	bc := countRequests(log, bulkUser, t0, end)
	res.BulkRequests, res.BulkByRoute = bc.Requests, bc.ByRoute
	res.Split = splitRequests(log, app, t0, end, cs)
	res.PerInvitation = float64(res.Split.PathReads+res.Split.InviteChangeSets) / float64(len(cs))
	// Everything the replicas asked counts against their budget.
	res.DataverseLimit = float64(6000*res.Scale) / 5 / max(float64(res.Requests)/float64(len(cs)), 1)
	res.LogOverflow = len(log) > 0 && log[0].Time.After(t0)
}

// requestSplit sorts the replicas' requests by what they were for. Per
// contact, its invitation's write-back is the first contact update inside
// a change set; the invitation's path is every read of the contact with
// its open invitations (the worker's read under the lock, ReadContact) up
// to that change set, plus the change set. Reads of that shape after it
// settle later messages for the same row (the command queues the row and
// its Requested mark fires the webhook too: the second message reads the
// contact, finds it Sent and stops, spending no sender budget). The rest
// follows each email to Delivered (the email's Update step: the contact
// with its invited-on column, the invitation, the email, the mailbox
// alerts, and the change set writing Delivered).
type requestSplit struct {
	PathReads        int `json:"invitation_path_reads"`
	InviteChangeSets int `json:"invitation_change_sets"`
	LaterReads       int `json:"later_message_reads"`
	OtherChangeSets  int `json:"other_change_sets"`
	Following        int `json:"delivery_following_reads"`
	Other            int `json:"other"`
	Unattributed     int `json:"reads_of_contacts_never_invited"`
}

func splitRequests(log []emulator.LoggedRequest, caller string, from, to time.Time, contacts []contact) requestSplit {
	var s requestSplit
	ours := make(map[string]bool, len(contacts))
	for _, c := range contacts {
		ours[strings.ToLower(c.ID)] = true
	}
	idOf := func(path string) string {
		i := strings.Index(path, "contacts(")
		if i < 0 {
			return ""
		}
		return strings.ToLower(strings.SplitN(path[i+len("contacts("):], ")", 2)[0])
	}
	invitedAt := map[string]time.Time{} // first contact update inside a change set
	var reads []emulator.LoggedRequest
	batches := 0
	for _, l := range log {
		if l.Caller != caller || l.Route == "sts" || l.Time.Before(from) || !l.Time.Before(to) {
			continue
		}
		switch {
		case l.InBatch:
			if l.Method == http.MethodPatch && l.Route == "contacts({id})" {
				if id := idOf(l.Path); ours[id] {
					if t, ok := invitedAt[id]; !ok || l.Time.Before(t) {
						invitedAt[id] = l.Time
					}
				}
			}
		case l.Method == http.MethodPost && l.Route == "$batch":
			batches++
		case l.Method == http.MethodGet && l.Route == "contacts({id})" && strings.Contains(l.Path, "adx_identity_username"):
			reads = append(reads, l)
		case l.Method == http.MethodGet && (l.Route == "contacts({id})" || l.Route == "emails" || l.Route == "emails({id})" || l.Route == "adx_invitations({id})" || l.Route == "tracelogs"):
			s.Following++
		default:
			s.Other++
		}
	}
	for _, l := range reads {
		t, ok := invitedAt[idOf(l.Path)]
		switch {
		case !ok:
			s.Unattributed++
		case l.Time.Before(t):
			s.PathReads++
		default:
			s.LaterReads++
		}
	}
	s.InviteChangeSets = len(invitedAt)
	s.OtherChangeSets = batches - s.InviteChangeSets
	return s
}

// appUserID is the systemuser of an application (client) id.
func appUserID(g *org, clientID string) string {
	for _, u := range g.Rows("systemuser") {
		if a, _ := u["applicationid"].(string); strings.EqualFold(a, clientID) {
			id, _ := u["systemuserid"].(string)
			return id
		}
	}
	return ""
}

// getSchedule reads GET /api/v1/schedule.
func getSchedule(ctx context.Context, base string) (bulk.Schedule, error) {
	var s bulk.Schedule
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/schedule", nil)
	if err != nil {
		return s, err
	}
	req.Header.Set("Authorization", "Bearer "+benchAPIKey)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return s, fmt.Errorf("schedule: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("schedule: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("schedule: %w", err)
	}
	return s, nil
}

// drainQueueParked waits for the stream, the retry set and the parked set to
// empty.
func drainQueueParked(ctx context.Context, rs *redisServer, timeout time.Duration) (left, dead int64, err error) {
	left, dead, err = drainQueue(ctx, rs, timeout)
	if err != nil {
		return left, dead, err
	}
	rdb := rs.client()
	defer rdb.Close()
	p, err := rdb.ZCard(ctx, "pinv:intake:parked").Result()
	if err != nil && err != redis.Nil {
		return left, dead, fmt.Errorf("parked: %w", err)
	}
	return left + p, dead, nil
}

// readBulkOutput picks the first progress line's finish text, the queued
// count and the schedule out of the command's output.
func readBulkOutput(res *pacingResult, logPath, outPath string) {
	if f, err := os.Open(logPath); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "progress:") && res.PrintedEstimate == "" {
				if _, fin, ok := strings.Cut(line, ", "); ok {
					res.PrintedEstimate = fin
				}
			}
		}
		f.Close()
	}
	out, err := os.ReadFile(outPath)
	if err != nil {
		return
	}
	text := string(out)
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == bulk.Queued {
			fmt.Sscanf(f[1], "%d", &res.CommandQueued)
		}
	}
	if _, s, ok := strings.Cut(text, "Schedule:"); ok {
		res.Schedule = s
	}
}
