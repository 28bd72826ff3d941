// Package browsertest drives Debian's headless Chromium for page tests: it
// opens pages, types, clicks, checks text, takes screenshots and fails the
// test on any browser console error or uncaught exception.
//
// Tests skip with a message when /usr/bin/chromium is missing, and fail
// instead when CI=true, so CI never silently skips them.
package browsertest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// Chrome is a headless Chromium tab driven over the DevTools protocol. It
// records console errors and uncaught exceptions; the test fails on any.
type Chrome struct {
	t        *testing.T
	ctx      context.Context
	dir      string
	mu       sync.Mutex
	problems []string
	shots    int
}

// New starts a headless Chromium tab for t; extra adds Chromium options
// (for example trusting one test server's certificate).
func New(t *testing.T, extra ...chromedp.ExecAllocatorOption) *Chrome {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser tests: %s not found (CI=true); install the chromium package", chromiumPath)
		}
		t.Skipf("browser tests: %s not found; install the chromium package to run them", chromiumPath)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 900),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	c := &Chrome{t: t, ctx: ctx, dir: t.TempDir()}
	// Listen starts the browser; its context has no deadline, as chromedp
	// requires for the browser's lifetime.
	if err := chromedp.Listen(ctx, c.onEvent); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.problems {
			t.Errorf("browser console: %s", p)
		}
	})
	return c
}

// onEvent runs on the tab's reader goroutine: record and return.
func (c *Chrome) onEvent(ev any) {
	var problem string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			problem = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
		}
	case *runtime.EventExceptionThrown:
		problem = "exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			problem += " " + ev.ExceptionDetails.Exception.Description
		}
	case *log.EventEntryAdded:
		// Browser-side errors such as CSP violations. Network entries are
		// left out: error pages answer 4xx on purpose.
		if ev.Entry.Level == log.EntryLevelError && ev.Entry.Source != log.EntrySourceNetwork {
			problem = "log " + string(ev.Entry.Source) + ": " + ev.Entry.Text
		}
	}
	if problem != "" {
		c.mu.Lock()
		c.problems = append(c.problems, problem)
		c.mu.Unlock()
	}
}

// do runs steps with a deadline (derived from the tab's context, which
// has already run).
func (c *Chrome) Do(steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		c.t.Fatalf("browser: %v (at %s)", err, c.Location())
	}
}

// navigate runs steps that load a new page and waits for it; it returns the
// HTTP status of the document.
func (c *Chrome) Navigate(steps ...chromedp.Action[chromedp.Void]) int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	res, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		c.t.Fatalf("browser navigation: %v (at %s)", err, c.Location())
	}
	return res.Status
}

func (c *Chrome) Open(u string) int64 { return c.Navigate(chromedp.Navigate(u)) }

func (c *Chrome) Location() string {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

func (c *Chrome) Path() string {
	u, _ := url.Parse(c.Location())
	return u.Path
}

func (c *Chrome) Text(sel string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		c.t.Fatalf("text of %s: %v (at %s)", sel, err, c.Location())
	}
	return strings.Join(strings.Fields(s), " ")
}

func (c *Chrome) WantText(sel, substr string) {
	c.t.Helper()
	if got := c.Text(sel); !strings.Contains(got, substr) {
		c.t.Fatalf("%s: %s says %q, want %q", c.Location(), sel, got, substr)
	}
}

func (c *Chrome) Eval(expr string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		c.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shot saves a full-page PNG under the test's temporary directory (and
// under $BROWSERTEST_SCREENSHOTS when set, to look at them after the run).
func (c *Chrome) Shot(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Fatalf("screenshot: %v", err)
	}
	c.shots++
	file := fmt.Sprintf("%02d-%s.png", c.shots, name)
	if err := os.WriteFile(filepath.Join(c.dir, file), png, 0o644); err != nil {
		c.t.Fatal(err)
	}
	if extra := os.Getenv("BROWSERTEST_SCREENSHOTS"); extra != "" {
		_ = os.MkdirAll(extra, 0o755)
		_ = os.WriteFile(filepath.Join(extra, c.t.Name()+"-"+file), png, 0o644)
	}
}

// narrow checks the page at 320 CSS pixels: nothing may need horizontal
// scrolling.
func (c *Chrome) Narrow(name string) {
	c.t.Helper()
	c.Do(chromedp.EmulateViewport(320, 720))
	if overflow := c.Eval(`String(document.documentElement.scrollWidth - document.documentElement.clientWidth)`); overflow != "0" {
		c.t.Errorf("%s at 320px scrolls sideways by %spx", c.Location(), overflow)
	}
	c.Shot(name + "-320px")
	c.Do(chromedp.EmulateViewport(1024, 900))
}

// tabTo presses Tab until the element with id has focus, as a keyboard
// user would.
func (c *Chrome) TabTo(id string) {
	c.t.Helper()
	for range 30 {
		if c.Eval(`document.activeElement ? document.activeElement.id : ""`) == id {
			return
		}
		c.Do(chromedp.KeyEvent("\t"))
	}
	c.t.Fatalf("Tab never reached #%s on %s", id, c.Location())
}

func (c *Chrome) TypeInto(sel, text string) {
	c.t.Helper()
	c.Do(chromedp.WaitVisible(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).value = ""`, sel)),
		chromedp.SendKeys(chromedp.CSS(sel), text))
}
