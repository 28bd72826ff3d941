package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server process on a loopback port. With persist it
// runs with an append-only file fsynced on every write (what production
// should use for the queue), so a restart keeps the data.
type redisServer struct {
	Addr, URL string

	bin, dir string
	persist  bool
	port     int
	extra    []string // more redis-server flags, e.g. --replicaof

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

func startRedis(dir string, persist bool) (*redisServer, error) {
	return startRedisArgs(dir, persist)
}

// startRedisArgs is startRedis with more redis-server flags.
func startRedisArgs(dir string, persist bool, extra ...string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	r := &redisServer{bin: bin, dir: dir, persist: persist, extra: extra}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		if lastErr = r.launch(port); lastErr == nil {
			return r, nil
		}
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

func (r *redisServer) launch(port int) error {
	args := []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log"),
	}
	if r.persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, r.extra...)
	cmd := exec.Command(r.bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", r.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitRedis(addr, done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return err
	}
	r.mu.Lock()
	r.cmd, r.done, r.port, r.Addr, r.URL = cmd, done, port, addr, "redis://"+addr+"/0"
	r.mu.Unlock()
	return nil
}

// client returns a new go-redis client; the caller closes it.
func (r *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr})
}

// kill stops the server with SIGKILL, as a crash would. Safe to repeat.
func (r *redisServer) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// restart starts the server again on the same port and directory.
func (r *redisServer) restart() error {
	r.kill()
	var err error
	for range 50 {
		if err = r.launch(r.port); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // the port can linger briefly
	}
	return fmt.Errorf("restart redis-server on port %d: %w", r.port, err)
}

func waitRedis(addr string, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server on %s exited at start", addr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s not ready after 15s", addr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
