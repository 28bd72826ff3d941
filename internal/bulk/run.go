package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
	intake "github.com/d365portal/connector/internal/sync"
)

// Outcomes of a row, as the summary and the resume file name them.
const (
	Invited        = "invited"
	AlreadyInvited = "already invited"
	Queued         = "queued"
	Failed         = "failed"
	WouldInvite    = "would invite"
)

// Inviter is the invitation service; *invite.Service satisfies it.
type Inviter interface {
	// Invite invites one contact now; InviteResult.Reused reports an open
	// invitation that was kept (no second email).
	Invite(ctx context.Context, req invite.InviteRequest) (*invite.InviteResult, error)
	// CheckPortal reports web roles the portal's website lacks (dry runs).
	CheckPortal(ctx context.Context, portal string, roles []string) (*invite.PortalCheck, error)
	// List finds a contact's open invitations (queued and dry runs, which do
	// not call Invite).
	List(ctx context.Context, f invite.ListFilter) ([]invite.Invitation, error)
}

// ContactFinder resolves an email address to the one active contact with it.
type ContactFinder interface {
	FindContactByEmail(ctx context.Context, email string) (contactID string, err error)
}

// ContactWriter writes the invite columns on a contact; *dataverse.Client
// satisfies it.
type ContactWriter interface {
	Update(ctx context.Context, set, id string, body any, o *dataverse.WriteOptions) (dataverse.Record, error)
}

// Enqueuer is the shared intake queue; *sync.Intake satisfies it.
type Enqueuer interface {
	Enqueue(ctx context.Context, r intake.Request) (enqueued bool, err error)
}

var (
	_ Inviter       = (*invite.Service)(nil)
	_ ContactWriter = (*dataverse.Client)(nil)
	_ Enqueuer      = (*intake.Intake)(nil)
)

// Queue sends rows through the shared intake queue, as the Invite to portal
// button does: the contact is marked Requested (with the portal and roles),
// then the request is enqueued for the workers of any replica.
type Queue struct {
	Contacts ContactWriter
	Intake   Enqueuer
	Columns  invite.ContactColumns // the invite columns on contact and the Requested value
}

// Config configures a Runner. Zero values mean the defaults in the comments.
type Config struct {
	Invites  Inviter       // required
	Contacts ContactFinder // required: resolves rows given by email
	// Queue, when set, queues rows instead of inviting them in this process.
	Queue *Queue
	// Portals are the configured portal names; a dry run fails rows naming
	// another.
	Portals []string
	// DryRun resolves and checks every row and changes nothing.
	DryRun bool
	// ResumeFile lists the rows done by earlier runs, which are skipped, and
	// gets this run's done rows appended; "" = no resume (FILE.progress is
	// the command line's choice).
	ResumeFile string
	// Single reports the outcome of each row on Stdout as it finishes,
	// without a progress bar or summary (connector invite --contact).
	Single  bool
	Workers int // rows in flight at once; default 4
	Stdout  io.Writer
	Stderr  io.Writer // progress and notices; default io.Discard
	// Estimator predicts the finish time on the progress bar; default a
	// RateEstimator from this run's start.
	Estimator Estimator
	// Senders, when set, supplies the schedule printed after the summary.
	Senders SenderSource
	// ProgressInterval is how often a progress line is printed when Stderr is
	// not a terminal; default 10s.
	ProgressInterval time.Duration
	Now              func() time.Time // default time.Now
}

