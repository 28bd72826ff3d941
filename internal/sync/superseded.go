package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/invite"
)

// supersededCodes keeps the codes a resend replaced in Redis, one key per
// code named by its SHA-256 (plain codes never appear in key names), with
// the old code's remaining lifetime as TTL.
type supersededCodes struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewSuperseded returns the Redis store of replaced invitation codes for
// invite.Config.Superseded; keys are <prefix>invite:superseded:<sha256>.
func NewSuperseded(rdb redis.UniversalClient, prefix string) invite.Superseded {
	return &supersededCodes{rdb: rdb, prefix: prefix + "invite:superseded:"}
}

func (s *supersededCodes) key(stored string) string {
	h := sha256.Sum256([]byte(stored))
	return s.prefix + hex.EncodeToString(h[:])
}

// Remember implements invite.Superseded.
func (s *supersededCodes) Remember(ctx context.Context, stored string, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.key(stored), 1, ttl).Err(); err != nil {
		return fmt.Errorf("remember superseded code: %w", err)
	}
	return nil
}

// Superseded implements invite.Superseded.
func (s *supersededCodes) Superseded(ctx context.Context, stored string) (bool, error) {
	err := s.rdb.Get(ctx, s.key(stored)).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("superseded code: %w", err)
	}
	return true, nil
}
