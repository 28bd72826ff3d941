package invite

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
)

// Invitation code storage modes (Portal.CodeStorage).
const (
	// CodeHashed stores the SHA-256 (hex) of the normalised code in
	// adx_invitationcode, so CRM staff who can read the row cannot redeem it.
	CodeHashed = "hashed"
	// CodePlain stores the code itself, which Power Pages' own redemption
	// page needs.
	CodePlain = "plain"
)

// codeBytes is the entropy of a code: 160 bits, which is exactly 32
// Crockford base32 characters.
const codeBytes = 20

// crockford is Crockford's base32 alphabet: digits and upper-case letters
// without I, L, O and U, so codes survive being read aloud or retyped.
var crockford = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// Code is an invitation code in canonical form: 32 characters of Crockford
// base32, URL-safe as is.
type Code string

// NewCode returns a fresh random code from crypto/rand.
func NewCode() (Code, error) {
	b := make([]byte, codeBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("invitation code: %w", err)
	}
	return Code(crockford.EncodeToString(b)), nil
}

// Grouped is the human-typeable form: groups of four joined by dashes
// (ABCD-EFGH-...).
func (c Code) Grouped() string {
	s := string(c)
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}

// NormalizeCode turns what a user typed or a link carried into the canonical
// code: case, dashes, spaces and other separators are ignored, and the
// letters Crockford base32 excludes are read as the digits they resemble
// (O -> 0, I and L -> 1). ok is false when the input cannot be one of our
// codes (wrong length or characters); such input may still be a code that
// Power Pages itself generated, which Lookup tries verbatim in plain storage.
func NormalizeCode(s string) (c Code, ok bool) {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '-' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '.' || r == '_':
			continue
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		}
		switch r {
		case 'O':
			r = '0'
		case 'I', 'L':
			r = '1'
		}
		if !strings.ContainsRune("0123456789ABCDEFGHJKMNPQRSTVWXYZ", r) {
			return "", false
		}
		b.WriteRune(r)
	}
	if b.Len() != 32 {
		return "", false
	}
	return Code(b.String()), true
}

// HashCode is what hashed storage keeps in adx_invitationcode: the lower-case
// hex SHA-256 of the canonical code.
func HashCode(c Code) string {
	sum := sha256.Sum256([]byte(c))
	return hex.EncodeToString(sum[:])
}

// storedCode is the value written to adx_invitationcode.
func storedCode(c Code, storage string) string {
	if storage == CodePlain {
		return string(c)
	}
	return HashCode(c)
}

// codeMatches compares a presented code with the stored column in constant
// time (the query already matched it; this guards against a server that
// compares case-insensitively or a filter that matched more than asked).
func codeMatches(stored string, candidates ...string) bool {
	ok := 0
	for _, c := range candidates {
		ok |= subtle.ConstantTimeCompare([]byte(stored), []byte(c))
	}
	return ok == 1
}
