// Package emulator is an in-memory Dataverse Web API served over real HTTP.
//
// It implements the subset of the Dataverse Web API (OData v4.0, /api/data/v9.2/) that a
// Power Pages invitation connector speaks, with the real table logical names, entity set
// names, case-sensitive navigation property names, option-set values, error codes and
// response shapes: CRUD with upsert and ETags, @odata.bind and deep insert, $ref
// associations, queries ($select, $filter, $orderby, $top, $count, $expand, paging with
// odata.maxpagesize and $skiptoken), $batch with atomic change sets, change tracking with
// delta links, WhoAmI, the SendEmail bound action, webhooks fired from registered
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
// Code that works against the emulator is meant to work against a real organization
// unchanged; where the emulator simplifies (documented next to the code), it errs on the
// side of the stricter behaviour.
//
// Subpackages: sts (a token endpoint compatible with azidentity), throttle (service
// protection limits) and webhook (RemoteExecutionContext delivery).
package emulator
