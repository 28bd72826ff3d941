package invite

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Callers branch on them with errors.Is; the messages are
// safe to show to end users.
var (
	ErrNotFound          = errors.New("not found")
	ErrCodeUnknown       = errors.New("this invitation code is not valid")
	ErrCodeExpired       = errors.New("this invitation has expired")
	ErrCodeRevoked       = errors.New("this invitation has been withdrawn")
	ErrCodeUsedUp        = errors.New("this invitation has already been used")
	ErrExistingUser      = errors.New("you already have an account on this portal")
	ErrUsernameTaken     = errors.New("this user name is already taken")
	ErrBadCredentials    = errors.New("the user name or password is incorrect")
	ErrLockedOut         = errors.New("the account is locked")
	ErrTokenInvalid      = errors.New("this link is invalid or has expired")
	ErrUnknownPortal     = errors.New("unknown portal")
	ErrUnknownRole       = errors.New("unknown web role")
	ErrNoEmail           = errors.New("the contact has no email address")
	ErrInactiveContact   = errors.New("the contact is inactive")
	ErrAlreadyPortalUser = errors.New("the contact is already a portal user")
	ErrTermsRequired     = errors.New("the terms must be accepted")
	// ErrNotConfigured is returned by token operations when Config.TokenSecret is empty.
	ErrNotConfigured = errors.New("not configured")
)

// LockedOutError says until when an account is locked; it wraps ErrLockedOut.
type LockedOutError struct {
	Until time.Time
}

func (e *LockedOutError) Error() string {
	return fmt.Sprintf("%s until %s", ErrLockedOut, e.Until.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrLockedOut) true.
func (e *LockedOutError) Unwrap() error { return ErrLockedOut }

// PolicyError lists why a password was rejected, in words for the user.
type PolicyError struct {
	Problems []string
}

func (e *PolicyError) Error() string {
	return "password rejected: " + strings.Join(e.Problems, "; ")
}

// permanent are the errors that will not change by retrying the same request.
var permanent = []error{
	ErrNotFound, ErrCodeUnknown, ErrCodeExpired, ErrCodeRevoked, ErrCodeUsedUp,
	ErrExistingUser, ErrUsernameTaken, ErrBadCredentials, ErrTokenInvalid,
	ErrUnknownPortal, ErrUnknownRole, ErrNoEmail, ErrInactiveContact,
	ErrAlreadyPortalUser, ErrTermsRequired, ErrNotConfigured, ErrNoOpenInvitation, ErrCodeSuperseded,
}

// IsPermanent reports whether err is a domain outcome that a retry cannot
// change (unknown portal, contact without email, ...). Sync uses it to stop
// retrying and record the failure; Dataverse and network errors are not
// permanent.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var pe *PolicyError
	if errors.As(err, &pe) {
		return true
	}
	for _, p := range permanent {
		if errors.Is(err, p) {
			return true
		}
	}
	return false
}
