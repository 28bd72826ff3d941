package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/d365portal/connector/internal/config"
)

// Exit codes: 0 success, 1 a run or check failed, 2 bad usage or configuration.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// env is everything the command reads from the process, so tests can run the
// whole program in-process.
type env struct {
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

type command struct {
	name    string
	summary string
	usage   string // after "connector <name> "
	run     func(ctx context.Context, e env, args []string) int
}

func commands() []command {
	return []command{
		{"serve", "run the connector in production (webhook, poller, workers, portal, API)", "--config FILE", runServe},
		{"dev", "run everything on this machine with an embedded Dataverse emulator and Redis", "[--addr ADDR] [--config FILE] [--json]", runDev},
		{"emulator", "serve the Dataverse Web API emulator over TLS", "[--addr ADDR] [--seed demo|empty] [--limits off|default] [--fault-rate P]", runEmulator},
		{"check", "check configuration, Redis and Dataverse and print a checklist", "--config FILE [--offline] [--print-config]", runCheck},
		{"invite", "invite contacts from the command line", "--config FILE (--contact ID|EMAIL | --file CSV) [--portal NAME] [--role NAME]... [--dry-run]", runInvite},
		{"webhook", "register or remove the Dataverse webhook", "register|unregister --config FILE [--dry-run]", runWebhook},
		{"solution", "build the Dynamics 365 solution zip with the Invite to portal button", "pack [--prefix X] [--out FILE] [--config FILE]", runSolution},
		{"version", "print version information", "", runVersion},
	}
}

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		usage(e.Stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help", "-help":
		if len(args) > 1 {
			for _, c := range commands() {
				if c.name == args[1] {
					return c.run(ctx, e, []string{"--help"})
				}
			}
		}
		usage(e.Stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.Stderr, "connector: unknown command %q\n\n", name)
	usage(e.Stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: connector <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "  help       show help for a command: connector help <command>")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Start here: connector dev   (no configuration or services needed)")
}

// newFlags makes a flag set whose errors and --help print the command's usage.
func newFlags(e env, name, usageLine, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: connector %s %s\n\n%s\n", name, usageLine, summary)
		if hasFlags(fs) {
			fmt.Fprintln(fs.Output(), "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parse parses flags; it returns done=true with the exit code when the
// command should stop (help asked, or bad flags).
func parse(fs *flag.FlagSet, args []string) (code int, done bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK, true
	case err != nil:
		return exitUsage, true
	}
	return exitOK, false
}

// loadConfig loads and validates the file, printing every problem on failure.
func loadConfig(e env, path string, opts config.Options) (*config.Config, int, bool) {
	if path == "" {
		fmt.Fprintln(e.Stderr, "connector: --config FILE is required")
		return nil, exitUsage, false
	}
	opts.Getenv = e.Getenv
	c, err := config.Load(path, opts)
	if err != nil {
		fmt.Fprintf(e.Stderr, "connector: %v\n", err)
		return nil, exitUsage, false
	}
	return c, exitOK, true
}
