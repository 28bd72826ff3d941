package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/solution"
)

func runSolution(_ context.Context, e env, args []string) int {
	const usageLine = "pack [--prefix X] [--out FILE] [--config FILE]"
	const summary = "Build the unmanaged Dynamics 365 solution (contact columns, the Invite to portal\nbutton and its dialog) as a zip to import. With --config the dialog offers the\nconfigured portals and roles and the columns follow intake.contact.*."
	if len(args) == 0 || args[0] != "pack" {
		fs := newFlags(e, "solution", usageLine, summary)
		if code, done := parse(fs, args); done {
			return code
		}
		fs.Usage()
		return exitUsage
	}
	fs := newFlags(e, "solution pack", "[--prefix X] [--out FILE] [--config FILE]", summary)
	prefix := fs.String("prefix", "", "publisher prefix for every schema name (default from --config, else "+solution.DefaultPrefix+")")
	out := fs.String("out", solution.SolutionUniqueName+".zip", "output file")
	cfgPath := fs.String("config", "", "configuration file (portals, roles and column names)")
	if code, done := parse(fs, args[1:]); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	opts := solution.DefaultOptions()
	if v, err := solution.NormalizeVersion(readBuildInfo().Version); err == nil {
		opts.Version = v
	}
	if *cfgPath != "" {
		c, code, ok := loadConfig(e, *cfgPath, config.Options{AllowEmbeddedRedis: true})
		if !ok {
			return code
		}
		ct := c.Intake.Contact
		cfgPrefix, err := solution.PrefixFromColumns(solution.Columns{
			Status: ct.StatusAttribute, Portal: ct.PortalAttribute, Roles: ct.RolesAttribute,
			InvitedOn: ct.InvitedOnAttribute, Error: ct.ErrorAttribute,
		})
		if err != nil {
			fmt.Fprintf(e.Stderr, "connector solution pack: intake.contact columns: %v\n", err)
			return exitUsage
		}
		if *prefix != "" && *prefix != cfgPrefix {
			fmt.Fprintf(e.Stderr, "connector solution pack: --prefix %s disagrees with intake.contact columns (prefix %s)\n", *prefix, cfgPrefix)
			return exitUsage
		}
		opts.Prefix = cfgPrefix
		for _, p := range c.Portals {
			opts.Portals = append(opts.Portals, solution.PortalChoice{Name: p.Name, Roles: p.Roles, DefaultRoles: p.DefaultRoles})
		}
	}
	if *prefix != "" {
		opts.Prefix = *prefix
	}
	var buf bytes.Buffer
	if err := solution.Pack(&buf, opts); err != nil {
		fmt.Fprintf(e.Stderr, "connector solution pack: %v\n", err)
		return exitUsage
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		fmt.Fprintf(e.Stderr, "connector solution pack: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(e.Stdout, "wrote %s (%d bytes, prefix %s, %d portal(s)); import it in make.powerapps.com > Solutions > Import\n",
		*out, buf.Len(), strings.TrimSuffix(opts.Columns().Status, "_portalinvitestatus"), len(opts.Portals))
	return exitOK
}
