package main

import (
	"context"
	"fmt"

	"github.com/d365portal/connector/internal/config"
	intake "github.com/d365portal/connector/internal/sync"
)

func runWebhook(ctx context.Context, e env, args []string) int {
	const summary = "Create or update (idempotently) the Dataverse webhook: a serviceendpoint pointing at\nserver.public_url + intake.webhook.path with the configured auth, and asynchronous\nsteps on contact Create and Update (filtered on the invite status column) and on\nemail Update (filtered on statuscode, to follow invitation emails to Delivered or Failed).\n`unregister` removes them."
	if len(args) == 0 || (args[0] != "register" && args[0] != "unregister") {
		fs := newFlags(e, "webhook", "register|unregister --config FILE [--dry-run]", summary)
		if code, done := parse(fs, args); done {
			return code
		}
		fs.Usage()
		return exitUsage
	}
	verb := args[0]
	fs := newFlags(e, "webhook "+verb, "--config FILE [--dry-run]", summary)
	path := fs.String("config", "", "configuration file")
	dry := fs.Bool("dry-run", false, "print what would change without writing")
	if code, done := parse(fs, args[1:]); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	c, code, ok := loadConfig(e, *path, config.Options{AllowEmbeddedRedis: true})
	if !ok {
		return code
	}
	if !c.Intake.Webhook.Enabled {
		fmt.Fprintln(e.Stderr, "connector webhook: intake.webhook.enabled is false; enable it first")
		return exitUsage
	}
	hookURL, err := intake.WebhookURL(c.Server.PublicURL, c.Intake.Webhook.Path)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector webhook: server.public_url: %v\n", err)
		return exitUsage
	}
	dv, err := newDataverse(c, newLogger(config.Log{Level: "error", Format: "text"}, e.Stderr), noHooks)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector webhook: %v\n", err)
		return exitFail
	}
	o := webhookOptions(c, hookURL, *dry, e.Stdout)
	if verb == "unregister" {
		if err := intake.UnregisterWebhook(ctx, dv, o); err != nil {
			fmt.Fprintf(e.Stderr, "connector webhook unregister: %v\n", err)
			return exitFail
		}
		return exitOK
	}
	reg, err := intake.RegisterWebhook(ctx, dv, o)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector webhook register: %v\n", err)
		return exitFail
	}
	if !*dry {
		fmt.Fprintf(e.Stdout, "webhook registered: serviceendpoint %s, %d step(s), posting to %s\n", reg.ServiceEndpointID, len(reg.Steps), hookURL)
	}
	return exitOK
}
