package main

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/bulk"
	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/invite"
	intake "github.com/d365portal/connector/internal/sync"
	"github.com/d365portal/connector/internal/telemetry"
)

// roleFlags collects a repeatable --role.
type roleFlags []string

func (r *roleFlags) String() string     { return strings.Join(*r, ",") }
func (r *roleFlags) Set(v string) error { *r = append(*r, strings.TrimSpace(v)); return nil }

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
	tp, stopTracing, err := newTracing(ctx, c, e, log)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
		return exitUsage
	}
	defer flushTracing(log, stopTracing)
	if *contact != "" {
		// One invitation: one trace. A bulk run's rows each start their own
		// at the enqueue, continued by the worker that sends it.
		var span trace.Span
		ctx, span = tp.Tracer(telemetry.ScopeName).Start(ctx, "connector invite")
		defer span.End()
	}
	dv, err := newTracedDataverse(c, log, noHooks, tp)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
		return exitFail
	}
	var rows []bulk.Row
	if *contact != "" {
		rows = []bulk.Row{{Contact: *contact, Portal: *portal, Roles: roles}}
	} else if rows, err = bulk.ReadCSVFile(*file, bulk.Defaults{Portal: *portal, Roles: roles}); err != nil {
		fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
		return exitUsage
	}
	ic, err := inviteConfig(c, log, nil)
	var svc *invite.Service
	if err == nil {
		svc, err = invite.New(dv, ic)
	}
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
		return exitUsage
	}
	bc := bulk.Config{Invites: svc, Contacts: contactFinder{dv}, Portals: portalNames(c), DryRun: *dry,
		Single: *contact != "", Stdout: e.Stdout, Stderr: e.Stderr}
	if *file != "" && !*dry {
		bc.ResumeFile = *file + ".progress"
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
		q, err := intake.New(intake.Config{
			Redis: rdb, KeyPrefix: c.Redis.KeyPrefix, Invites: svc, Dataverse: dv, Contact: contactColumns(c),
			DefaultPortal: c.Portals[0].Name, Webhook: intake.WebhookConfig{Enabled: false},
			Poll: intake.PollConfig{Enabled: false}, Logger: log, Tracing: tp,
			MinAckedReplicas: c.Redis.MinAckedReplicas, AckTimeout: c.Redis.AckTimeout.D(),
		})
		if err != nil {
			fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
			return exitFail
		}
		bc.Queue = &bulk.Queue{Contacts: dv, Intake: q, Columns: contactColumns(c)}
		// The finish time comes from the senders' budgets when they are
		// paced, and the summary ends with their schedule.
		ps := newPacedSenders(c, rdb, newPortalPacer(c, rdb), q.Parked)
		if senders, err := ps.Senders(ctx); err == nil && len(senders) > 0 {
			bc.Estimator = bulk.Budget{Senders: senders}
			bc.Senders = ps
		}
	}
	runner, err := bulk.New(bc)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
		return exitFail
	}
	rep, err := runner.Run(ctx, rows)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector invite: %v\n", err)
		return exitFail
	}
	if !rep.OK() {
		return exitFail
	}
	return exitOK
}
