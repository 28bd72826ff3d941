// Package dvtest starts the Dataverse emulator seeded with the demo
// organization and a real Web API client pointed at it, for tests of the
// packages built on top of Dataverse.
package dvtest

import (
	"sync"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
)

// Org is a seeded emulator on a loopback port and a client for it.
type Org struct {
	Emu  *emulator.Running
	Demo *emulator.Demo
	DV   *dataverse.Client
}

// Start serves the emulator over plain HTTP with auth off (the client needs
// no credential), seeds the demo organization and builds a client whose
// retries wait milliseconds, not seconds. cfg may set MaxRetries and the
// like; its URL is filled in.
func Start(t testing.TB, cfg dataverse.Config) *Org {
	t.Helper()
	em, err := emulator.Start(emulator.Options{Auth: emulator.AuthOptions{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Close() })
	demo, err := emulator.SeedDemo(em.Server)
	if err != nil {
		t.Fatal(err)
	}
	cfg.URL = em.OrgURL
	dv, err := dataverse.New(cfg, nil, &dataverse.Options{HTTPClient: em.HTTPClient,
		RetryDelay: time.Millisecond, MaxRetryDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return &Org{Emu: em, Demo: demo, DV: dv}
}

// Clock is a settable time source for services under test (expiry, lockout,
// caches).
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts at now.
func NewClock() *Clock { return &Clock{t: time.Now()} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Add moves the clock forward.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
