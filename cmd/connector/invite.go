package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
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

// roleFlags collects a repeatable --role.
type roleFlags []string

func (r *roleFlags) String() string     { return strings.Join(*r, ",") }
func (r *roleFlags) Set(v string) error { *r = append(*r, strings.TrimSpace(v)); return nil }

// inviteRow is one contact to invite, from --contact or a CSV line.
type inviteRow struct {
	line    int
	contact string // GUID or email as given
	portal  string
	roles   []string
}

// Outcomes of one row, as printed in the summary.
const (
	outInvited = "invited"
	outReused  = "already invited"
	outQueued  = "queued"
	outFailed  = "failed"
	outPlanned = "would invite"
)

func runInvite(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "invite", "--config FILE (--contact ID|EMAIL | --file CSV) [--portal NAME] [--role NAME]... [--dry-run]",
		"Invite contacts from the command line. --contact invites one contact now. --file invites\nevery row of a CSV with a header naming a contact column (id or email) and optional\nportal and roles (separated by ;) columns; with redis.url set the rows go through the\nsame queue as webhooks (the contact is marked Requested, as the button does). Bulk runs\nare resumable: rows already done are recorded in FILE.progress and skipped next time.")
	path := fs.String("config", "", "configuration file")
	contact := fs.String("contact", "", "contact id or email address")
	file := fs.String("file", "", "CSV file of contacts")
	portal := fs.String("portal", "", "portal name (default: the first configured portal)")
	var roles roleFlags
	fs.Var(&roles, "role", "web role name (repeatable; default: the portal's default_roles)")
	dry := fs.Bool("dry-run", false, "resolve and check every row, change nothing")
	if code, done := parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 || (*contact == "") == (*file == "") {
		fmt.Fprintln(e.Stderr, "connector invite: give exactly one of --contact or --file")
		fs.Usage()
		return exitUsage
	}
	c, code, ok := loadConfig(e, *path, config.Options{AllowEmbeddedRedis: true})
	if !ok {
		return code
	}
	if *portal == "" {
		*portal = c.Portals[0].Name
	}
	if _, ok := c.PortalByName(*portal); !ok {
		fmt.Fprintf(e.Stderr, "connector invite: --portal %q is not configured (portals: %s)\n", *portal, strings.Join(portalNames(c), ", "))
		return exitUsage
	}
	log := newLogger(config.Log{Level: "error", Format: "text"}, e.Stderr)
	dv, err := newDataverse(c, log, noHooks)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
		return exitFail
	}
	var rows []inviteRow
	if *contact != "" {
		rows = []inviteRow{{line: 0, contact: *contact, portal: *portal, roles: roles}}
	} else if rows, err = readInviteCSV(*file, *portal, roles); err != nil {
		fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
		return exitUsage
	}
	r := &inviteRun{e: e, c: c, dv: dv, finder: contactFinder{dv}, dry: *dry}
	if *file != "" && !*dry {
		r.progress = *file + ".progress"
		if r.done, err = readProgress(r.progress); err != nil {
			fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
			return exitFail
		}
	}
	ic, err := inviteConfig(c, log, nil)
	if err == nil {
		r.svc, err = invite.New(dv, ic)
	}
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
		return exitUsage
	}
	if *file != "" && c.Redis.URL != "" && !*dry {
		rdb, err := newRedis(c)
		if err == nil {
			err = pingRedis(ctx, rdb)
		}
		if err != nil {
			fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
			return exitFail
		}
		defer rdb.Close()
		if r.queue, err = intake.New(intake.Config{
			Redis: rdb, KeyPrefix: c.Redis.KeyPrefix, Invites: r.svc, Dataverse: dv, Contact: contactColumns(c),
			DefaultPortal: c.Portals[0].Name, Webhook: intake.WebhookConfig{Enabled: false},
			Poll: intake.PollConfig{Enabled: false}, Logger: log,
		}); err != nil {
			fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
			return exitFail
		}
	}
	return r.run(ctx, rows, *contact != "")
}

