// Package portalweb is the redemption site and small portal that invitees
// use: the page an invitation email links to (/invitation?code=…, also
// Power Pages' own /Register?invitation=… shape), sign-up by redeeming the
// code, self-registration, sign-in and sign-out, the profile page, email
// confirmation and password reset.
//
// Pages are server-rendered html/template views embedded in the binary (one
// template set per page), styled by one embedded stylesheet served under a
// content hash; no JavaScript is needed. Sessions live in Redis through
// scs; every state-changing request passes Go's cross-origin protection and
// a per-session synchronizer token; sensitive actions are rate limited in
// Redis per client address and per target (code, user name, email), so the
// limits hold across replicas. All errors reach the user through one mapping
// to friendly pages; internal error text never does.
//
// The package talks to the invitation domain only through the Accounts
// interface, which *invite.Service satisfies.
package portalweb
