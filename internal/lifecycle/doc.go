// Package lifecycle follows open invitations to their end: it sends the
// configured reminders before an invitation expires and, once it has
// expired unredeemed, hands it to an Expirer (which turns the contact to
// Expired).
//
// # Scheduling
//
// A Scheduler runs Tick on a robfig/cron schedule (default every five
// minutes) in every replica. A tick asks Invitations, per portal, for the
// open, unredeemed invitations expiring by now plus the longest
// reminder. For each one past its expiry it calls Expirer.Expire; for each
// one inside a reminder's window it calls Reminder.Send with the index of
// the latest reminder due (with reminders [7d, 1d] and 20 hours left, only
// index 1 is sent: two reminders at once would be noise).
//
// # Once across replicas
//
// Every replica sees the same invitations, so each action is claimed in
// Redis first: a claim key per (invitation, expiry time, reminder index or
// expiry) set only when no completion record exists and no unexpired claim
// is held (one Lua script, so the check and the set are atomic). The
// claimant calls Send or Expire and then writes the completion record,
// which outlives the invitation, and drops the claim. Hence:
//
//   - a replica that dies after claiming leaves its claim to lapse after
//     Lease; the next tick of any replica then claims and sends it;
//   - a failed Send or Expire also keeps its claim until the lease lapses,
//     so a failing invitation is retried once per lease, not on every tick;
//   - once the completion record exists the action is never done again,
//     even if the invitation store still lists the invitation.
//
// Send and Expire run with a deadline of half the lease, so a stuck call
// gives up well before another replica may claim the same action. One
// window is left: a replica that crashes after Send succeeded and before it
// wrote the completion record is retried after the lease, and the reminder
// goes out twice; Reminder implementations that can find their earlier
// email (an activity regarding the invitation) close it.
//
// The expiry time is part of the keys, so an invitation whose expiry moves
// (a resend) gets its reminders again for the new date.
package lifecycle
