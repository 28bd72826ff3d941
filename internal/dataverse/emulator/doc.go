// Package emulator is an in-memory Dataverse Web API served over real HTTP.
//
// It implements the subset of the Dataverse Web API (OData v4.0, /api/data/v9.2/) that a
// Power Pages invitation connector speaks, with the real table logical names, entity set
// names, case-sensitive navigation property names, option-set values, error codes and
// response shapes: CRUD with upsert and ETags, @odata.bind and deep insert, $ref
// associations, queries ($select, $filter, $orderby, $top, $count, $expand, paging with
// odata.maxpagesize and $skiptoken), $batch with atomic change sets, change tracking with
// delta links, WhoAmI, the SendEmail bound action with server-side synchronization through
// per-mailbox queues (below), webhooks fired from registered
// serviceendpoint/sdkmessageprocessingstep rows, service protection limits and fault
// injection.
//
// The tables are not written by hand: package schema holds the facts copied from
// Microsoft's generated table reference (entity sets, keys, columns with types, lengths,
// read-only flags and option values, and every navigation property name on both sides)
// plus a short exceptions file with a reason per entry; the registry is built from them,
// and only behaviour the reference does not give (computed columns, cascades, defaults)
// is Go code (behaviour.go). A name the reference does not have is refused on writes and
// reads with Dataverse's errors, and a test compares $metadata with the facts.
//
// # Server-side synchronization
//
// SendEmail(IssueSend=true) does what Dataverse does: the email goes to Pending Send
// (statuscode 6, statecode 1) with sendermailboxid set to the sender's mailbox (the from
// party's, a systemuser or queue, else the owner's), and enters the Outbox. Every user and
// queue gets its mailbox when it is created, approved, enabled for outgoing email through
// server-side sync and tested (a real new mailbox needs an admin for that); MailboxOf finds
// it. A background cycle per mailbox (mail.go) then moves the email, after
// EmailSyncOptions.Delay, to Sending (7, deliveryattempts counted) and, after Submit, to
// Sent (3, senton set) or, when a recipient bounces (EmailSyncOptions.Bounce; default a
// domain ending in .invalid), to Failed (8, statecode 0). Each status change is an ordinary
// Update, so steps on email Update filtered on statuscode fire. SendEmail(IssueSend=false)
// records the email as Sent at once and delivers nothing.
//
// An email stays in Pending Send, and the sync writes a tracelog alert regarding the
// mailbox (level 3 Error, Microsoft's text where Microsoft documents one; mailbox.go), when
// its mailbox is inactive or not enabled for outgoing email, is not approved
// (emailrouteraccessapproval other than 1 while the organization's
// requireapprovalforuseremail / requireapprovalforqueueemail is on), or lacks the Office 365
// administrator's approval (isemailaddressapprovedbyo365admin). A mailbox that does not send
// through server-side sync (outgoingemaildeliverymethod other than 2) holds its emails
// without an alert, and an email whose sender has no mailbox is never sent, as in
// Dataverse. Such a cycle also sets the mailbox's outgoingemailstatus and mailboxstatus to
// 2 Failure and lastsyncerror to the alert; the next good cycle sets them back to 1
// Success. Held emails are tried again after EmailSyncOptions.Retry, or at once when a
// mailbox, a queue's approval (kept equal to its mailbox's) or the organization's settings
// change through the API or SetMailbox. Repeating an alert updates its row's modifiedon.
//
// Each mailbox has Exchange Online's sending limits (MailboxLimits: 30 messages a minute,
// 10,000 recipients in a rolling 24 hours; Scaled shrinks them for tests). An email over a
// limit stays in Pending Send with a level 2 Warning alert (ErrorSubmissionQuotaExceeded),
// the mailbox's postponesendinguntil is set to when the window allows it, and the mailbox
// sends it and the emails queued behind it, in order, from then on.
//
// For tests: EmailSyncOptions.Delay zero (the default) runs the cycle when the SendEmail
// commits, before its response, so the email is Sent when SendEmail returns; a Delay runs it
// in the background on the real clock; Manual turns the background off, and RunEmailSync
// runs one cycle at the time Options.Now gives, which with an injected clock makes every
// path deterministic. SetMailbox changes a mailbox as an admin would (approval, outgoing
// method, enabled); Outbox reports each handed-over email's status and alert text;
// SeedDemo's Demo.Mailboxes names the demo's mailboxes ("mailer", "admin", "queue").
//
// Code that works against the emulator is meant to work against a real organization
// unchanged; where the emulator simplifies (documented next to the code), it errs on the
// side of the stricter behaviour.
//
// Subpackages: sts (a token endpoint compatible with azidentity), throttle (service
// protection limits) and webhook (RemoteExecutionContext delivery).
package emulator
