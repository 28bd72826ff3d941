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
package invite
