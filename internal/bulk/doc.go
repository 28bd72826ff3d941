// Package bulk runs an invitation for many contacts at once: `connector
// invite --file` (and `--contact`, a run of one row).
//
// A run reads rows from a CSV (ReadCSV), skips the rows a resume file
// (FILE.progress) lists as done by an earlier run, and hands each remaining
// row to a small pool of workers. A row is either invited in this process
// (Inviter, normally *invite.Service) or, when a Queue is configured, marked
// Requested on the contact and put on the shared intake queue, exactly as the
// Invite to portal button does. A contact that already has an open, emailed
// invitation for the portal is counted as "already invited" and nothing is
// sent again. Done rows are appended to the resume file as they finish, so an
// interrupted run continues where it stopped.
//
// While it runs, a progress bar (github.com/cheggaaa/pb/v3) shows the
// expected finish time from an Estimator: by default the observed rate
// (RateEstimator); Budget computes it from the senders' per-minute and
// per-day limits instead. At the end the run prints a summary of outcomes and
// the failed rows, and, when a SenderSource is configured, a per-sender
// schedule (queued, sent today, next free slot).
package bulk
