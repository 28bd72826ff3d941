package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/invite"
)

// Documentation addresses (RFC 5737) announced through X-Forwarded-For by
// the loopback proxy the site trusts in this part.
const (
	attackerIP = "203.0.113.66"
	normalIP   = "198.51.100.7"
	otherIP    = "192.0.2.10"
)

type bruteResult struct {
	Attempts       int         `json:"attempts"`
	Statuses       map[int]int `json:"statuses"`
	NotLimited     int         `json:"not_rate_limited"`
	Allowed        int         `json:"allowed_by_limit"` // burst + refill over the attack
	Found          int         `json:"valid_codes_found"`
	AttackSeconds  float64     `json:"attack_s"`
	AttackRPS      float64     `json:"attack_rps"`
	DataverseReads int         `json:"dataverse_lookups"`
	Baseline       dist        `json:"normal_user_before"`
	During         dist        `json:"normal_user_during"`
	NormalErrors   int         `json:"normal_user_errors"`
	OtherAddress   int         `json:"other_address_status"`
	LimitPerMinute int         `json:"code_lookups_per_minute"`
}

// chaosBruteForce sends thousands of wrong codes from one address while a
// signed-in user keeps using the site from another.
func chaosBruteForce(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "bruteforce", Title: "Wrong codes from one address"}
	attempts, normalFor := 10_000, 5*time.Second
	if o.quick {
		attempts, normalFor = 2000, 3*time.Second
	}
	res, err := runBruteForce(ctx, h, attempts, normalFor)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	sec.Columns = []string{"check", "expected", "got"}
	sec.row("lookups answered before the limit (not 429)", fmt.Sprintf("≤ %d (%d/min: burst + refill over %.1f s)", res.Allowed, res.LimitPerMinute, res.AttackSeconds), res.NotLimited)
	sec.row("rate-limited answers (429)", fmt.Sprintf("≥ %d", res.Attempts-res.Allowed), res.Statuses[http.StatusTooManyRequests])
	sec.row("valid codes found (200 with the sign-up form)", 0, res.Found)
	sec.row("Dataverse lookups caused by the attack", fmt.Sprintf("≤ %d", res.Allowed), res.DataverseReads)
	sec.row("another address, valid code, after the attack", 200, res.OtherAddress)
	sec.row("signed-in user p50 / p99 before the attack", "–", fmt.Sprintf("%s / %s", fmtDur(res.Baseline.P50), fmtDur(res.Baseline.P99)))
	bound := max(100*time.Millisecond, 5*res.Baseline.P99)
	sec.row("signed-in user p50 / p99 during the attack", "p99 ≤ "+fmtDur(bound), fmt.Sprintf("%s / %s", fmtDur(res.During.P50), fmtDur(res.During.P99)))
	sec.row("signed-in user errors", 0, res.NormalErrors)
	sec.check(res.NotLimited <= res.Allowed, "%d lookups got through, the limit allows %d", res.NotLimited, res.Allowed)
	sec.check(res.Found == 0, "%d valid codes found", res.Found)
	sec.check(res.DataverseReads <= res.Allowed, "%d Dataverse lookups, want ≤ %d", res.DataverseReads, res.Allowed)
	sec.check(res.OtherAddress == http.StatusOK, "another address got %d for a valid code", res.OtherAddress)
	sec.check(res.NormalErrors == 0, "the signed-in user saw %d errors", res.NormalErrors)
	sec.check(res.During.P99 <= bound, "the signed-in user's p99 rose to %s during the attack (bound %s: 100 ms or 5× the p99 before, whichever is larger)", fmtDur(res.During.P99), fmtDur(bound))
	sec.note("%d random codes of the real format from %s (16 connections, %.0f requests/s) against GET /invitation; `server.rate_limits.code_lookups` = %d per minute per address and per code, kept in Redis. Answers: %v.", attempts, attackerIP, res.AttackRPS, res.LimitPerMinute, res.Statuses)
	sec.note("Meanwhile a signed-in user from %s loaded /profile 20 times a second (open loop): %d requests before, %d during. All processes share this machine's %d cores, so the attack's CPU cost shows in the user's latency.", normalIP, res.Baseline.N, res.During.N, h.cores())
	sec.Data = res
	return sec
}

