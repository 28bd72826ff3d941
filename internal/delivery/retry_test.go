package delivery_test

import (
	"bytes"
	"context"
	"errors"
	"net/mail"
	"sync"
	"testing"
	"time"

	smtpd "github.com/emersion/go-smtp"

	"github.com/d365portal/connector/internal/delivery"
)

var fast = delivery.Backoff{Attempts: 4, Base: time.Millisecond, Max: 4 * time.Millisecond}

// A SendError literal outside the package is permanent (its temporary bit is
// unexported), which is what a caller faking a 5xx wants.
func permanent() error { return &delivery.SendError{Stage: delivery.StageRcpt, Code: 550, Text: "no"} }

func TestBackoffRetriesTemporaryUntilSuccess(t *testing.T) {
	var calls []int
	var retried []int
	b := fast
	b.OnRetry = func(attempt int, wait time.Duration, err error) {
		retried = append(retried, attempt)
		if wait < 0 || wait > b.Max || err == nil {
			t.Errorf("OnRetry(%d, %v, %v)", attempt, wait, err)
		}
	}
	err := b.Do(context.Background(), func(_ context.Context, attempt int) error {
		calls = append(calls, attempt)
		if attempt < 3 {
			return classifiedTemporary(t)
		}
		return nil
	})
	if err != nil || len(calls) != 3 || calls[2] != 3 || len(retried) != 2 {
		t.Errorf("err=%v calls=%v retried=%v, want success on the third call after two retries", err, calls, retried)
	}
}

func TestBackoffStopsOnPermanent(t *testing.T) {
	n := 0
	err := fast.Do(context.Background(), func(context.Context, int) error { n++; return permanent() })
	if n != 1 || !errors.Is(err, delivery.ErrPermanent) {
		t.Errorf("calls=%d err=%v, want one call and the permanent error", n, err)
	}
}

func TestBackoffGivesUp(t *testing.T) {
	n := 0
	err := fast.Do(context.Background(), func(context.Context, int) error { n++; return classifiedTemporary(t) })
	if n != fast.Attempts || !errors.Is(err, delivery.ErrTemporary) {
		t.Errorf("calls=%d err=%v, want %d calls and a still-temporary error", n, err, fast.Attempts)
	}
	var se *delivery.SendError
	if !errors.As(err, &se) || se.Stage != delivery.StageConnect {
		t.Errorf("the last SendError is not reachable: %v", err)
	}
}

func TestBackoffStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := delivery.Backoff{Attempts: 10, Base: time.Hour, Max: time.Hour}
	n := 0
	err := b.Do(ctx, func(context.Context, int) error {
		n++
		cancel() // the wait that follows must not last an hour
		return classifiedTemporary(t)
	})
	if n != 1 || !errors.Is(err, context.Canceled) || !errors.Is(err, delivery.ErrTemporary) {
		t.Errorf("calls=%d err=%v, want one call, context.Canceled and the last temporary error", n, err)
	}
}

func TestBackoffCustomRetryable(t *testing.T) {
	boom := errors.New("boom")
	b := fast
	b.Retryable = func(err error) bool { return errors.Is(err, boom) }
	n := 0
	err := b.Do(context.Background(), func(context.Context, int) error { n++; return boom })
	if n != b.Attempts || !errors.Is(err, boom) {
		t.Errorf("calls=%d err=%v", n, err)
	}
}

// TestBackoffDelay: each wait is within [0, min(Max, Base·2^(n-1))] and
// jittered.
func TestBackoffDelay(t *testing.T) {
	b := delivery.Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	ceilings := map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second}
	for attempt, ceiling := range ceilings {
		seen := map[time.Duration]bool{}
		var top time.Duration
		for range 2000 {
			d := b.Delay(attempt)
			if d < 0 || d > ceiling {
				t.Fatalf("Delay(%d) = %v, outside [0, %v]", attempt, d, ceiling)
			}
			seen[d] = true
			top = max(top, d)
		}
		if len(seen) < 100 {
			t.Errorf("Delay(%d) took only %d distinct values: no jitter", attempt, len(seen))
		}
		// Full jitter uses the whole window: with 2000 draws the largest is
		// above 90% of the ceiling unless the ceiling is wrong.
		if top < ceiling*9/10 {
			t.Errorf("Delay(%d) never exceeded %v; ceiling %v not reached", attempt, top, ceiling)
		}
	}
	zero := delivery.Backoff{}
	if d := zero.Delay(1); d < 0 || d > 2*time.Second {
		t.Errorf("default Delay(1) = %v, want within [0, 2s]", d)
	}
}

