package dataverse

import (
	"context"
	"time"
)

// SetSleepForTest replaces the wait between attempts (external tests record
// waits instead of sleeping).
func SetSleepForTest(c *Client, sleep func(context.Context, time.Duration) error) { c.sleep = sleep }