func runBruteForce(ctx context.Context, h *harness, attempts int, normalFor time.Duration) (*bruteResult, error) {
	const perMinute = 30
	st, err := h.stage("chaos-bruteforce")
	if err != nil {
		return nil, err
	}
	defer st.close()
	c, err := st.startCluster(ctx, clusterOptions{
		Emulator: emulator.Options{RequestLogSize: 1 << 18},
		Config:   connectorConfig{CodeLookups: perMinute, TrustedProxies: []string{"127.0.0.1/32"}},
	})
	if err != nil {
		return nil, err
	}
	cs, err := c.org.insertContacts("brute", 2, nil)
	if err != nil {
		return nil, err
	}
	if _, err := c.org.clickAll(ctx, cs, 2, 0); err != nil {
		return nil, err
	}
	if _, err := c.org.waitSent(ctx, cs, time.Minute, nil); err != nil {
		return nil, err
	}
	codes := invitationCodes(c.org.Outbox())
	rep := c.replicas[0]
	user := newBrowser(rep.URL, normalIP)
	if p, err := user.redeem(codes[strings.ToLower(cs[0].Email)], "normal-user@example.test", benchPassword); err != nil || p.Status != http.StatusSeeOther {
		return nil, fmt.Errorf("normal user sign-up: %v %s", err, statusOf(p))
	}
	res := &bruteResult{Attempts: attempts, Statuses: map[int]int{}, LimitPerMinute: perMinute}

	// The signed-in user, open loop at 20 requests/s until stop.
	normal := func(stop <-chan struct{}) ([]time.Duration, int) {
		var (
			mu   sync.Mutex
			lats []time.Duration
			errs int
			wg   sync.WaitGroup
		)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				wg.Wait()
				return lats, errs
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.Now()
				p, err := user.get("/profile")
				d := time.Since(t)
				mu.Lock()
				defer mu.Unlock()
				if err != nil || p.Status != http.StatusOK {
					errs++
					return
				}
				lats = append(lats, d)
			}()
		}
	}
	stop := make(chan struct{})
	go func() { time.Sleep(normalFor); close(stop) }()
	before, errs := normal(stop)
	res.Baseline, res.NormalErrors = summarize(before), errs

	st.logf("%d wrong codes from %s", attempts, attackerIP)
	stop = make(chan struct{})
	type normalOut struct {
		lats []time.Duration
		errs int
	}
	during := make(chan normalOut, 1)
	go func() { l, e := normal(stop); during <- normalOut{l, e} }()
	attacker := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var (
		next  atomic.Int64
		mu    sync.Mutex
		wg    sync.WaitGroup
		found int
	)
	t0 := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for int(next.Add(1)) <= attempts && ctx.Err() == nil {
				code, _ := invite.NewCode()
				req, _ := http.NewRequest(http.MethodGet, rep.URL+"/invitation?code="+url.QueryEscape(string(code)), nil)
				req.Header.Set("X-Forwarded-For", attackerIP)
				resp, err := attacker.Do(req)
				status := 0
				body := ""
				if err == nil {
					body, status = readBody(resp), resp.StatusCode
				}
				mu.Lock()
				res.Statuses[status]++
				if status == http.StatusOK && strings.Contains(body, `name="csrf_token"`) {
					found++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.AttackSeconds = time.Since(t0).Seconds()
	close(stop)
	d := <-during
	res.During = summarize(d.lats)
	res.NormalErrors += d.errs
	res.AttackRPS = float64(attempts) / res.AttackSeconds
	res.Found = found
	res.NotLimited = attempts - res.Statuses[http.StatusTooManyRequests]
	// GCRA: a burst of the per-minute count, then one more every 60/n s;
	// one extra for a refill landing at the edge.
	res.Allowed = perMinute + int(res.AttackSeconds*perMinute/60) + 1
	for _, l := range c.org.RequestLog() {
		if l.Caller == emulator.AppUserID && l.Route == "adx_invitations" && !l.Time.Before(t0) && l.Time.Before(t0.Add(time.Duration(res.AttackSeconds*float64(time.Second)))) {
			res.DataverseReads++
		}
	}
	other := newBrowser(rep.URL, otherIP)
	if p, err := other.get("/invitation?code=" + url.QueryEscape(codes[strings.ToLower(cs[1].Email)])); err == nil {
		res.OtherAddress = p.Status
	}
	return res, nil
}

// readBody reads and closes a response body.
func readBody(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