// classifiedTemporary is a real temporary SendError, as Send would return.
func classifiedTemporary(t testing.TB) error {
	t.Helper()
	s, err := delivery.NewSMTPSender(delivery.SMTPOptions{Host: "127.0.0.1", Port: closedPort(t), Security: delivery.SecurityNone, From: "invites@contoso.test"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Send(context.Background(), testMessage())
	if !delivery.IsTemporary(err) {
		t.Fatalf("a refused connection gave %v, want temporary", err)
	}
	return err
}

// TestMessageIDStableAcrossRetries: every try of one activity carries the
// same Message-ID, including the duplicate a drop after the dot produces.
func TestMessageIDStableAcrossRetries(t *testing.T) {
	pki := newPKI(t)
	var mu sync.Mutex
	rcpts, datas := 0, 0
	srv := startServer(t, pki, serverConfig{
		security: "starttls",
		users:    map[string]string{testUser: testPassword},
		onRcpt: func(*smtpd.Conn, string) error {
			mu.Lock()
			defer mu.Unlock()
			rcpts++
			if rcpts == 1 { // greylisting: first try refused
				return &smtpd.SMTPError{Code: 450, EnhancedCode: smtpd.EnhancedCode{4, 2, 0}, Message: "greylisted"}
			}
			return nil
		},
		onData: func(c *smtpd.Conn, _ []byte) error {
			mu.Lock()
			datas++
			first := datas == 1
			mu.Unlock()
			if first { // second try: taken in, then the line drops
				return drop(c)
			}
			return nil
		},
	})
	s := newSender(t, srv.host, srv.port, delivery.SMTPOptions{TLSConfig: pki.client, Username: testUser, Password: testPassword})
	var ids []string
	var failures []error
	b := fast
	b.OnRetry = func(_ int, _ time.Duration, err error) { failures = append(failures, err) }
	err := b.Do(context.Background(), func(ctx context.Context, _ int) error {
		rec, err := s.Send(ctx, testMessage())
		ids = append(ids, rec.MessageID)
		return err
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] || ids[0] != wantMessageID(t) {
		t.Errorf("Message-IDs per try = %q, want three times %q", ids, wantMessageID(t))
	}
	var se *delivery.SendError
	if len(failures) != 2 || !errors.As(failures[1], &se) || !se.MaybeDelivered {
		t.Errorf("failures = %v, want 450 then a drop after the dot flagged MaybeDelivered", failures)
	}
	got := srv.messages()
	if len(got) != 2 {
		t.Fatalf("server holds %d messages, want 2 (the duplicate from the drop)", len(got))
	}
	for _, m := range got {
		parsed, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		if id := parsed.Header.Get("Message-ID"); id != wantMessageID(t) {
			t.Errorf("received Message-ID %q, want %q", id, wantMessageID(t))
		}
	}
}

// TestDuplicatesFromDropsAfterDot sends many invitations through a server
// that cuts 10% of connections after the final dot, retrying with Backoff,
// and accounts for every copy: all delivered, and exactly one duplicate per
// drop, each with the original's Message-ID.
func TestDuplicatesFromDropsAfterDot(t *testing.T) {
	const n, workers, dropRate = 400, 4, 0.10
	pki := newPKI(t)
	onData, dropped := randomDrops(dropRate, 15)
	srv := startServer(t, pki, serverConfig{security: "none", onData: onData})
	s := newSender(t, srv.host, srv.port, delivery.SMTPOptions{Security: delivery.SecurityNone})
	b := delivery.Backoff{Attempts: 10, Base: time.Millisecond, Max: 8 * time.Millisecond}

	stats := runInvitations(t, s, b, n, workers)
	drops := dropped()
	got := srv.messages()
	ids := distinctMessageIDs(t, got)
	t.Logf("%d invitations, %d sends, %d dropped after the dot (%.1f%%): server stored %d messages, %d distinct Message-IDs, %d duplicates (%.1f%% of invitations)",
		n, stats.sends, drops, 100*float64(drops)/float64(stats.sends), len(got), len(ids), len(got)-len(ids), 100*float64(len(got)-len(ids))/n)
	if stats.failed != 0 {
		t.Errorf("%d invitations failed", stats.failed)
	}
	if len(ids) != n {
		t.Errorf("%d distinct Message-IDs delivered, want %d", len(ids), n)
	}
	if len(got)-len(ids) != drops || stats.sends != n+drops || stats.maybeDelivered != drops {
		t.Errorf("duplicates=%d sends=%d maybe-delivered=%d, want %d duplicates, %d sends and one MaybeDelivered per drop",
			len(got)-len(ids), stats.sends, stats.maybeDelivered, drops, n+drops)
	}
	if drops == 0 {
		t.Error("no connection was dropped: the test measured nothing")
	}
}

type runStats struct{ sends, failed, maybeDelivered int }

// runInvitations sends n invitations (distinct activity ids) from workers
// goroutines, each retried with b.
func runInvitations(t testing.TB, s *delivery.SMTPSender, b delivery.Backoff, n, workers int) runStats {
	t.Helper()
	var mu sync.Mutex
	var st runStats
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				m := testMessage()
				m.ActivityID = activityID(i)
				err := b.Do(context.Background(), func(ctx context.Context, _ int) error {
					_, err := s.Send(ctx, m)
					var se *delivery.SendError
					mu.Lock()
					st.sends++
					if errors.As(err, &se) && se.MaybeDelivered {
						st.maybeDelivered++
					}
					mu.Unlock()
					return err
				})
				if err != nil {
					mu.Lock()
					st.failed++
					mu.Unlock()
					t.Errorf("invitation %d: %v", i, err)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return st
}

func activityID(i int) string {
	var b [16]byte
	b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for j, x := range b {
		if j == 4 || j == 6 || j == 8 || j == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[x>>4], hex[x&15])
	}
	return string(out)
}

func distinctMessageIDs(t testing.TB, got []received) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, m := range got {
		parsed, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		id := parsed.Header.Get("Message-ID")
		if id == "" {
			t.Fatal("a stored message has no Message-ID")
		}
		ids[id]++
	}
	return ids
}
