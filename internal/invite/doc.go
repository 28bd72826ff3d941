// Package invite is the domain of the connector: Power Pages compatible
// invitations (adx_invitation), their codes and expiry, redemption into a
// portal identity on the contact, the ASP.NET Identity password hash, the
// password policy, stateless email-confirmation and password-reset tokens,
// and the invitation emails.
//
// The Service talks to Dataverse only through the small Dataverse interface
// declared here, which *dataverse.Client satisfies. It writes the same rows
// Power Pages itself writes, so an invitation created here can be redeemed on
// a Power Pages site (with plain code storage) and an account created here can
// sign in there (with aspnet-v2 password hashes).
//
// Both Power Pages data models are supported per portal: the enhanced model
// (website powerpagesite, web roles are powerpagecomponent rows of type 11)
// and the standard model (adx_website, adx_webrole).
//
// # Requests
//
// Each flow uses as few Dataverse requests as the Web API allows, and does
// its writes in one atomic $batch change set, so a failure leaves nothing
// half done:
//
//   - Invite: 2 requests. A GET of the contact with its open invitations
//     to the website ($expand), then one change set: the adx_invitation is
//     created as Sent with its web roles bound (collection @odata.bind) and
//     the email activity with its from/to parties deep-inserted under it;
//     SendEmail; the outcome written to the contact. Web role names are
//     resolved from a per-website cache (one query per RoleCacheTTL). Reusing
//     an open invitation costs the GET (plus a contact update when the
//     status columns are stale).
//   - Redeem: 2 requests. One read batch (the invitation by code; the
//     contacts relevant to it: the invitee with its roles and ETag, whoever
//     holds the user name, a group redeemer by email), then one change set:
//     the invitation's redemption count with If-Match on its ETag, the
//     identity on the contact (If-Match on the contact's ETag), the web role
//     and redeemed-contact associations, and the adx_inviteredemption
//     activity. A lost race answers 412, rolls the whole set back, and the
//     redemption is re-read: a single-use code then reports ErrCodeUsedUp.
//   - SignIn: 2 (the contact, then the failed-count or last-login update).
//
// Invitations for one contact and portal are serialised with Config.Locker;
// across replicas that must be a shared (Redis) lock.
package invite
