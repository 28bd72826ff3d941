package invite

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
)

// Password hash formats accepted by Config.PasswordHash.
const (
	// HashAspNetV3 is the ASP.NET Core Identity V3 format with the .NET 7+
	// parameters: PBKDF2-HMAC-SHA512, 100,000 iterations, 16-byte salt,
	// 32-byte subkey. The default.
	HashAspNetV3 = "aspnet-v3"
	// HashAspNetV2 is the ASP.NET Identity 2 format that Power Pages' own
	// local sign-in verifies: PBKDF2-HMAC-SHA1, 1000 iterations.
	HashAspNetV2 = "aspnet-v2"
)

// PRF identifiers stored in a V3 header (KeyDerivationPrf in ASP.NET Core).
const (
	prfSHA1   = 0
	prfSHA256 = 1
	prfSHA512 = 2
)

const (
	v2Marker     = 0x00
	v3Marker     = 0x01
	v2Iterations = 1000
	v3Iterations = 100_000
	saltLen      = 16
	subkeyLen    = 32
	v3HeaderLen  = 13
	// maxIterations bounds the work a stored (possibly tampered) hash can
	// make us do on every sign-in attempt.
	maxIterations = 10_000_000
)

// PasswordHasher creates and verifies ASP.NET Identity password hashes as
// stored in contact.adx_identity_passwordhash.
type PasswordHasher struct {
	format string
	rand   io.Reader
}

// NewPasswordHasher returns a hasher creating hashes in format
// (HashAspNetV3 when empty). It verifies every V2 and V3 hash regardless.
func NewPasswordHasher(format string) (*PasswordHasher, error) {
	switch format {
	case "":
		format = HashAspNetV3
	case HashAspNetV3, HashAspNetV2:
	default:
		return nil, fmt.Errorf("password hash: unknown format %q (want %s or %s)", format, HashAspNetV3, HashAspNetV2)
	}
	return &PasswordHasher{format: format, rand: rand.Reader}, nil
}

// Format is the format new hashes are created in.
func (h *PasswordHasher) Format() string { return h.format }

// Hash returns a Base64 hash of password with a fresh random salt.
func (h *PasswordHasher) Hash(password string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := io.ReadFull(h.rand, salt); err != nil {
		return "", fmt.Errorf("password hash: salt: %w", err)
	}
	if h.format == HashAspNetV2 {
		sub, err := pbkdf2.Key(sha1.New, password, salt, v2Iterations, subkeyLen)
		if err != nil {
			return "", fmt.Errorf("password hash: %w", err)
		}
		out := make([]byte, 0, 1+saltLen+subkeyLen)
		out = append(out, v2Marker)
		out = append(out, salt...)
		out = append(out, sub...)
		return base64.StdEncoding.EncodeToString(out), nil
	}
	sub, err := pbkdf2.Key(sha512.New, password, salt, v3Iterations, subkeyLen)
	if err != nil {
		return "", fmt.Errorf("password hash: %w", err)
	}
	out := make([]byte, v3HeaderLen, v3HeaderLen+saltLen+subkeyLen)
	out[0] = v3Marker
	binary.BigEndian.PutUint32(out[1:], prfSHA512)
	binary.BigEndian.PutUint32(out[5:], v3Iterations)
	binary.BigEndian.PutUint32(out[9:], saltLen)
	out = append(out, salt...)
	out = append(out, sub...)
	return base64.StdEncoding.EncodeToString(out), nil
}

// Verify reports whether password matches hashed. rehash is true when the
// password matched but hashed is weaker than (or differs from) the configured
// format, so the caller should store a fresh Hash. A malformed hash never
// matches.
func (h *PasswordHasher) Verify(hashed, password string) (ok, rehash bool) {
	p, err := parseHash(hashed)
	if err != nil {
		return false, false
	}
	sub, err := pbkdf2.Key(p.newHash, password, p.salt, p.iterations, len(p.subkey))
	if err != nil {
		return false, false
	}
	if subtle.ConstantTimeCompare(sub, p.subkey) != 1 {
		return false, false
	}
	return true, h.needsRehash(p)
}

// NeedsRehash reports whether hashed should be replaced by a hash in the
// configured format: with aspnet-v3 anything that is not V3 with SHA-512 and
// at least 100,000 iterations; with aspnet-v2 anything that is not V2 (Power
// Pages cannot verify V3).
func (h *PasswordHasher) NeedsRehash(hashed string) bool {
	p, err := parseHash(hashed)
	if err != nil {
		return true
	}
	return h.needsRehash(p)
}

func (h *PasswordHasher) needsRehash(p parsedHash) bool {
	if h.format == HashAspNetV2 {
		return p.version != 2
	}
	return p.version != 3 || p.prf != prfSHA512 || p.iterations < v3Iterations
}

type parsedHash struct {
	version    int
	prf        uint32
	iterations int
	salt       []byte
	subkey     []byte
	newHash    func() hash.Hash
}

// parseHash decodes a V2 or V3 hash with the same length rules as ASP.NET
// Core's PasswordHasher: V2 is exactly 49 bytes; V3 has a salt and a subkey of
// at least 16 bytes each.
func parseHash(hashed string) (parsedHash, error) {
	b, err := base64.StdEncoding.DecodeString(hashed)
	if err != nil {
		return parsedHash{}, fmt.Errorf("password hash: base64: %w", err)
	}
	if len(b) == 0 {
		return parsedHash{}, fmt.Errorf("password hash: empty")
	}
	switch b[0] {
	case v2Marker:
		if len(b) != 1+saltLen+subkeyLen {
			return parsedHash{}, fmt.Errorf("password hash: v2 length %d", len(b))
		}
		return parsedHash{version: 2, prf: prfSHA1, iterations: v2Iterations,
			salt: b[1 : 1+saltLen], subkey: b[1+saltLen:], newHash: sha1.New}, nil
	case v3Marker:
		if len(b) < v3HeaderLen {
			return parsedHash{}, fmt.Errorf("password hash: v3 header too short")
		}
		prf := binary.BigEndian.Uint32(b[1:])
		iter := binary.BigEndian.Uint32(b[5:])
		sl := binary.BigEndian.Uint32(b[9:])
		var nh func() hash.Hash
		switch prf {
		case prfSHA1:
			nh = sha1.New
		case prfSHA256:
			nh = sha256.New
		case prfSHA512:
			nh = sha512.New
		default:
			return parsedHash{}, fmt.Errorf("password hash: unknown prf %d", prf)
		}
		if iter == 0 || iter > maxIterations {
			return parsedHash{}, fmt.Errorf("password hash: iteration count %d", iter)
		}
		rest := b[v3HeaderLen:]
		if sl < 16 || uint64(sl) > uint64(len(rest)) {
			return parsedHash{}, fmt.Errorf("password hash: salt length %d", sl)
		}
		salt, sub := rest[:sl], rest[sl:]
		if len(sub) < 16 {
			return parsedHash{}, fmt.Errorf("password hash: subkey length %d", len(sub))
		}
		return parsedHash{version: 3, prf: prf, iterations: int(iter), salt: salt, subkey: sub, newHash: nh}, nil
	default:
		return parsedHash{}, fmt.Errorf("password hash: unknown format marker %#x", b[0])
	}
}
