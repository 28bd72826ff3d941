// Command bench measures the connector and runs its fault suite against real
// processes: the connector binary (`connector serve` replicas), real
// redis-server processes and the Dataverse emulator served over TLS from this
// process, all on loopback.
//
//	go run ./bench            # benchmarks (make bench)
//	go run ./bench --chaos    # fault suite (make chaos)
//	go run ./bench --quick    # reduced pass of either, for CI
//
// Results are printed as Markdown tables and written as JSON (and the same
// Markdown) under bench/results/. docs/BENCHMARKS.md and docs/RELIABILITY.md
// carry the latest figures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	chaos    bool
	quick    bool
	contacts int           // 0 = the default of each part
	only     []string      // part names; empty = all
	out      string        // JSON results file; "" = bench/results/<kind>-latest.json
	keep     bool          // keep the work directory (logs, configs, Redis data)
	fuzzTime time.Duration // per fuzz target
	verbose  bool
}

func main() {
	if addr := os.Getenv(ginBaselineEnv); addr != "" {
		// Re-executed as the minimal Gin server the site is compared with.
		if err := serveGinBaseline(addr); err != nil {
			fmt.Fprintln(os.Stderr, "gin baseline:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var only string
	fs.BoolVar(&o.chaos, "chaos", false, "run the fault suite instead of the benchmarks")
	fs.BoolVar(&o.quick, "quick", false, "reduced pass (fewer contacts, shorter loads) for CI")
	fs.IntVar(&o.contacts, "contacts", 0, "contacts for the throughput benchmark or the chaos pipeline (default 2000 / 1000; --quick 300 / 100)")
	fs.StringVar(&only, "only", "", "comma-separated parts to run (benchmarks: "+strings.Join(benchParts, ",")+"; chaos: "+strings.Join(chaosParts, ",")+")")
	fs.StringVar(&o.out, "out", "", "write the JSON results here (default bench/results/<bench|chaos>-latest.json)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory with the connector logs and configs")
	fs.DurationVar(&o.fuzzTime, "fuzztime", 0, "time per fuzz target (default 30s; --quick 5s)")
	fs.BoolVar(&o.verbose, "v", false, "verbose progress")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if only != "" {
		valid := benchParts
		if o.chaos {
			valid = chaosParts
		}
		for _, p := range strings.Split(only, ",") {
			p = strings.TrimSpace(p)
			if !slices.Contains(valid, p) {
				fmt.Fprintf(stderr, "bench: unknown part %q (choose from %s)\n", p, strings.Join(valid, ", "))
				return 2
			}
			o.only = append(o.only, p)
		}
	}
	if o.fuzzTime == 0 {
		o.fuzzTime = 30 * time.Second
		if o.quick {
			o.fuzzTime = 5 * time.Second
		}
	}

	h, err := newHarness(ctx, stderr, o.keep, o.verbose)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	defer h.close()

	rep := newReport(o, args)
	start := time.Now()
	if o.chaos {
		runChaos(ctx, h, o, rep)
	} else {
		runBenchmarks(ctx, h, o, rep)
	}
	rep.Elapsed = time.Since(start).Round(time.Second).String()

	md := rep.markdown()
	fmt.Fprint(stdout, md)
	if err := rep.write(h.root, o.out, md); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	if !rep.Passed {
		fmt.Fprintln(stderr, "bench: FAILED (see above)")
		return 1
	}
	return 0
}

// wanted reports whether a part runs in this invocation.
func (o options) wanted(part string) bool {
	return len(o.only) == 0 || slices.Contains(o.only, part)
}