// Runner runs bulk invitations.
type Runner struct {
	cfg Config
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Runner, error) {
	switch {
	case cfg.Invites == nil:
		return nil, errors.New("bulk.New: Invites is required")
	case cfg.Contacts == nil:
		return nil, errors.New("bulk.New: Contacts is required")
	case cfg.Queue != nil && (cfg.Queue.Contacts == nil || cfg.Queue.Intake == nil || cfg.Queue.Columns.Status == ""):
		return nil, errors.New("bulk.New: Queue needs Contacts, Intake and Columns.Status")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Runner{cfg: cfg}, nil
}

// Report is what a run did.
type Report struct {
	Counts      map[string]int // rows by outcome
	Skipped     int            // rows done by an earlier run
	Failures    []Failure      // sorted by line
	Interrupted bool           // ctx ended before every row was tried
}

// Failure is a row that failed and why.
type Failure struct {
	Row    Row
	Reason string
}

// OK reports whether every row was tried and none failed.
func (r *Report) OK() bool { return !r.Interrupted && r.Counts[Failed] == 0 }

// Run invites, queues or checks rows with Config.Workers at a time, shows
// progress on Stderr and, unless Single, prints the summary (and the
// schedule) on Stdout. When ctx ends it stops handing out rows, waits for
// those in flight and reports Interrupted. The error is for the resume file
// only; row failures are in the Report.
func (r *Runner) Run(ctx context.Context, rows []Row) (*Report, error) {
	c := r.cfg
	rep := &Report{Counts: map[string]int{}}
	var resume *resumeFile
	if c.ResumeFile != "" && !c.DryRun {
		var err error
		if resume, err = openResume(c.ResumeFile); err != nil {
			return nil, fmt.Errorf("bulk run: %w", err)
		}
	}
	todo := rows
	if resume != nil {
		todo = slices.DeleteFunc(slices.Clone(rows), func(row Row) bool { return resume.done[row.Key()] })
		rep.Skipped = len(rows) - len(todo)
	}
	if rep.Skipped > 0 {
		fmt.Fprintf(c.Stderr, "resuming: %d row(s) already done in an earlier run are skipped\n", rep.Skipped)
	}

	var disp *display
	if !c.Single && len(todo) > 0 {
		est := c.Estimator
		if est == nil {
			est = RateEstimator{Start: c.Now(), Total: len(todo)}
		}
		disp = newDisplay(c.Stderr, len(todo), displayOptions{est: est, now: c.Now, interval: c.ProgressInterval})
	}
	var mu sync.Mutex
	jobs := make(chan Row)
	var wg sync.WaitGroup
	for range c.Workers {
		wg.Go(func() {
			for row := range jobs {
				outcome, detail := r.one(ctx, row)
				mu.Lock()
				rep.Counts[outcome]++
				if outcome == Failed {
					rep.Failures = append(rep.Failures, Failure{Row: row, Reason: detail})
				} else {
					resume.record(row, outcome)
				}
				if c.Single {
					fmt.Fprintf(c.Stdout, "%s: %s %s\n", row.Contact, outcome, detail)
				}
				mu.Unlock()
				disp.add(1)
			}
		})
	}
	for _, row := range todo {
		if ctx.Err() != nil {
			break
		}
		select {
		case jobs <- row:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	disp.finish()
	rep.Interrupted = ctx.Err() != nil
	sort.SliceStable(rep.Failures, func(i, j int) bool { return rep.Failures[i].Row.Line < rep.Failures[j].Row.Line })
	if !c.Single {
		r.summary(rep)
		r.schedule(ctx)
	}
	if rep.Interrupted {
		fmt.Fprintln(c.Stderr, "interrupted: run the same command again to resume")
	}
	if err := resume.close(); err != nil {
		return rep, fmt.Errorf("bulk run: %w", err)
	}
	return rep, nil
}

// one invites, queues or (dry run) checks one row.
func (r *Runner) one(ctx context.Context, row Row) (outcome, detail string) {
	c := r.cfg
	id := row.Contact
	if !config.IsGUID(id) {
		if !strings.Contains(id, "@") {
			return Failed, "not a contact id or email address"
		}
		found, err := c.Contacts.FindContactByEmail(ctx, id)
		if err != nil {
			return Failed, firstLine(err)
		}
		id = found
	}
	if c.DryRun {
		if !slices.Contains(c.Portals, row.Portal) {
			return Failed, fmt.Sprintf("portal %q is not configured", row.Portal)
		}
		if pc, err := c.Invites.CheckPortal(ctx, row.Portal, row.Roles); err != nil {
			return Failed, firstLine(err)
		} else if len(pc.MissingRoles) > 0 {
			return Failed, "unknown web role(s) " + strings.Join(pc.MissingRoles, ", ")
		}
		if inv, err := r.openInvitation(ctx, id, row.Portal); err != nil {
			return Failed, firstLine(err)
		} else if inv != "" {
			return AlreadyInvited, "invitation " + inv
		}
		return WouldInvite, fmt.Sprintf("contact %s to %s", id, row.Portal)
	}
	if q := c.Queue; q != nil {
		// Invite would keep an open invitation anyway; checking first spares
		// the contact a round trip through Requested and the queue a job.
		if inv, err := r.openInvitation(ctx, id, row.Portal); err != nil {
			return Failed, firstLine(err)
		} else if inv != "" {
			return AlreadyInvited, "invitation " + inv
		}
		ct := q.Columns
		body := map[string]any{ct.Status: ct.Requested, ct.Portal: row.Portal, ct.Error: nil, ct.Roles: nil}
		if len(row.Roles) > 0 {
			body[ct.Roles] = strings.Join(row.Roles, ",")
		}
		if _, err := q.Contacts.Update(ctx, "contacts", id, body, nil); err != nil {
			return Failed, firstLine(err)
		}
		if _, err := q.Intake.Enqueue(ctx, intake.Request{ContactID: id, Portal: row.Portal, Roles: row.Roles, Source: "cli",
			DedupeKey: "cli:" + id + ":" + c.Now().UTC().Format("20060102T1504")}); err != nil {
			return Failed, firstLine(err)
		}
		return Queued, id
	}
	res, err := c.Invites.Invite(ctx, invite.InviteRequest{ContactID: id, Portal: row.Portal, Roles: row.Roles, Source: "cli"})
	if err != nil {
		return Failed, firstLine(err)
	}
	if res.Reused {
		return AlreadyInvited, "invitation " + res.Invitation.ID
	}
	return Invited, "invitation " + res.Invitation.ID
}

// openInvitation returns the id of the contact's open, emailed invitation to
// portal, the one Invite would keep, or "".
func (r *Runner) openInvitation(ctx context.Context, contactID, portal string) (string, error) {
	list, err := r.cfg.Invites.List(ctx, invite.ListFilter{ContactID: contactID, Status: invite.StatusSent})
	if err != nil {
		return "", err
	}
	now := r.cfg.Now()
	for _, inv := range list {
		if strings.EqualFold(inv.Portal, portal) && inv.Open(now) {
			return inv.ID, nil
		}
	}
	return "", nil
}

// summary prints the outcome counts and the failed rows.
func (r *Runner) summary(rep *Report) {
	w := r.cfg.Stdout
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OUTCOME\tCONTACTS")
	keys := make([]string, 0, len(rep.Counts))
	for k := range rep.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	total := 0
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%d\n", k, rep.Counts[k])
		total += rep.Counts[k]
	}
	fmt.Fprintf(tw, "total\t%d\n", total)
	tw.Flush()
	if len(rep.Failures) == 0 {
		return
	}
	fmt.Fprintln(w, "\nFailed rows (fix them and run again; done rows are skipped):")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROW\tCONTACT\tREASON")
	for _, f := range rep.Failures {
		fmt.Fprintf(tw, "line %d\t%s\t%s\n", f.Row.Line, f.Row.Contact, f.Reason)
	}
	tw.Flush()
}

// schedule prints the senders' schedule when there is a source for it. A
// source that fails costs the run nothing but the table.
func (r *Runner) schedule(ctx context.Context) {
	if r.cfg.Senders == nil {
		return
	}
	senders, err := r.cfg.Senders.Senders(context.WithoutCancel(ctx))
	if err != nil {
		fmt.Fprintf(r.cfg.Stderr, "schedule unavailable: %s\n", firstLine(err))
		return
	}
	fmt.Fprintln(r.cfg.Stdout, "\nSchedule:")
	if err := NewSchedule(r.cfg.Now(), senders).Print(r.cfg.Stdout); err != nil {
		fmt.Fprintf(r.cfg.Stderr, "schedule: %s\n", firstLine(err))
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
