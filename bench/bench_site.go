package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

// ginBaselineEnv makes the bench binary serve the minimal Gin handler on the
// address it holds instead of running the benchmarks: the baseline runs in
// its own process, like the connector.
const ginBaselineEnv = "BENCH_GIN_BASELINE_ADDR"

func serveGinBaseline(addr string) error {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/hello", func(c *gin.Context) { c.String(http.StatusOK, "hello") })
	return r.Run(addr)
}

// startGinBaseline re-executes this program as the baseline server.
func (s *stage) startGinBaseline() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), ginBaselineEnv+"="+addr)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start gin baseline: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.onClose(func() { _ = cmd.Process.Kill(); <-done })
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "http://" + addr, nil
		}
		select {
		case <-done:
			return "", fmt.Errorf("gin baseline exited at start")
		case <-time.After(25 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("gin baseline not listening on %s", addr)
}

type siteResult struct {
	Concurrency  int                   `json:"concurrency"`
	Duration     string                `json:"duration"`
	Loads        map[string]loadResult `json:"loads"`
	PeakRSSBytes int64                 `json:"connector_peak_rss_bytes"`
	IdleRSSBytes int64                 `json:"connector_idle_rss_bytes"`
}

// benchSite loads the redemption site's two hot pages on one `connector
// serve` replica with sessions in a real redis-server, and a minimal Gin
// handler in its own process, in the same run.
func benchSite(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "site", Title: "4. Redemption site: throughput and latency against a minimal Gin handler"}
	workers, warm, dur := 16, 2*time.Second, 10*time.Second
	if o.quick {
		warm, dur = time.Second, 3*time.Second
	}
	st, err := h.stage("site")
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	defer st.close()
	c, err := st.startCluster(ctx, clusterOptions{
		Emulator: emulator.Options{},
		// Raised so one loopback address can load the pages; the limits
		// themselves are exercised by the fault suite.
		Config: connectorConfig{CodeLookups: 100_000_000, Redemptions: 1000},
	})
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	cs, err := c.org.insertContacts("site", 2, nil)
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	if _, err := c.org.clickAll(ctx, cs, 2, 0); err != nil {
		sec.Error = err.Error()
		return sec
	}
	if _, err := c.org.waitSent(ctx, cs, time.Minute, nil); err != nil {
		sec.Error = err.Error()
		return sec
	}
	codes := invitationCodes(c.org.Outbox())
	rep := c.replicas[0]
	// One person signs up: their session cookie loads the profile page.
	b := newBrowser(rep.URL, "")
	p, err := b.redeem(codes[strings.ToLower(cs[1].Email)], "site-user@example.test", benchPassword)
	if err != nil || p.Status != http.StatusSeeOther {
		sec.Error = fmt.Sprintf("sign-up for the profile load: %v %s", err, statusOf(p))
		return sec
	}
	u, _ := url.Parse(rep.URL)
	var cookie []string
	for _, ck := range b.c.Jar.Cookies(u) {
		cookie = append(cookie, ck.Name+"="+ck.Value)
	}
	ginURL, err := st.startGinBaseline()
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	idle, _ := procStatusKB(rep.pid(), "VmRSS")

	invURL := rep.URL + "/invitation?code=" + url.QueryEscape(codes[strings.ToLower(cs[0].Email)])
	runs := []struct {
		name, url string
		cookie    bool
	}{
		{"minimal Gin handler (GET /hello)", ginURL + "/hello", false},
		{"invitation page (GET /invitation?code=…)", invURL, false},
		{"signed-in profile (GET /profile)", rep.URL + "/profile", true},
	}
	res := siteResult{Concurrency: workers, Duration: dur.String(), Loads: map[string]loadResult{}}
	var order []string
	for _, r := range runs {
		st.logf("%s: %d clients for %s", r.name, workers, dur)
		lr := loadGen(ctx, workers, warm, dur, http.StatusOK, func() (*http.Request, error) {
			req, err := http.NewRequest(http.MethodGet, r.url, nil)
			if err == nil && r.cookie {
				req.Header.Set("Cookie", strings.Join(cookie, "; "))
			}
			return req, err
		})
		res.Loads[r.name] = lr
		order = append(order, r.name)
		sec.check(lr.Errors == 0, "%s: %d of %d requests failed (statuses %v)", r.name, lr.Errors, lr.Requests, lr.Statuses)
	}
	res.IdleRSSBytes = idle
	res.PeakRSSBytes, err = rep.peakRSS()
	if err != nil {
		sec.Error = err.Error()
		return sec
	}
	base := res.Loads[order[0]]
	sec.Columns = []string{"endpoint", "requests/s", "p50", "p99", "requests/s vs Gin", "p99 vs Gin", "bytes/response"}
	for _, name := range order {
		lr := res.Loads[name]
		sec.row(name, lr.RPS, lr.Latency.P50, lr.Latency.P99, fmt.Sprintf("%.2f", lr.RPS/base.RPS),
			fmt.Sprintf("%.1f×", float64(lr.Latency.P99)/float64(base.Latency.P99)), lr.Bytes/int64(max(lr.Requests, 1)))
	}
	sec.note("Closed loop, %d concurrent clients, %s per endpoint after a %s warm-up, all on this %d-core machine: the load generator and the Dataverse emulator (TLS) share this process, the connector and the Gin baseline run in their own.", workers, dur, warm, h.cores())
	sec.note("Each connector page makes one Dataverse request (the invitation by code; the signed-in contact) and reads the session from Redis; the code-lookup rate limit was raised for the run (one address sends everything).")
	sec.note("Connector resident memory: %.1f MiB idle before the loads, peak (VmHWM) %.1f MiB.", mib(res.IdleRSSBytes), mib(res.PeakRSSBytes))
	sec.Data = res
	return sec
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
