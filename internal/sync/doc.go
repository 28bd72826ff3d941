// Package sync gets "Invite to portal" requests from Dynamics 365 into the
// connector and turns each into exactly one invitation.
//
// Requests arrive two ways. Dataverse posts a RemoteExecutionContext to the
// webhook (WebhookHandler) when a contact's invite status column changes; the
// poller (a robfig/cron job) is the safety net and reads the same contacts
// through change tracking. Both only enqueue: a request is written to a Redis
// Stream before the webhook answers 2xx, so a crash after the answer loses
// nothing, and Redis being down turns into a 503 that Dataverse retries.
//
// Workers read the stream through a consumer group. For each message a
// worker takes a per-contact Redis lock, re-reads the contact and calls
// invite.Service.Invite only while its status is still Requested; the
// message is acknowledged after Invite has written the outcome back. That
// re-read is what makes duplicates harmless: a webhook delivered twice, the
// poller seeing the same click, or a message redelivered after a crash all
// find the contact Sent and do nothing. An enqueue-time dedupe key (per
// contact and event, with a TTL) keeps most duplicates out of the stream in
// the first place.
//
// Failures: Dataverse and network errors are retried with exponential
// backoff through a Redis sorted set that feeds due messages back into the
// stream; after Config.MaxAttempts, or at once for a permanent error
// (invite.IsPermanent), the contact is marked Failed with a readable reason
// and the message moves to a dead-letter stream. Messages left pending by a
// crashed replica are reclaimed with XAUTOCLAIM once idle longer than
// Config.Lease; live workers keep their messages fresh with a heartbeat.
//
// Redis keys (all under Config.KeyPrefix): intake:stream (consumer group
// "workers"), intake:retry, intake:dead, intake:dedupe:<key>,
// intake:contact:<id> (lock), intake:poll:lock, intake:poll:delta.
//
// The Resend invitation and Revoke invitation buttons set the same status
// column to the Resend or Revoke value; they travel the same way and the
// worker, under the same lock, calls ResendForContact or RevokeForContact
// (Commander) for the status it re-read, writing back only while the
// contact still has that row version.
//
// RegisterWebhook and UnregisterWebhook manage the serviceendpoint and
// sdkmessageprocessingstep rows that make Dataverse call the webhook.
//
// The package name shadows the standard library's sync; files that need
// both import the latter as stdsync.
package sync
