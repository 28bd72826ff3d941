package main

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// loadResult is one closed-loop load run.
type loadResult struct {
	Requests int         `json:"requests"`
	Errors   int         `json:"errors"` // transport errors and unexpected statuses
	RPS      float64     `json:"rps"`
	Latency  dist        `json:"latency"`
	Statuses map[int]int `json:"statuses"`
	Bytes    int64       `json:"bytes"` // response bodies
}

// loadGen runs `workers` clients that each send one request after another
// for dur (after a warm-up of warm whose requests are not counted).
func loadGen(ctx context.Context, workers int, warm, dur time.Duration, want int, mk func() (*http.Request, error)) loadResult {
	client := &http.Client{
		Transport:     &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
	defer client.CloseIdleConnections()
	var (
		mu   sync.Mutex
		lats []time.Duration
		res  = loadResult{Statuses: map[int]int{}}
		wg   sync.WaitGroup
	)
	start := time.Now()
	measureFrom, end := start.Add(warm), start.Add(warm+dur)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			st := map[int]int{}
			errs, n := 0, 0
			var bytes int64
			for ctx.Err() == nil {
				t := time.Now()
				if !t.Before(end) {
					break
				}
				req, err := mk()
				if err != nil {
					errs++
					continue
				}
				resp, err := client.Do(req.WithContext(ctx))
				code, nb := 0, int64(0)
				if err == nil {
					nb, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				if t.Before(measureFrom) {
					continue
				}
				n++
				bytes += nb
				local = append(local, time.Since(t))
				st[code]++
				if err != nil || code != want {
					errs++
				}
			}
			mu.Lock()
			lats = append(lats, local...)
			for k, v := range st {
				res.Statuses[k] += v
			}
			res.Errors += errs
			res.Requests += n
			res.Bytes += bytes
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.RPS = float64(res.Requests) / dur.Seconds()
	res.Latency = summarize(lats)
	return res
}
