package bulk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dvtest"
	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/redistest"
	intake "github.com/d365portal/connector/internal/sync"
)

const partners = "Contoso Partner Portal"

// org is the seeded emulator with the real invitation service over it.
type org struct {
	*dvtest.Org
	svc   *invite.Service
	clock *dvtest.Clock
}

func newOrg(t *testing.T) *org {
	t.Helper()
	o := &org{Org: dvtest.Start(t, dataverse.Config{}), clock: dvtest.NewClock()}
	svc, err := invite.New(o.DV, invite.Config{Now: o.clock.Now, Portals: []invite.Portal{{Name: partners,
		WebsiteID: emulator.DemoSiteID, BaseURL: "https://partners.contoso.example", DefaultRoles: []string{"Partners"},
		Email: invite.EmailSettings{Sender: "systemuser:" + emulator.DemoMailerUserID}}}})
	if err != nil {
		t.Fatal(err)
	}
	o.svc = svc
	return o
}

func (o *org) email(t *testing.T, contactID string) string {
	t.Helper()
	row, _ := o.Emu.Row("contact", contactID)
	e, _ := row["emailaddress1"].(string)
	if e == "" {
		t.Fatalf("contact %s has no email", contactID)
	}
	return e
}

// config is a run over the real service with output collected.
func (o *org) config(stdout, stderr *lineWriter) Config {
	return Config{Invites: o.svc, Contacts: dvContacts{o.DV}, Portals: []string{partners}, Stdout: stdout, Stderr: stderr, Now: o.clock.Now}
}

// dvContacts resolves emails over the Web API, as the command line does.
type dvContacts struct{ dv *dataverse.Client }

func (c dvContacts) FindContactByEmail(ctx context.Context, email string) (string, error) {
	page, err := c.dv.QueryPage(ctx, "contacts", &dataverse.Query{Select: []string{"contactid"},
		Filter: "emailaddress1 eq " + dataverse.Quote(email) + " and statecode eq 0", Top: 2}, "")
	if err != nil {
		return "", fmt.Errorf("find contact by email: %w", err)
	}
	if len(page.Records) != 1 {
		return "", fmt.Errorf("no active contact has email %q: %w", email, invite.ErrNotFound)
	}
	return page.Records[0].Str("contactid"), nil
}

