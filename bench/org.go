package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
)

// Second and third application users of the emulated organization: the
// "CRM user" who clicks Invite to portal (it impersonates the demo admin,
// as the Dynamics UI runs as the signed-in user) and the naive baseline.
// Each has its own service-protection budget, so neither eats the
// connector's.
const (
	crmClientID    = "b3e0c0de-0000-4000-8000-0000000000c2"
	crmSecret      = "bench-crm-client-secret"
	naiveClientID  = "b3e0c0de-0000-4000-8000-0000000000c3"
	naiveSecret    = "bench-naive-client-secret"
	partnerPortal  = "Contoso Partner Portal"
	customerPortal = "Contoso Customer Portal"
)

// clickRoles are the web roles the CRM user picks in the Invite dialog.
var clickRoles = []string{"Authenticated Users", "Partners"}

// org is a TLS Dataverse emulator with the demo seed.
type org struct {
	*emulator.Running
	seed   *emulator.Demo
	crm    *dataverse.Client
	clicks atomic.Int64 // successful clicks so far
}

func startOrg(o emulator.Options) (*org, error) {
	emu, err := emulator.StartTLS(o, "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	seed, err := emulator.SeedDemo(emu.Server)
	if err != nil {
		_ = emu.Close()
		return nil, fmt.Errorf("seed: %w", err)
	}
	emu.STS().AddSecretClient(crmClientID, crmSecret)
	emu.STS().AddSecretClient(naiveClientID, naiveSecret)
	g := &org{Running: emu, seed: seed}
	// The clicking user retries hard: its clicks must all land, whatever
	// faults the emulator injects.
	g.crm, err = g.client(crmClientID, crmSecret, dataverse.Config{MaxRetries: 20, MaxConcurrency: 16},
		&dataverse.Options{RetryDelay: 50 * time.Millisecond, MaxRetryDelay: time.Second})
	if err != nil {
		_ = emu.Close()
		return nil, err
	}
	return g, nil
}

func (g *org) close() { _ = g.Close() }

// client is a Web API client authenticated as clientID through the
// emulator's token endpoint.
func (g *org) client(clientID, secret string, cfg dataverse.Config, o *dataverse.Options) (*dataverse.Client, error) {
	cred, err := dataverse.NewCredential(dataverse.AuthConfig{
		Method: "client_secret", TenantID: g.TenantID, ClientID: clientID, ClientSecret: secret,
		AuthorityHost: g.AuthorityHost, DisableInstanceDiscovery: true,
	}, g.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	if o == nil {
		o = &dataverse.Options{}
	}
	if o.HTTPClient == nil {
		o.HTTPClient = g.HTTPClient
	}
	cfg.URL = g.OrgURL
	dv, err := dataverse.New(cfg, cred, o)
	if err != nil {
		return nil, fmt.Errorf("dataverse client: %w", err)
	}
	return dv, nil
}

// contact is a bench contact: its id and unique email address.
type contact struct {
	ID, Email string
}

// insertContacts creates n contacts directly (no HTTP, no webhooks).
func (g *org) insertContacts(prefix string, n int, extra map[string]any) ([]contact, error) {
	out := make([]contact, 0, n)
	for i := range n {
		email := fmt.Sprintf("%s%06d@example.test", prefix, i)
		row := map[string]any{"firstname": "Bench", "lastname": fmt.Sprintf("%s %06d", prefix, i), "emailaddress1": email}
		for k, v := range extra {
			row[k] = v
		}
		id, err := g.Insert("contact", row)
		if err != nil {
			return nil, err
		}
		out = append(out, contact{ID: id, Email: email})
	}
	return out, nil
}

// click does what the Invite to portal button does: the CRM user sets the
// contact's invite columns through the Web API, which fires the webhook. A
// failed click is clicked again, as a person would (the update is
// idempotent; the client itself does not retry a 500).
func (g *org) click(ctx context.Context, id string) error {
	var err error
	for range 10 {
		_, err = g.crm.Update(ctx, "contacts", id, map[string]any{
			emulator.ColInviteStatus: emulator.InviteRequested,
			emulator.ColInvitePortal: partnerPortal,
			emulator.ColInviteRoles:  strings.Join(clickRoles, ", "),
			emulator.ColInviteError:  nil,
		}, &dataverse.WriteOptions{Headers: http.Header{"MSCRMCallerID": {emulator.DemoAdminUserID}}})
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("click invite on %s: %w", id, err)
	}
	g.clicks.Add(1)
	return nil
}

// clickAll clicks every contact with the given parallelism and returns the
// time each click was sent.
func (g *org) clickAll(ctx context.Context, cs []contact, parallel int, every time.Duration) (map[string]time.Time, error) {
	var (
		mu      sync.Mutex
		clicked = make(map[string]time.Time, len(cs))
		firstEr error
		next    atomic.Int64
		wg      sync.WaitGroup
	)
	start := time.Now()
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(cs) || ctx.Err() != nil {
					return
				}
				if every > 0 {
					// Open loop: click i is due at start + i·every.
					if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
						time.Sleep(d)
					}
				}
				t := time.Now()
				err := g.click(ctx, cs[i].ID)
				mu.Lock()
				if err != nil && firstEr == nil {
					firstEr = err
				}
				clicked[cs[i].ID] = t
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return clicked, firstEr
}

// sentTo maps recipient address -> SentAt for the outbox.
func (g *org) sentTo() map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, e := range g.Outbox() {
		for _, to := range e.To {
			to = strings.ToLower(to)
			out[to] = append(out[to], e.SentAt)
		}
	}
	return out
}

