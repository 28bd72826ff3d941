package invite

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
)

func offlineClient(t *testing.T) *dataverse.Client {
	t.Helper()
	c, err := dataverse.New(dataverse.Config{URL: "http://127.0.0.1:1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const testSite = "11111111-2222-3333-4444-555555555555"

func TestNewValidatesConfig(t *testing.T) {
	good := Portal{Name: "P", WebsiteID: testSite, BaseURL: "https://p.example.com/"}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"ok", Config{Portals: []Portal{good}}, ""},
		{"bad hash", Config{PasswordHash: "md5"}, "unknown format"},
		{"short secret", Config{TokenSecret: []byte("short")}, "at least 32"},
		{"no name", Config{Portals: []Portal{{WebsiteID: testSite, BaseURL: "https://x"}}}, "name is required"},
		{"bad model", Config{Portals: []Portal{{Name: "P", DataModel: "classic", WebsiteID: testSite, BaseURL: "https://x"}}}, "data model"},
		{"bad website", Config{Portals: []Portal{{Name: "P", WebsiteID: "nope", BaseURL: "https://x"}}}, "not a GUID"},
		{"bad url", Config{Portals: []Portal{{Name: "P", WebsiteID: testSite, BaseURL: "/relative"}}}, "base url"},
		{"bad storage", Config{Portals: []Portal{{Name: "P", WebsiteID: testSite, BaseURL: "https://x", CodeStorage: "rot13"}}}, "code storage"},
		{"bad sender", Config{Portals: []Portal{{Name: "P", WebsiteID: testSite, BaseURL: "https://x", Email: EmailSettings{Sender: "user:bob"}}}}, "email sender"},
		{"bad template", Config{Portals: []Portal{{Name: "P", WebsiteID: testSite, BaseURL: "https://x", Email: EmailSettings{Subject: "{{.Nope}}"}}}}, "subject"},
		{"duplicate", Config{Portals: []Portal{good, {Name: "p", WebsiteID: testSite, BaseURL: "https://x"}}}, "duplicate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(offlineClient(t), tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	s, err := New(offlineClient(t), Config{Portals: []Portal{good}})
	if err != nil {
		t.Fatal(err)
	}
	p, ok := s.Portal(" p ")
	if !ok || p.DataModel != ModelEnhanced || p.CodeStorage != CodeHashed || p.BaseURL != "https://p.example.com" ||
		p.MaxRedemptions != 1 || p.ExpiresAfter != 30*24*time.Hour {
		t.Fatalf("defaults not applied: %+v", p)
	}
	if len(s.Portals()) != 1 {
		t.Fatal("Portals")
	}
	if _, err := s.Invite(context.Background(), InviteRequest{ContactID: "x", Portal: "P"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bad contact id: %v", err)
	}
}

func TestMemLocker(t *testing.T) {
	l := newMemLocker()
	ctx := context.Background()
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			unlock, err := l.Lock(ctx, "k", time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(100 * time.Microsecond)
			inside.Add(-1)
			unlock()
			unlock() // idempotent
		})
	}
	wg.Wait()
	if maxInside.Load() != 1 {
		t.Fatalf("%d holders at once", maxInside.Load())
	}
	if len(l.locks) != 0 {
		t.Fatalf("idle keys kept: %d", len(l.locks))
	}
	unlock, _ := l.Lock(ctx, "k", time.Minute)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Lock(cctx, "k", time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	other, err := l.Lock(ctx, "other", time.Minute) // other keys do not wait
	if err != nil {
		t.Fatal(err)
	}
	other()
	unlock()
}

func TestIsPermanent(t *testing.T) {
	if !IsPermanent(ErrNoEmail) || !IsPermanent(errors.Join(errors.New("x"), ErrUnknownPortal)) {
		t.Fatal("domain errors must be permanent")
	}
	if IsPermanent(nil) || IsPermanent(errors.New("dataverse: 503")) || IsPermanent(context.DeadlineExceeded) {
		t.Fatal("infrastructure errors must not be permanent")
	}
	le := &LockedOutError{Until: time.Unix(0, 0)}
	if !errors.Is(le, ErrLockedOut) || !strings.Contains(le.Error(), "1970") {
		t.Fatal("LockedOutError")
	}
}
