// Package redistest starts throwaway redis-server processes for tests.
//
// Tests in this project talk to a real Redis, not a fake: each call to Start
// launches redis-server on a free loopback port with persistence off and stops
// it when the test ends. When redis-server is not installed the test is
// skipped locally, but fails when CI=true so CI never silently skips.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one running redis-server process.
type Server struct {
	Addr string // host:port on 127.0.0.1
	URL  string // redis://127.0.0.1:port/0

	bin  string
	dir  string
	port int

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start launches a redis-server for the test and registers its shutdown.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("redistest: redis-server not found on PATH (CI=true); install it with scripts/install-test-deps")
		}
		tb.Skip("redistest: redis-server not found on PATH; run scripts/install-test-deps (or apt-get install redis-server)")
	}
	s := &Server{bin: bin, dir: tb.TempDir()}
	if err := s.start(); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) start() error {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		if err := s.launch(port); err != nil {
			lastErr = err
			continue
		}
		return nil
	}
	return fmt.Errorf("start redis-server: %w", lastErr)
}

func (s *Server) launch(port int) error {
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"),
	)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", s.bin, err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitReady(addr, cmd); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	s.mu.Lock()
	s.cmd, s.port = cmd, port
	s.Addr = addr
	s.URL = "redis://" + addr + "/0"
	s.mu.Unlock()
	return nil
}

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// Restart stops the server and starts it again on the same port with empty
// data, as after a crash of a cache that does not persist.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.launch(s.port); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly after kill
	}
	tb.Fatalf("redistest: restart on port %d: %v", s.port, err)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(addr string, cmd *exec.Cmd) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if cmd.ProcessState != nil {
			return fmt.Errorf("redis-server exited early")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s not ready after 10s", addr)
}