type inviteRun struct {
	e        env
	c        *config.Config
	dv       *dataverse.Client
	svc      *invite.Service
	finder   contactFinder
	queue    *intake.Intake
	dry      bool
	progress string
	done     map[string]bool

	mu      sync.Mutex
	results map[string]int
	errs    []string
}

func (r *inviteRun) run(ctx context.Context, rows []inviteRow, single bool) int {
	r.results = map[string]int{}
	var todo []inviteRow
	skipped := 0
	for _, row := range rows {
		if r.done[rowKey(row)] {
			skipped++
			continue
		}
		todo = append(todo, row)
	}
	if skipped > 0 {
		fmt.Fprintf(r.e.Stderr, "resuming: %d row(s) already done in an earlier run are skipped\n", skipped)
	}
	var prog *os.File
	if r.progress != "" {
		f, err := os.OpenFile(r.progress, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintf(r.e.Stderr, "connector invite: %v\n", err)
			return exitFail
		}
		defer f.Close()
		prog = f
	}
	bar := newProgressBar(r.e.Stderr, len(todo), !single)
	jobs := make(chan inviteRow)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for row := range jobs {
				outcome, detail := r.one(ctx, row)
				r.mu.Lock()
				r.results[outcome]++
				if outcome == outFailed {
					r.errs = append(r.errs, fmt.Sprintf("%s\t%s\t%s", lineRef(row), row.contact, detail))
				} else if prog != nil {
					fmt.Fprintf(prog, "%s\t%s\n", rowKey(row), outcome)
				}
				if single {
					fmt.Fprintf(r.e.Stdout, "%s: %s %s\n", row.contact, outcome, detail)
				}
				r.mu.Unlock()
				bar.add(1)
			}
		}()
	}
	for _, row := range todo {
		if ctx.Err() != nil {
			break
		}
		jobs <- row
	}
	close(jobs)
	wg.Wait()
	bar.finish()
	if !single {
		r.summary()
	}
	if ctx.Err() != nil {
		fmt.Fprintln(r.e.Stderr, "interrupted: run the same command again to resume")
		return exitFail
	}
	if r.results[outFailed] > 0 {
		return exitFail
	}
	return exitOK
}

// one invites, queues or (dry run) checks one row.
func (r *inviteRun) one(ctx context.Context, row inviteRow) (outcome, detail string) {
	id := row.contact
	if !config.IsGUID(id) {
		if !strings.Contains(id, "@") {
			return outFailed, "not a contact id or email address"
		}
		found, err := r.finder.FindContactByEmail(ctx, id)
		if err != nil {
			return outFailed, firstLine(err)
		}
		id = found
	}
	if r.dry {
		if _, ok := r.c.PortalByName(row.portal); !ok {
			return outFailed, fmt.Sprintf("portal %q is not configured", row.portal)
		}
		if pc, err := r.svc.CheckPortal(ctx, row.portal, row.roles); err != nil {
			return outFailed, firstLine(err)
		} else if len(pc.MissingRoles) > 0 {
			return outFailed, "unknown web role(s) " + strings.Join(pc.MissingRoles, ", ")
		}
		return outPlanned, fmt.Sprintf("contact %s to %s", id, row.portal)
	}
	if r.queue != nil {
		ct := contactColumns(r.c)
		body := map[string]any{ct.Status: ct.Requested, ct.Portal: row.portal, ct.Error: nil, ct.Roles: nil}
		if len(row.roles) > 0 {
			body[ct.Roles] = strings.Join(row.roles, ",")
		}
		if _, err := r.dv.Update(ctx, "contacts", id, body, nil); err != nil {
			return outFailed, firstLine(err)
		}
		if _, err := r.queue.Enqueue(ctx, intake.Request{ContactID: id, Portal: row.portal, Roles: row.roles, Source: "cli",
			DedupeKey: "cli:" + id + ":" + time.Now().UTC().Format("20060102T1504")}); err != nil {
			return outFailed, firstLine(err)
		}
		return outQueued, id
	}
	res, err := r.svc.Invite(ctx, invite.InviteRequest{ContactID: id, Portal: row.portal, Roles: row.roles, Source: "cli"})
	if err != nil {
		return outFailed, firstLine(err)
	}
	if res.Reused {
		return outReused, "invitation " + res.Invitation.ID
	}
	return outInvited, "invitation " + res.Invitation.ID
}

