package redistest

import (
	"context"
	"testing"
)

func TestStartRestart(t *testing.T) {
	srv := Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("get = %q, %v; want v", got, err)
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	if len(info) == 0 {
		t.Fatal("empty INFO from redis-server")
	}
	srv.Restart(t)
	c2 := srv.Client(t)
	if n, err := c2.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after restart exists = %d, %v; want 0 (fresh server)", n, err)
	}
}
