package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
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
	fs := newFlags(e, "emulator", "[--addr ADDR] [--seed demo|empty] [--limits off|default] [--fault-rate P]",
		"Serve an in-memory Dataverse Web API and an Entra ID compatible token endpoint over TLS\nuntil interrupted. The first stdout line is a JSON object with org_url, api_url,\nauthority_host, tenant_id, client_id, client_secret and ca_file (the CA to trust).")
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback)")
	seed := fs.String("seed", "demo", "initial data: demo or empty")
	limits := fs.String("limits", "off", "service protection limits: off or default (6000 requests / 300 s per caller)")
	faultRate := fs.Float64("fault-rate", 0, "probability (0..1) of an injected 429/503/500 or reset per request")
	verbose := fs.Bool("v", false, "log every request to stderr")
	if code, done := parse(fs, args); done {
		return code
	}
	if fs.NArg() > 0 || (*seed != "demo" && *seed != "empty") || (*limits != "off" && *limits != "default") || *faultRate < 0 || *faultRate > 1 {
		fs.Usage()
		return exitUsage
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	opts := emulator.Options{Logger: slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: level}))}
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
	if *seed == "demo" {
		if _, err := emulator.SeedDemo(emu.Server); err != nil {
			fmt.Fprintf(e.Stderr, "connector emulator: seed: %v\n", err)
			return exitFail
		}
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
