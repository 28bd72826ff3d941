package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Idempotency keys follow draft-ietf-httpapi-idempotency-key-header: the
// client sends a unique key with a non-idempotent request; the server runs
// the request once and answers repeats with the stored first response.
const (
	idempotencyHeader = "Idempotency-Key"
	replayedHeader    = "Idempotent-Replayed"
	maxKeyLength      = 255
	// pendingTTL bounds how long a crashed request can hold its key. It is
	// longer than an Invite can run (invite's per-contact lock is 2 minutes).
	pendingTTL = 5 * time.Minute
	// storeTimeout bounds the Redis write after the work is done; it runs
	// even if the client has gone, so the key does not stay pending.
	storeTimeout = 5 * time.Second
)

// fingerprint is what makes two requests "the same" for one key: the
// validated request, not its bytes.
type fingerprint struct {
	Portal       string    `json:"portal,omitempty"`
	ContactID    string    `json:"contact_id,omitempty"`
	Email        string    `json:"email,omitempty"`
	Roles        []string  `json:"roles,omitempty"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	InvitationID string    `json:"invitation_id,omitempty"`
}

// record is the Redis value for one key: pending while the first request
// runs (Status 0, Token identifies its owner), then the stored response.
type record struct {
	Fingerprint string            `json:"fp"`
	Token       string            `json:"token,omitempty"`
	Status      int               `json:"status,omitempty"`
	Header      map[string]string `json:"header,omitempty"`
	Body        []byte            `json:"body,omitempty"`
}

// storedHeaders are the response headers a replay repeats.
var storedHeaders = []string{"Content-Type", "Location"}

type idempotency struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
}

// The three operations are scripts so that each check-and-write is atomic
// (Redis 2.6+, and Redis-compatible servers with Lua).
var (
	// reserve returns the existing record, or stores the pending one and
	// returns nil.
	reserveScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`)
	// complete replaces our pending record with the response.
	completeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`)
	// release drops our pending record so the request can be retried.
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

// redisKey scopes the client's key to the API key that sent it, and hashes
// it so any client string makes a short, safe Redis key.
func (s *idempotency) redisKey(client, key string) string {
	sum := sha256.Sum256([]byte(key))
	return s.prefix + client + ":" + hex.EncodeToString(sum[:])
}

// reserve returns (nil, nil) when the key is now ours, or the record of an
// earlier request with this key.
func (s *idempotency) reserve(ctx context.Context, key string, pending []byte) (*record, error) {
	v, err := reserveScript.Run(ctx, s.rdb, []string{key}, pending, pendingTTL.Milliseconds()).Text()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency: reserve: %w", err)
	}
	var rec record
	if err := json.Unmarshal([]byte(v), &rec); err != nil {
		return nil, fmt.Errorf("idempotency: decode record: %w", err)
	}
	return &rec, nil
}

func (s *idempotency) complete(ctx context.Context, key string, pending []byte, rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("idempotency: encode record: %w", err)
	}
	n, err := completeScript.Run(ctx, s.rdb, []string{key}, pending, b, s.ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("idempotency: store response: %w", err)
	}
	if n == 0 {
		return errors.New("idempotency: store response: the pending record expired before the request finished")
	}
	return nil
}

func (s *idempotency) release(ctx context.Context, key string, pending []byte) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{key}, pending).Err(); err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	return nil
}

// idempotencyKey reads the header. The draft defines the value as a
// structured-field string ("..."); bare tokens are accepted too.
func idempotencyKey(r *http.Request) (key string, present bool, err error) {
	vals := r.Header.Values(idempotencyHeader)
	if len(vals) == 0 {
		return "", false, nil
	}
	bad := &problem{Type: typeInvalidRequest, Title: "Invalid request", Status: http.StatusBadRequest,
		Detail: "Idempotency-Key must be one value of 1 to 255 printable ASCII characters."}
	if len(vals) > 1 {
		return "", true, bad
	}
	k := strings.TrimSpace(vals[0])
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	if k == "" || len(k) > maxKeyLength {
		return "", true, bad
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", true, bad
		}
	}
	return k, true, nil
}

// idempotent runs fn once per Idempotency-Key: without the header it just
// calls fn; with it, the first request's final response is stored and
// replayed for repeats with the same fingerprint. Another fingerprint under
// the key is 422, a repeat while the first still runs is 409. 5xx responses
// are not stored, so the client may retry with the same key.
func (s *server) idempotent(w http.ResponseWriter, r *http.Request, fp fingerprint, fn func(http.ResponseWriter) error) error {
	key, present, err := idempotencyKey(r)
	if !present {
		return fn(w)
	}
	if err != nil {
		return err
	}
	ctx := r.Context()
	fpJSON, err := json.Marshal(fp)
	if err != nil {
		return fmt.Errorf("idempotency: fingerprint: %w", err)
	}
	sum := sha256.Sum256(append([]byte(r.Method+" "+r.Pattern+"\n"), fpJSON...))
	rkey := s.idem.redisKey(client(ctx), key)
	var token [16]byte
	_, _ = rand.Read(token[:])
	pending, _ := json.Marshal(record{Fingerprint: hex.EncodeToString(sum[:]), Token: hex.EncodeToString(token[:])})
	prev, err := s.idem.reserve(ctx, rkey, pending)
	if err != nil {
		return storeUnavailable(err)
	}
	if prev != nil {
		switch {
		case prev.Fingerprint != hex.EncodeToString(sum[:]):
			return &problem{Type: typeIdempotencyReused, Title: "Idempotency key reused", Status: http.StatusUnprocessableEntity,
				Detail: "This Idempotency-Key was used for a different request; use a new key for a new request."}
		case prev.Status == 0:
			return &problem{Type: typeIdempotencyRunning, Title: "Request in progress", Status: http.StatusConflict,
				Detail: "A request with this Idempotency-Key is still being processed; retry shortly.", retryAfter: time.Second}
		}
		for k, v := range prev.Header {
			w.Header().Set(k, v)
		}
		w.Header().Set(replayedHeader, "true")
		w.WriteHeader(prev.Status)
		_, _ = w.Write(prev.Body)
		return nil
	}

	buf := &bufferedWriter{header: http.Header{}}
	if err := fn(buf); err != nil {
		s.writeError(buf, r, err)
	}
	if buf.status == 0 {
		buf.status = http.StatusOK
	}
	// Store with a context that outlives a client that hung up: the work
	// is done and a retry must see its result.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if buf.status >= 500 {
		err = s.idem.release(sctx, rkey, pending)
	} else {
		rec := &record{Fingerprint: hex.EncodeToString(sum[:]), Status: buf.status, Header: map[string]string{}, Body: buf.body.Bytes()}
		for _, h := range storedHeaders {
			if v := buf.header.Get(h); v != "" {
				rec.Header[h] = v
			}
		}
		err = s.idem.complete(sctx, rkey, pending, rec)
	}
	if err != nil {
		// The response is still correct; only its replay is lost, and the
		// pending record expires after pendingTTL.
		s.log.WarnContext(ctx, "api: idempotency record not saved", "request_id", requestID(ctx), "err", err)
	}
	buf.copyTo(w)
	return nil
}

func storeUnavailable(err error) *problem {
	return &problem{Type: typeUnavailable, Title: "Service unavailable", Status: http.StatusServiceUnavailable,
		Detail: "Idempotency keys cannot be checked right now; retry later.", retryAfter: defaultRetryAfter, cause: err}
}

// bufferedWriter holds a response until it has been stored.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedWriter) copyTo(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}