// waitSent waits until every contact has at least one email in the outbox.
func (g *org) waitSent(ctx context.Context, cs []contact, timeout time.Duration, progress func(n int)) (int, error) {
	deadline := time.Now().Add(timeout)
	last := -1
	lastReport := time.Now()
	for {
		sent := g.sentTo()
		n := 0
		for _, c := range cs {
			if len(sent[strings.ToLower(c.Email)]) > 0 {
				n++
			}
		}
		if n == len(cs) {
			return n, nil
		}
		if progress != nil && n != last && time.Since(lastReport) > 5*time.Second {
			progress(n)
			last, lastReport = n, time.Now()
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("%d of %d invitations sent after %s", n, len(cs), timeout)
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// outcome is what Dataverse holds for a set of contacts after a run.
type outcome struct {
	Contacts        int `json:"contacts"`
	Invitations     int `json:"invitations"`      // adx_invitation rows for them
	MaxPerContact   int `json:"max_per_contact"`  // most invitations for one contact
	Emails          int `json:"emails"`           // emails sent to them
	MaxEmailsPerOne int `json:"max_emails_per_1"` // most emails to one contact
	StatusSent      int `json:"status_sent"`
	StatusDelivered int `json:"status_delivered"` // the invitation email was accepted by the mail server
	StatusFailed    int `json:"status_failed"`
	StatusOther     int `json:"status_other"`
}

// report adds the exactly-once rows and checks every pipeline-shaped fault
// run shares: n contacts, each with one invitation, one email and Sent or
// Delivered, and a queue drained without dead letters.
func (o outcome) report(sec *Section, n int, deadLetters, queueLeft int64) {
	sec.row("invitations (adx_invitation rows)", n, o.Invitations)
	sec.row("most invitations for one contact", 1, o.MaxPerContact)
	sec.row("emails sent", n, o.Emails)
	sec.row("most emails to one contact", 1, o.MaxEmailsPerOne)
	sec.row("contacts with status Sent or Delivered", n, o.StatusSent+o.StatusDelivered)
	sec.row("contacts Failed / other (Requested included)", "0 / 0", fmt.Sprintf("%d / %d", o.StatusFailed, o.StatusOther))
	sec.row("dead-letter stream", 0, deadLetters)
	sec.row("left in the queue at the end", 0, queueLeft)
	sec.check(o.Invitations == n && o.MaxPerContact <= 1, "invitations: want %d (one per contact), got %d (max %d per contact)", n, o.Invitations, o.MaxPerContact)
	sec.check(o.Emails == n && o.MaxEmailsPerOne <= 1, "emails: want %d (one per contact), got %d (max %d per contact)", n, o.Emails, o.MaxEmailsPerOne)
	sec.check(o.StatusSent+o.StatusDelivered == n, "contacts Sent or Delivered: want %d, got %d (%d Failed, %d other)", n, o.StatusSent+o.StatusDelivered, o.StatusFailed, o.StatusOther)
	sec.check(deadLetters == 0, "dead letters: %d", deadLetters)
	sec.check(queueLeft == 0, "queue not drained: %d", queueLeft)
}

func (g *org) outcome(cs []contact) outcome {
	want := make(map[string]bool, len(cs))
	for _, c := range cs {
		want[c.ID] = true
	}
	o := outcome{Contacts: len(cs)}
	per := map[string]int{}
	for _, inv := range g.Rows("adx_invitation") {
		id, _ := inv["adx_invitecontact"].(string)
		if want[id] {
			o.Invitations++
			per[id]++
			o.MaxPerContact = max(o.MaxPerContact, per[id])
		}
	}
	sent := g.sentTo()
	for _, c := range cs {
		n := len(sent[strings.ToLower(c.Email)])
		o.Emails += n
		o.MaxEmailsPerOne = max(o.MaxEmailsPerOne, n)
		row, _ := g.Row("contact", c.ID)
		switch st, _ := row[emulator.ColInviteStatus].(int); st {
		case emulator.InviteSent:
			o.StatusSent++
		case emulator.InviteDelivered:
			o.StatusDelivered++
		case emulator.InviteFailed:
			o.StatusFailed++
		default:
			o.StatusOther++
		}
	}
	return o
}

// requestCount counts the HTTP requests (not $batch parts, not token
// requests) one user made, from the emulator's request log.
type requestCount struct {
	Requests   int            // HTTP requests
	BatchParts int            // operations inside $batch requests
	Throttled  int            // 429 answers among Requests
	ByRoute    map[string]int // "METHOD route" -> requests
}

func countRequests(log []emulator.LoggedRequest, caller string, from, to time.Time) requestCount {
	rc := requestCount{ByRoute: map[string]int{}}
	for _, l := range log {
		if l.Caller != caller || l.Route == "sts" || l.Time.Before(from) || (!to.IsZero() && !l.Time.Before(to)) {
			continue
		}
		if l.InBatch {
			rc.BatchParts++
			continue
		}
		rc.Requests++
		if l.Status == http.StatusTooManyRequests {
			rc.Throttled++
		}
		rc.ByRoute[l.Method+" "+l.Route]++
	}
	return rc
}

// parallel runs f(0..n-1) on `workers` goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, f func(i int) error) error {
	var (
		next  atomic.Int64
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
