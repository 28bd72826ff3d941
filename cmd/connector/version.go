package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

// Set with -ldflags "-X main.version=... -X main.commit=..." by the Makefile
// and Dockerfile; debug.ReadBuildInfo fills what is missing.
var (
	version = ""
	commit  = ""
)

type buildInfo struct {
	Version, Commit, GoVersion, Module string
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Module: "github.com/d365portal/connector", GoVersion: "unknown"}
	if info, ok := debug.ReadBuildInfo(); ok {
		b.GoVersion = info.GoVersion
		b.Module = info.Main.Path
		if b.Version == "" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && b.Commit == "" {
				b.Commit = s.Value
			}
		}
	}
	if b.Version == "" || b.Version == "(devel)" {
		b.Version = "devel"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// userAgent is sent to Dataverse so admins can find the connector's calls.
func userAgent() string { return "portal-invite-connector/" + readBuildInfo().Version }

func runVersion(_ context.Context, e env, args []string) int {
	fs := newFlags(e, "version", "", "Print the module version, commit and Go version.")
	if code, done := parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	b := readBuildInfo()
	fmt.Fprintf(e.Stdout, "connector %s\nmodule %s\ncommit %s\ngo %s\n", b.Version, b.Module, b.Commit, b.GoVersion)
	return exitOK
}
