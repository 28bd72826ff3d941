package invite

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Token purposes; part of the signed payload so a reset token can never
// confirm an email and vice versa.
const (
	purposeConfirmEmail  byte = 1
	purposeResetPassword byte = 2
)

const (
	tokenVersion = 1
	// version | purpose | expiry (unix seconds, 8 bytes) | contact id (16 bytes)
	tokenPayloadLen = 1 + 1 + 8 + 16
	tokenLen        = tokenPayloadLen + sha256.Size
)

// tokenSigner issues stateless tokens for email confirmation and password
// reset. A token names a contact, a purpose and an expiry, and its MAC also
// covers state that the action changes (the security stamp, the email
// address and its confirmed flag), so it works once and dies with that state:
// nothing is stored.
type tokenSigner struct {
	key []byte
}

type tokenClaims struct {
	purpose   byte
	contactID string
	expires   time.Time
	payload   []byte
	mac       []byte
}

func (s tokenSigner) issue(purpose byte, contactID string, expires time.Time, binding string) (string, error) {
	if len(s.key) == 0 {
		return "", fmt.Errorf("issue token: %w: token secret", ErrNotConfigured)
	}
	id, err := uuid.Parse(contactID)
	if err != nil {
		return "", fmt.Errorf("issue token: contact id: %w", err)
	}
	b := make([]byte, tokenPayloadLen, tokenLen)
	b[0] = tokenVersion
	b[1] = purpose
	binary.BigEndian.PutUint64(b[2:], uint64(expires.Unix()))
	copy(b[10:], id[:])
	b = append(b, s.mac(b, binding)...)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// open checks the shape, purpose and expiry of token; the caller then loads
// the contact and calls valid with the contact's current binding.
func (s tokenSigner) open(token string, purpose byte, now time.Time) (tokenClaims, error) {
	if len(s.key) == 0 {
		return tokenClaims{}, fmt.Errorf("open token: %w: token secret", ErrNotConfigured)
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != tokenLen || b[0] != tokenVersion || b[1] != purpose {
		return tokenClaims{}, ErrTokenInvalid
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(b[2:])), 0)
	if !now.Before(exp) {
		return tokenClaims{}, ErrTokenInvalid
	}
	id, _ := uuid.FromBytes(b[10:26])
	return tokenClaims{purpose: purpose, contactID: id.String(), expires: exp,
		payload: b[:tokenPayloadLen], mac: b[tokenPayloadLen:]}, nil
}

// valid reports whether the token was issued for binding (constant time).
func (s tokenSigner) valid(c tokenClaims, binding string) bool {
	return hmac.Equal(c.mac, s.mac(c.payload, binding))
}

func (s tokenSigner) mac(payload []byte, binding string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("portal-invite-token\x00"))
	m.Write(payload)
	m.Write([]byte{0})
	m.Write([]byte(binding))
	return m.Sum(nil)
}
