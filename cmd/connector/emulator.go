package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dataverse/emulator/throttle"
)

// emulatorInfo is the first stdout line of `connector emulator`: everything
// another program needs to get a token and call the API.
type emulatorInfo struct {
	OrgURL        string `json:"org_url"`
	APIURL        string `json:"api_url"`
	AuthorityHost string `json:"authority_host"`
	TenantID      string `json:"tenant_id"`
	ClientID      string `json:"client_id"`
	ClientSecret  string `json:"client_secret"`
	CAFile        string `json:"ca_file"`
}

func runEmulator(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "emulator", "[--addr ADDR] [--seed demo|empty] [--limits off|default] [--fault-rate P] [email sync flags]",
		"Serve an in-memory Dataverse Web API and an Entra ID compatible token endpoint over TLS\nuntil interrupted. The first stdout line is a JSON object with org_url, api_url,\nauthority_host, tenant_id, client_id, client_secret and ca_file (the CA to trust).\nEmails sent with SendEmail go through emulated server-side sync: Pending Send, then\nSending and Sent (or Failed) per sender mailbox, within each mailbox's limits.")
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback)")
	seed := fs.String("seed", "demo", "initial data: demo or empty")
	limits := fs.String("limits", "off", "service protection limits: off or default (6000 requests / 300 s per caller)")
	faultRate := fs.Float64("fault-rate", 0, "probability (0..1) of an injected 429/503/500 or reset per request")
	verbose := fs.Bool("v", false, "log every request to stderr")
	mail := addEmailSyncFlags(fs, 0)
	if code, done := parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 || (*seed != "demo" && *seed != "empty") || (*limits != "off" && *limits != "default") || *faultRate < 0 || *faultRate > 1 {
		fs.Usage()
		return exitUsage
	}
	syncOpts, err := mail.options()
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector emulator: %v\n", err)
		return exitUsage
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	opts := emulator.Options{Logger: slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: level})), EmailSync: syncOpts}
	if *limits == "default" {
		opts.Limits = throttle.Default()
	}
	if *faultRate > 0 {
		opts.Faults = emulator.UniformFaults(*faultRate, uint64(time.Now().UnixNano()))
	}
	emu, err := emulator.StartTLS(opts, *addr)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector emulator: %v\n", err)
		return exitFail
	}
	defer emu.Close()
	var demo *emulator.Demo
	if *seed == "demo" {
		if demo, err = emulator.SeedDemo(emu.Server); err != nil {
			fmt.Fprintf(e.Stderr, "connector emulator: seed: %v\n", err)
			return exitFail
		}
	}
	if err := mail.applyMailboxes(emu.Server, demo); err != nil {
		fmt.Fprintf(e.Stderr, "connector emulator: %v\n", err)
		return exitUsage
	}
	line, _ := json.Marshal(emulatorInfo{
		OrgURL: emu.OrgURL, APIURL: emu.APIURL, AuthorityHost: emu.AuthorityHost,
		TenantID: emu.TenantID, ClientID: emu.ClientID, ClientSecret: emu.ClientSecret, CAFile: emu.CAFile,
	})
	fmt.Fprintln(e.Stdout, string(line))
	fmt.Fprintf(e.Stderr, "Dataverse emulator at %s (Ctrl-C to stop)\n", emu.APIURL)
	<-ctx.Done()
	return exitOK
}

// emailSyncFlags are the flags of the emulated server-side sync, shared by
// `connector emulator` and `connector dev`.
type emailSyncFlags struct {
	delay, submit, retry *time.Duration
	messages, recipients *int
	scale                *float64
	bounce               *string
	mailboxes            mailboxFlag
}

func addEmailSyncFlags(fs *flag.FlagSet, defaultDelay time.Duration) *emailSyncFlags {
	f := &emailSyncFlags{
		delay:      fs.Duration("email-delay", defaultDelay, "time an email stays in Pending Send before its mailbox picks it up (0: before SendEmail returns)"),
		submit:     fs.Duration("email-submit", 0, "time an email stays in Sending before the mail server's answer"),
		retry:      fs.Duration("email-retry", 5*time.Minute, "time before a mailbox that could not send tries again (changing the mailbox retries at once)"),
		messages:   fs.Int("mailbox-messages", 30, "messages each mailbox may send per minute (0: no limit)"),
		recipients: fs.Int("mailbox-recipients", 10000, "recipients each mailbox may send to in a rolling 24 hours (0: no limit)"),
		scale:      fs.Float64("mailbox-limits-scale", 1, "scale both mailbox limits' windows and budgets by this factor (0.01: 1 message per 600ms)"),
		bounce:     fs.String("bounce-suffix", ".invalid", "recipient addresses ending in this suffix bounce and fail their email (empty: none)"),
	}
	fs.Var(&f.mailboxes, "mailbox", "set a mailbox, NAME=SETTING[,SETTING...] (repeatable): NAME is mailer, admin or queue (the demo's)\nor a mailbox's email address; SETTING is approved, pending, rejected or empty (email address\nstatus), enabled or disabled (outgoing email), sss, outlook or none (outgoing method),\no365-approved or o365-unapproved. Example: --mailbox queue=pending")
	return f
}

