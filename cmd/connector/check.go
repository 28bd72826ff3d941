package main

import (
	"context"
	"fmt"

	"github.com/d365portal/connector/internal/config"
)

func runCheck(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "check", "--config FILE [--offline] [--print-config]",
		"Validate the configuration; without --offline also check Redis, the Dataverse token,\nWhoAmI, the contact columns, each portal's website, roles and sender, and the webhook.")
	path := fs.String("config", "", "configuration file")
	offline := fs.Bool("offline", false, "only validate the file; contact no service")
	printCfg := fs.Bool("print-config", false, "print the configuration with defaults applied and secrets redacted")
	if code, done := parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	c, code, ok := loadConfig(e, *path, config.Options{})
	if !ok {
		return code
	}
	if *printCfg {
		if err := c.Dump(e.Stdout); err != nil {
			fmt.Fprintf(e.Stderr, "connector check: %v\n", err)
			return exitFail
		}
	}
	if *offline {
		fmt.Fprintf(e.Stdout, "✓ %s is valid (%d portal(s))\n", *path, len(c.Portals))
		return exitOK
	}
	return checkOnline(ctx, e, c)
}
