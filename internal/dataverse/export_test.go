package dataverse

import (
	"context"
	"time"
)

// SetSleepForTest replaces the wait between attempts (external tests record
// waits instead of sleeping).
func SetSleepForTest(c *Client, sleep func(context.Context, time.Duration) error) { c.sleep = sleep }

// SetClockForTest replaces the client's clock and its waits together, so
// pacing and retries run on emulated time.
func SetClockForTest(c *Client, now func() time.Time, sleep func(context.Context, time.Duration) error) {
	c.now = now
	c.sleep = sleep
}