func (f *emailSyncFlags) options() (emulator.EmailSyncOptions, error) {
	if *f.delay < 0 || *f.submit < 0 || *f.retry <= 0 || *f.messages < 0 || *f.recipients < 0 || *f.scale <= 0 {
		return emulator.EmailSyncOptions{}, errors.New("email sync flags: durations and limits must not be negative, --email-retry and --mailbox-limits-scale must be positive")
	}
	limits := emulator.MailboxLimits{Messages: *f.messages, Recipients: *f.recipients}
	if limits.Messages == 0 {
		limits.Messages = -1
	}
	if limits.Recipients == 0 {
		limits.Recipients = -1
	}
	if *f.scale != 1 {
		limits = limits.Scaled(*f.scale)
	}
	o := emulator.EmailSyncOptions{Delay: *f.delay, Submit: *f.submit, Retry: *f.retry, Limits: limits}
	suffix := strings.ToLower(*f.bounce)
	o.Bounce = func(address string) bool {
		return suffix != "" && strings.HasSuffix(strings.ToLower(strings.TrimSpace(address)), suffix)
	}
	return o, nil
}

// applyMailboxes applies the --mailbox settings (demo may be nil: only email
// addresses name mailboxes then).
func (f *emailSyncFlags) applyMailboxes(s *emulator.Server, demo *emulator.Demo) error {
	for _, m := range f.mailboxes {
		id := ""
		if demo != nil {
			id = demo.Mailboxes[m.name]
		}
		if id == "" {
			for _, row := range s.Rows("mailbox") {
				if addr, _ := row["emailaddress"].(string); addr != "" && strings.EqualFold(addr, m.name) {
					id, _ = row["mailboxid"].(string)
				}
			}
		}
		if id == "" {
			return fmt.Errorf("--mailbox %s: no such mailbox (mailer, admin, queue or an email address)", m.name)
		}
		if err := s.SetMailbox(id, m.cols); err != nil {
			return fmt.Errorf("--mailbox %s: %w", m.name, err)
		}
	}
	return nil
}

type mailboxSetting struct {
	name string
	cols map[string]any
}

// mailboxFlag is the repeatable --mailbox NAME=SETTING[,SETTING...].
type mailboxFlag []mailboxSetting

var mailboxSettings = map[string][2]any{
	"approved":        {"emailrouteraccessapproval", emulator.ApprovalApproved},
	"pending":         {"emailrouteraccessapproval", emulator.ApprovalPending},
	"rejected":        {"emailrouteraccessapproval", emulator.ApprovalRejected},
	"empty":           {"emailrouteraccessapproval", emulator.ApprovalEmpty},
	"enabled":         {"enabledforoutgoingemail", true},
	"disabled":        {"enabledforoutgoingemail", false},
	"sss":             {"outgoingemaildeliverymethod", emulator.OutgoingServerSideSync},
	"outlook":         {"outgoingemaildeliverymethod", emulator.OutgoingOutlook},
	"none":            {"outgoingemaildeliverymethod", emulator.OutgoingNone},
	"o365-approved":   {"isemailaddressapprovedbyo365admin", true},
	"o365-unapproved": {"isemailaddressapprovedbyo365admin", false},
}

func (m *mailboxFlag) String() string {
	var parts []string
	for _, s := range *m {
		parts = append(parts, s.name)
	}
	return strings.Join(parts, " ")
}

func (m *mailboxFlag) Set(v string) error {
	name, list, ok := strings.Cut(v, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.TrimSpace(list) == "" {
		return fmt.Errorf("want NAME=SETTING[,SETTING...], got %q", v)
	}
	cols := map[string]any{}
	for _, s := range strings.Split(list, ",") {
		col, ok := mailboxSettings[strings.ToLower(strings.TrimSpace(s))]
		if !ok {
			return fmt.Errorf("unknown mailbox setting %q (approved, pending, rejected, empty, enabled, disabled, sss, outlook, none, o365-approved, o365-unapproved)", s)
		}
		cols[col[0].(string)] = col[1]
	}
	*m = append(*m, mailboxSetting{name: name, cols: cols})
	return nil
}
