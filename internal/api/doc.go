// Package api is the authenticated JSON API for invitations, served under
// /api/v1:
//
//	POST /api/v1/invitations               invite a contact (by contact_id or email)
//	GET  /api/v1/invitations               list, filtered by ?contact= and ?status=
//	GET  /api/v1/invitations/{id}          one invitation
//	POST /api/v1/invitations/{id}/resend   send the invitation email again
//	POST /api/v1/invitations/{id}/revoke   deactivate the invitation
//	GET  /api/v1/openapi.json              the OpenAPI 3.1 description (no key needed)
//
// Clients authenticate with "Authorization: Bearer <key>", one of the
// configured keys. Keys are compared as SHA-256 digests in constant time, so
// neither their content nor their length shows in response timing.
//
// POST /invitations and POST /invitations/{id}/resend accept an
// Idempotency-Key header. The first final response for a key (per API key) is
// kept in Redis for 24 hours and replayed, with "Idempotent-Replayed: true",
// when the same request comes again; the same key with a different request is
// answered 422, and while the first request is still running 409. 5xx
// responses are not kept, so a failed request can be retried with its key.
//
// Request and response bodies are JSON with snake_case names; openapi.json
// documents every field. Requests are decoded strictly: unknown fields,
// trailing data and bodies over the size limit are rejected. Errors are RFC
// 9457 problem details (application/problem+json) built in one place
// (problemFor) from the invite package's sentinel errors; a response for an
// unexpected error carries only the request id, never the internal message.
package api