func (r *inviteRun) summary() {
	tw := tabwriter.NewWriter(r.e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OUTCOME\tCONTACTS")
	keys := make([]string, 0, len(r.results))
	for k := range r.results {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	total := 0
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%d\n", k, r.results[k])
		total += r.results[k]
	}
	fmt.Fprintf(tw, "total\t%d\n", total)
	tw.Flush()
	if len(r.errs) > 0 {
		sort.Strings(r.errs)
		fmt.Fprintln(r.e.Stdout, "\nFailed rows (fix them and run again; done rows are skipped):")
		tw = tabwriter.NewWriter(r.e.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROW\tCONTACT\tREASON")
		for _, l := range r.errs {
			fmt.Fprintln(tw, l)
		}
		tw.Flush()
	}
}

func lineRef(row inviteRow) string { return fmt.Sprintf("line %d", row.line) }

// rowKey identifies a row across runs for resuming.
func rowKey(row inviteRow) string {
	return strings.ToLower(row.contact) + "|" + row.portal + "|" + strings.Join(row.roles, ";")
}

// readInviteCSV reads rows with a header; column names are case-insensitive.
func readInviteCSV(path, defPortal string, defRoles []string) ([]inviteRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(bufio.NewReader(f))
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: read header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	contactCol := -1
	for _, name := range []string{"contact", "contactid", "email", "emailaddress1"} {
		if i, ok := col[name]; ok {
			contactCol = i
			break
		}
	}
	if contactCol < 0 {
		return nil, fmt.Errorf("%s: the header needs a contact (or contactid, email) column", path)
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var rows []inviteRow
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if contactCol >= len(rec) || strings.TrimSpace(rec[contactCol]) == "" {
			continue
		}
		row := inviteRow{line: line, contact: strings.TrimSpace(rec[contactCol]), portal: defPortal, roles: defRoles}
		if p := get(rec, "portal"); p != "" {
			row.portal = p
		}
		if rs := get(rec, "roles"); rs != "" {
			row.roles = nil
			for _, r := range strings.FieldsFunc(rs, func(c rune) bool { return c == ';' || c == '|' }) {
				if r = strings.TrimSpace(r); r != "" {
					row.roles = append(row.roles, r)
				}
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func readProgress(path string) (map[string]bool, error) {
	done := map[string]bool{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return done, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if key, _, ok := strings.Cut(sc.Text(), "\t"); ok {
			done[key] = true
		}
	}
	return done, sc.Err()
}

// progressBar draws "[#####.....] n/total" on a terminal and prints
// occasional lines otherwise (logs, CI).
type progressBar struct {
	w       io.Writer
	total   int
	n       int
	tty     bool
	on      bool
	lastPct int
	mu      sync.Mutex
}

func newProgressBar(w io.Writer, total int, on bool) *progressBar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progressBar{w: w, total: total, tty: tty, on: on && total > 0, lastPct: -1}
}

func (p *progressBar) add(n int) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	pct := p.n * 100 / p.total
	if p.tty {
		const width = 30
		filled := p.n * width / p.total
		fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.n, p.total)
		return
	}
	if pct/10 != p.lastPct/10 || p.n == p.total {
		p.lastPct = pct
		fmt.Fprintf(p.w, "progress: %d/%d (%d%%)\n", p.n, p.total, pct)
	}
}

func (p *progressBar) finish() {
	if p.on && p.tty {
		fmt.Fprintln(p.w)
	}
}
