// Package delivery is what happens to an invitation email after the
// connector hands it over: following it to Delivered or Failed (Follower),
// the sender mailbox's health (FindMailbox, Mailbox.Check, Alerts), and the
// SMTP channel, for organizations that send invitations through a
// submission server (Azure Communication Services Email, SendGrid, an
// Exchange relay) instead of Dataverse server-side synchronization.
//
// # Following
//
// SendEmail(IssueSend=true) only queues an email (Pending Send); server-side
// sync sends it later through the sender's mailbox, fails it, or holds it
// for ever with an alert on the mailbox (tracelog) when the mailbox is not
// approved or not enabled. Follower.Follow looks at a contact's newest
// invitation email and has the invitation domain (the Invitations
// interface, which alone knows the contact schema) record the outcome:
// Sent → Delivered; Failed → Failed with the alert naming the recipient or
// the mailbox's newest alert; still unsent after PendingAlertAfter → Failed
// with that alert, or "still Pending Send after 30m: check mailbox <name>"
// when alerts cannot be read. The write-back is conditional on the contact
// not having changed since it was read, so a new click or a redemption is
// never overwritten. internal/sync calls Follow from email webhooks (Update
// filtered on statuscode) and from its delivery poll over contacts still
// Sent, under a per-contact lock, so each outcome is recorded once across
// replicas.
//
// For a portal on the SMTP channel the email activity is created as a
// draft; Follow submits it with the Submitter, records the Message-ID on
// the email and moves it to Sent with SendEmail(IssueSend=false), so CRM
// users see the same history. A 5xx ends Failed with the server's words; a
// 4xx or a broken connection is returned as a temporary error, which the
// queue retries with backoff.
//
// # Submitting
//
// SMTPSender renders a Message with go-mail (multipart/alternative, UTF-8,
// quoted-printable) and submits it in one session per message: connect,
// TLS (implicit, or STARTTLS which is then required), EHLO, AUTH PLAIN or
// LOGIN when a username is set, MAIL, RCPT, DATA. Security "none" is
// refused unless the host is loopback. The session is driven step by step
// on go-mail's SMTP client rather than through go-mail's Client.Send,
// because the outcome must name the step that failed and carry the
// server's own reply, which go-mail's SendError does not expose.
//
// # Outcomes
//
// Send returns a Receipt when the server answered 250 to the message, or a
// *SendError that matches exactly one of ErrPermanent and ErrTemporary:
//
//   - permanent: any 5xx reply (at AUTH, MAIL, RCPT or after the message),
//     an untrusted certificate, a server that does not offer STARTTLS or
//     AUTH as configured, an invalid message. The error carries the server's
//     code, enhanced code and text for the CRM user.
//   - temporary: any 4xx reply, a refused, dropped or timed-out connection,
//     a reply that is not SMTP, a server that closes at once. Retry with
//     Backoff.
//
// Error text never holds the password or the message body; server text is
// cut to 300 printable characters.
//
// # Duplicates
//
// SMTP cannot promise exactly once: when the connection fails after the
// message's final dot and before the server's reply, the server may have
// queued the message while the client saw a failure (SendError.MaybeDelivered).
// Retrying then delivers a second copy. Every copy of one email activity
// carries the same Message-ID (MessageID: "<activityid@from-domain>"), so
// receivers and their mail stores can drop the extra ones, and the
// connector can record the same value in Dataverse's email.messageid for
// reply correlation. Each such drop costs exactly one extra copy, so with a
// share p of sessions cut after the dot about p/(1-p) of invitations arrive
// twice: TestDuplicatesFromDropsAfterDot and BenchmarkDropAfterDot10 count
// it (10% cut: 8.8% and 9.8% of invitations duplicated, none lost).
package delivery
