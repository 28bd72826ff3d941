package emulator

import (
	"fmt"
	"net/http"
)

// apiError is a Dataverse error response: {"error":{"code":"0x...","message":"..."}}.
type apiError struct {
	status     int
	code       string
	message    string
	retryAfter int // seconds, for 429
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

func newErr(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// Error codes (reference §3.5 and the public Dataverse error list).
const (
	codeObjectDoesNotExist      = "0x80040217"
	codeDuplicateRecord         = "0x80040237"
	codeDuplicateAlternateKey   = "0x80060892"
	codeAlternateKeyNotFound    = "0x80060891"
	codeConcurrencyMismatch     = "0x80060882"
	codeODataParse              = "0x80060888" // URI/query parse failures (segment, property, syntax)
	codePayload                 = "0x80048d19" // "Error identified in Payload provided by the user"
	codeInvalidArgument         = "0x80040203"
	codeValidation              = "0x80044331"
	codeExpiredVersionStamp     = "0x80044352"
	codePrivilegeDenied         = "0x80040220"
	codeUnspecified             = "0x80040216"
	codeRequestsExceeded        = "0x80072322"
	codeSendEmailNotDraft       = "0x8004403c" // UNCONFIRMED: the exact code for "email is not in draft state"
	codeSendEmailNoRecipients   = "0x80040203"
	codeBatchContentIDNotExists = "0x0"
)

func errNotFound(t *table, id string) *apiError {
	return newErr(http.StatusNotFound, codeObjectDoesNotExist, "Entity '%s' With Id = %s Does Not Exist", t.logical, id)
}

func errKeyNotFound(t *table) *apiError {
	return newErr(http.StatusNotFound, codeAlternateKeyNotFound, "A record with the specified key values does not exist in %s entity", t.logical)
}

func errSegment(seg string) *apiError {
	return newErr(http.StatusNotFound, codeODataParse, "Resource not found for the segment '%s'.", seg)
}

func errNoResource(url string) *apiError {
	return newErr(http.StatusNotFound, "", "No HTTP resource was found that matches the request URI '%s'.", url)
}

func errProperty(t *table, p string) *apiError {
	return newErr(http.StatusBadRequest, codeODataParse, "Could not find a property named '%s' on type '%s'.", p, t.typeName())
}

func errPayloadProperty(t *table, p string) *apiError {
	return newErr(http.StatusBadRequest, codePayload,
		"Error identified in Payload provided by the user for Entity :'%s'  ---->  InnerException : Microsoft.OData.ODataException: The property '%s' does not exist on type '%s'. Make sure to only use property names that are defined by the type or mark the type as open type.",
		t.set, p, t.typeName())
}

func errUndeclaredNav(t *table, p string) *apiError {
	return newErr(http.StatusBadRequest, codePayload,
		"Error identified in Payload provided by the user for Entity :'%s'  ---->  InnerException : Microsoft.OData.ODataException: An undeclared property '%s' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values.",
		t.set, p)
}

func errBadRequest(format string, args ...any) *apiError {
	return newErr(http.StatusBadRequest, codeInvalidArgument, format, args...)
}

func errSyntax(format string, args ...any) *apiError {
	return newErr(http.StatusBadRequest, codeODataParse, format, args...)
}

func errConcurrency() *apiError {
	return newErr(http.StatusPreconditionFailed, codeConcurrencyMismatch,
		"The version of the existing record doesn't match the RowVersion property provided.")
}

func errExists() *apiError {
	return newErr(http.StatusPreconditionFailed, codeDuplicateRecord, "A record with matching key values already exists.")
}
