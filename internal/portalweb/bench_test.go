package portalweb

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/d365portal/connector/internal/invite"
)

// BenchmarkPages measures requests per second and p99 latency of
// GET /invitation?code=… (a first visit: code lookup in the emulator, a new
// session written to redis-server) and of a signed-in GET /profile (session
// read and rewritten, account read from the emulator), against a minimal
// Gin handler served the same way in the same run. Each iteration sends a
// batch to each target in turn with the same concurrency, so all three see
// the same machine conditions. Ratios are reported as target/baseline.
func BenchmarkPages(b *testing.B) {
	l := newLive(b, liveOpts{plainHTTP: true, site: func(c *Config) {
		c.RateLimits = RateLimits{CodeLookups: -1, Redemptions: -1, SignIns: -1, Registrations: -1, PasswordResets: -1}
	}})
	contactID, _ := l.contact(0)
	res := l.invite(b, contactID)
	invURL := l.ts.URL + "/invitation?code=" + string(res.Code)

	// A signed-in session for /profile (a second contact keeps the first
	// invitation open for the lookups).
	other, otherEmail := l.contact(1)
	l.invite(b, other)
	br := l.browser()
	link := l.emailLink(b, otherEmail, invite.InvitationPath)
	page := br.get(local(link))
	br.submit(page, `form[method="post"]`, map[string]string{"password": goodPassword, "confirm_password": goodPassword})
	cookie := l.sessionCookieName() + "=" + br.cookie(l.sessionCookieName())

	baseline := gin.New()
	baseline.GET("/", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	bs := httptest.NewServer(baseline)
	b.Cleanup(bs.Close)

	const workers, batch = 8, 64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
	b.Cleanup(client.CloseIdleConnections)

	type target struct {
		name, url, cookie string
		want              int
		lat               []time.Duration
		busy              time.Duration
	}
	targets := []*target{
		{name: "baseline", url: bs.URL + "/", want: http.StatusOK},
		{name: "invitation", url: invURL, want: http.StatusOK},
		{name: "profile", url: l.ts.URL + "/profile", cookie: cookie, want: http.StatusOK},
	}
	get := func(t *target) (time.Duration, error) {
		req, _ := http.NewRequest(http.MethodGet, t.url, nil)
		if t.cookie != "" {
			req.Header.Set("Cookie", t.cookie)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != t.want {
			b.Fatalf("%s: status %d", t.name, resp.StatusCode)
		}
		return d, nil
	}
	// Warm up connections, template buffers and the role cache.
	for _, t := range targets {
		for range workers {
			if _, err := get(t); err != nil {
				b.Fatal(err)
			}
		}
	}

	b.ResetTimer()
	for b.Loop() {
		for _, t := range targets {
			var mu sync.Mutex
			var wg sync.WaitGroup
			next := make(chan struct{}, batch)
			for range batch {
				next <- struct{}{}
			}
			close(next)
			start := time.Now()
			for range workers {
				wg.Go(func() {
					var mine []time.Duration
					for range next {
						d, err := get(t)
						if err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, d)
					}
					mu.Lock()
					t.lat = append(t.lat, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			t.busy += time.Since(start)
		}
	}
	b.StopTimer()

	rps := map[string]float64{}
	for _, t := range targets {
		slices.Sort(t.lat)
		p99 := t.lat[(len(t.lat)*99)/100]
		rps[t.name] = float64(len(t.lat)) / t.busy.Seconds()
		b.ReportMetric(rps[t.name], t.name+"-req/s")
		b.ReportMetric(float64(p99.Microseconds())/1000, t.name+"-p99-ms")
	}
	b.ReportMetric(rps["invitation"]/rps["baseline"], "invitation/baseline")
	b.ReportMetric(rps["profile"]/rps["baseline"], "profile/baseline")
	b.ReportMetric(0, "ns/op") // an iteration is three batches; the rates above are the result
}