func run(t *testing.T, ctx context.Context, cfg Config, rows []Row) *Report {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(ctx, rows)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// counted checks that the summary table on stdout has these counts.
func counted(t *testing.T, stdout string, want map[string]int) {
	t.Helper()
	total := 0
	for outcome, n := range want {
		total += n
		if !regexp.MustCompile(`(?m)^` + outcome + `\s+` + fmt.Sprint(n) + `$`).MatchString(stdout) {
			t.Errorf("summary lacks %q %d:\n%s", outcome, n, stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^total\s+` + fmt.Sprint(total) + `$`).MatchString(stdout) {
		t.Errorf("summary total is not %d:\n%s", total, stdout)
	}
}

func TestRunInvitesAndCountsAlreadyInvited(t *testing.T) {
	o := newOrg(t)
	ids := o.Demo.ContactIDs
	rows := []Row{
		{Line: 2, Contact: o.email(t, ids[0]), Portal: partners},
		{Line: 3, Contact: o.email(t, ids[1]), Portal: partners},
		{Line: 4, Contact: ids[2], Portal: partners, Roles: []string{"Partners", "Authenticated Users"}},
		{Line: 5, Contact: "not-an-address", Portal: partners},
		{Line: 6, Contact: "nobody@example.invalid", Portal: partners},
	}
	out, errw := newLineWriter(), newLineWriter()
	rep := run(t, context.Background(), o.config(out, errw), rows)
	if rep.OK() || rep.Counts[Invited] != 3 || rep.Counts[Failed] != 2 || len(o.Emu.Outbox()) != 3 {
		t.Fatalf("first run: %+v, %d emails\n%s", rep, len(o.Emu.Outbox()), out)
	}
	counted(t, out.String(), map[string]int{Invited: 3, Failed: 2})
	if !regexp.MustCompile(`(?m)^line 5\s+not-an-address\s+not a contact id or email address\n` +
		`line 6\s+nobody@example.invalid\s+no active contact has email "nobody@example.invalid": `).MatchString(out.String()) {
		t.Errorf("failed rows:\n%s", out)
	}
	if !strings.Contains(errw.String(), "progress: 5/5 (100%), done in ") {
		t.Errorf("progress:\n%s", errw)
	}

	// The same contacts again: their open invitations are kept, nothing is
	// sent, and the summary says so.
	out = newLineWriter()
	rep = run(t, context.Background(), o.config(out, newLineWriter()), rows[:3])
	if !rep.OK() || rep.Counts[AlreadyInvited] != 3 || len(o.Emu.Outbox()) != 3 {
		t.Fatalf("second run: %+v, %d emails\n%s", rep, len(o.Emu.Outbox()), out)
	}
	counted(t, out.String(), map[string]int{AlreadyInvited: 3})
}

func TestRunSingleReportsTheRow(t *testing.T) {
	o := newOrg(t)
	out, errw := newLineWriter(), newLineWriter()
	cfg := o.config(out, errw)
	cfg.Single = true
	email := strings.ToUpper(o.email(t, o.Demo.ContactIDs[0]))
	rep := run(t, context.Background(), cfg, []Row{{Contact: email, Portal: partners}})
	inv := o.Emu.Rows("adx_invitation")
	if !rep.OK() || len(inv) != 1 {
		t.Fatalf("%+v, %d invitations", rep, len(inv))
	}
	if want := fmt.Sprintf("%s: invited invitation %s\n", email, inv[0]["adx_invitationid"]); out.String() != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if errw.String() != "" {
		t.Errorf("stderr: %q", errw)
	}
}

func TestRunResumeSkipsDoneRows(t *testing.T) {
	o := newOrg(t)
	ids := o.Demo.ContactIDs
	resume := filepath.Join(t.TempDir(), "contacts.csv.progress")
	rows := []Row{
		{Line: 2, Contact: ids[0], Portal: partners},
		{Line: 3, Contact: "x", Portal: partners},
		{Line: 4, Contact: o.email(t, ids[1]), Portal: partners},
		{Line: 5, Contact: ids[2], Portal: partners},
	}
	cfg := o.config(newLineWriter(), newLineWriter())
	cfg.ResumeFile = resume
	rep := run(t, context.Background(), cfg, rows)
	if rep.Counts[Invited] != 3 || rep.Counts[Failed] != 1 {
		t.Fatalf("first run: %+v", rep)
	}
	b, err := os.ReadFile(resume)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 {
		t.Fatalf("resume file:\n%s", b)
	}
	for _, row := range []Row{rows[0], rows[2], rows[3]} {
		if !strings.Contains(string(b), row.Key()+"\tinvited\n") {
			t.Errorf("resume file lacks %s:\n%s", row.Key(), b)
		}
	}

	out, errw := newLineWriter(), newLineWriter()
	cfg.Stdout, cfg.Stderr = out, errw
	rep = run(t, context.Background(), cfg, rows)
	if rep.Skipped != 3 || rep.Counts[Failed] != 1 || len(rep.Counts) != 1 || len(o.Emu.Outbox()) != 3 {
		t.Fatalf("resumed run: %+v, %d emails", rep, len(o.Emu.Outbox()))
	}
	if !strings.HasPrefix(errw.String(), "resuming: 3 row(s) already done in an earlier run are skipped\n") {
		t.Errorf("stderr:\n%s", errw)
	}
	counted(t, out.String(), map[string]int{Failed: 1})
}

// startQueue is the shared intake over a real redis-server.
func startQueue(t *testing.T, o *org) (*Queue, func() int64) {
	t.Helper()
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	in, err := intake.New(intake.Config{Redis: rdb, Invites: o.svc, Dataverse: o.DV, Contact: invite.DefaultContactColumns,
		DefaultPortal: partners})
	if err != nil {
		t.Fatal(err)
	}
	depth := func() int64 {
		n, err := rdb.XLen(context.Background(), "pinv:intake:stream").Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return &Queue{Contacts: o.DV, Intake: in, Columns: invite.DefaultContactColumns}, depth
}

func TestRunThroughQueue(t *testing.T) {
	o := newOrg(t)
	ids := o.Demo.ContactIDs
	ctx := context.Background()
	if _, err := o.svc.Invite(ctx, invite.InviteRequest{ContactID: ids[1], Portal: partners}); err != nil {
		t.Fatal(err)
	}
	q, depth := startQueue(t, o)
	out := newLineWriter()
	cfg := o.config(out, newLineWriter())
	cfg.Queue = q
	rows := []Row{
		{Line: 2, Contact: o.email(t, ids[0]), Portal: partners, Roles: []string{"Partners", "Authenticated Users"}},
		{Line: 3, Contact: o.email(t, ids[1]), Portal: partners},
		{Line: 4, Contact: ids[2], Portal: partners},
	}
	rep := run(t, ctx, cfg, rows)
	if !rep.OK() || rep.Counts[Queued] != 2 || rep.Counts[AlreadyInvited] != 1 {
		t.Fatalf("%+v\n%s", rep, out)
	}
	counted(t, out.String(), map[string]int{Queued: 2, AlreadyInvited: 1})
	if n := depth(); n != 2 {
		t.Errorf("queue depth %d, want 2", n)
	}
	status := func(id string) (any, any) {
		row, _ := o.Emu.Row("contact", id)
		return row[emulator.ColInviteStatus], row[emulator.ColInviteRoles]
	}
	if st, roles := status(ids[0]); fmt.Sprint(st) != fmt.Sprint(emulator.InviteRequested) || roles != "Partners,Authenticated Users" {
		t.Errorf("queued contact: status %v roles %v", st, roles)
	}
	if st, _ := status(ids[2]); fmt.Sprint(st) != fmt.Sprint(emulator.InviteRequested) {
		t.Errorf("queued contact: status %v", st)
	}
	if st, _ := status(ids[1]); fmt.Sprint(st) != fmt.Sprint(emulator.InviteSent) {
		t.Errorf("already invited contact was touched: status %v", st)
	}
	if n := len(o.Emu.Outbox()); n != 1 {
		t.Errorf("%d emails, want only the earlier one", n)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	o := newOrg(t)
	ids := o.Demo.ContactIDs
	ctx := context.Background()
	if _, err := o.svc.Invite(ctx, invite.InviteRequest{ContactID: ids[1], Portal: partners}); err != nil {
		t.Fatal(err)
	}
	q, depth := startQueue(t, o)
	snapshot := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "emails %d invitations %d\n", len(o.Emu.Outbox()), len(o.Emu.Rows("adx_invitation")))
		for _, id := range ids {
			row, _ := o.Emu.Row("contact", id)
			fmt.Fprintf(&b, "%s %v %v %v\n", id, row[emulator.ColInviteStatus], row[emulator.ColInvitePortal], row["modifiedon"])
		}
		return b.String()
	}
	before := snapshot()
	resume := filepath.Join(t.TempDir(), "contacts.csv.progress")
	out := newLineWriter()
	cfg := o.config(out, newLineWriter())
	cfg.DryRun, cfg.Queue, cfg.ResumeFile = true, q, resume
	rep := run(t, ctx, cfg, []Row{
		{Line: 2, Contact: o.email(t, ids[0]), Portal: partners},
		{Line: 3, Contact: ids[1], Portal: partners},
		{Line: 4, Contact: ids[2], Portal: "Nope"},
		{Line: 5, Contact: ids[3], Portal: partners, Roles: []string{"Wizards"}},
	})
	if rep.Counts[WouldInvite] != 1 || rep.Counts[AlreadyInvited] != 1 || rep.Counts[Failed] != 2 {
		t.Fatalf("%+v\n%s", rep, out)
	}
	if !strings.Contains(out.String(), `portal "Nope" is not configured`) || !strings.Contains(out.String(), "unknown web role(s) Wizards") {
		t.Errorf("failed rows:\n%s", out)
	}
	if after := snapshot(); after != before {
		t.Errorf("dry run changed Dataverse:\nbefore\n%s\nafter\n%s", before, after)
	}
	if n := depth(); n != 0 {
		t.Errorf("dry run queued %d", n)
	}
	if _, err := os.Stat(resume); !os.IsNotExist(err) {
		t.Errorf("dry run wrote the resume file: %v", err)
	}
}

func TestRunInterrupted(t *testing.T) {
	o := newOrg(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errw := newLineWriter()
	rep := run(t, ctx, o.config(newLineWriter(), errw), []Row{{Line: 2, Contact: o.Demo.ContactIDs[0], Portal: partners}})
	if rep.OK() || !rep.Interrupted || len(o.Emu.Outbox()) != 0 {
		t.Fatalf("%+v, %d emails", rep, len(o.Emu.Outbox()))
	}
	if !strings.HasSuffix(errw.String(), "interrupted: run the same command again to resume\n") {
		t.Errorf("stderr:\n%s", errw)
	}
}

// gatedInviter holds back the last row until the progress line has asked
// the estimator, so the run's output shows a finish time.
type gatedInviter struct {
	Inviter
	est  *fixedEstimator
	last string
}

func (g gatedInviter) Invite(ctx context.Context, req invite.InviteRequest) (*invite.InviteResult, error) {
	if req.ContactID == g.last {
		deadline := time.Now().Add(10 * time.Second)
		for len(g.est.asked()) == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	return g.Inviter.Invite(ctx, req)
}

type staticSenders []Sender

func (s staticSenders) Senders(context.Context) ([]Sender, error) { return s, nil }

func TestRunShowsEstimateAndSchedule(t *testing.T) {
	o := newOrg(t)
	ids := o.Demo.ContactIDs
	now := o.clock.Now()
	est := &fixedEstimator{at: now.Add(90 * time.Minute), ok: true}
	out, errw := newLineWriter(), newLineWriter()
	cfg := o.config(out, errw)
	cfg.Invites = gatedInviter{Inviter: o.svc, est: est, last: ids[2]}
	cfg.Workers, cfg.Estimator, cfg.ProgressInterval = 1, est, time.Millisecond
	cfg.Senders = staticSenders{{Name: "systemuser:" + emulator.DemoMailerUserID, PerMinute: 30, PerDay: 10000, SentToday: 3,
		WindowStart: now.Add(-time.Hour), Queued: 30}}
	rep := run(t, context.Background(), cfg, []Row{
		{Line: 2, Contact: ids[0], Portal: partners}, {Line: 3, Contact: ids[1], Portal: partners}, {Line: 4, Contact: ids[2], Portal: partners},
	})
	if !rep.OK() || rep.Counts[Invited] != 3 {
		t.Fatalf("%+v", rep)
	}
	asked := est.asked()
	if len(asked) == 0 || asked[0] < 1 || asked[0] > 3 {
		t.Fatalf("estimator asked %v", asked)
	}
	if want := ", finish ~" + when(now, now.Add(90*time.Minute)) + "\n"; !strings.Contains(errw.String(), want) {
		t.Errorf("progress lacks %q:\n%s", want, errw)
	}
	if !regexp.MustCompile(`\nSchedule:\nSENDER\s+QUEUED\s+SENT TODAY\s+NEXT FREE SLOT\nsystemuser:` + emulator.DemoMailerUserID +
		`\s+30\s+3/10000\s+` + regexp.QuoteMeta(when(now, now.Add(time.Minute))) + `\n$`).MatchString(out.String()) {
		t.Errorf("schedule:\n%s", out)
	}
}
