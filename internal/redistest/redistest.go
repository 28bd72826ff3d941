// Package redistest starts throwaway redis-server processes for tests.
//
// Tests in this project talk to a real Redis, not a fake: each call to Start
// launches redis-server on a free loopback port with persistence off and stops
// it when the test ends. StartTLS does the same on a TLS-only port with a
// certificate from a throwaway CA (NewCA), and StartSentinels starts a
// primary, its replicas and redis-sentinel processes watching them, with
// helpers to SIGKILL the primary and wait for the promoted replica. When a
// binary is not installed the test is skipped locally, but fails when CI=true
// so CI never silently skips.
package redistest

import (
	"context"
	"crypto/tls"
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

// Server is one running redis-server (or redis-sentinel) process.
type Server struct {
	Addr string // host:port on 127.0.0.1
	URL  string // redis://127.0.0.1:port/0, or rediss:// for a server from StartTLS

	// Set by StartTLS only.
	CA         *CA     // signed the server certificate and ClientCert
	ClientCert KeyPair // a client certificate the server accepts

	bin  string
	dir  string
	port int
	// args gives the command line for a launch on port; nil means a plain
	// redis-server.
	args func(port int) ([]string, error)
	// tls is how Client and the readiness probe connect; nil means plain TCP.
	tls *tls.Config
	// password is the server's requirepass, used by Client and the probe.
	password string

	mu   sync.Mutex
	proc *process
}

// process is a started child and a channel closed once it has exited, so a
// readiness probe notices a crash (a port taken meanwhile) at once.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startProcess(bin string, args []string) (*process, error) {
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// kill sends SIGKILL and waits until the process is gone.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Start launches a redis-server for the test and registers its shutdown.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{bin: lookBin(tb, "redis-server", "redis-server"), dir: tb.TempDir()}
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

// plainArgs is the command line of a throwaway redis-server without TLS.
func (s *Server) plainArgs(port int) ([]string, error) {
	return append([]string{"--port", strconv.Itoa(port)}, s.commonArgs()...), nil
}

// commonArgs are the settings every throwaway redis-server shares: loopback
// only, no persistence, files in the test's directory.
func (s *Server) commonArgs() []string {
	return []string{
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"),
	}
}

func (s *Server) launch(port int) error {
	argv := s.args
	if argv == nil {
		argv = s.plainArgs
	}
	args, err := argv(port)
	if err != nil {
		return err
	}
	p, err := startProcess(s.bin, args)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitReady(addr, s.tls, s.password, p); err != nil {
		p.kill()
		return fmt.Errorf("%w (log: %s)", err, s.logTail())
	}
	scheme := "redis"
	if s.tls != nil {
		scheme = "rediss"
	}
	s.mu.Lock()
	s.proc, s.port = p, port
	s.Addr = addr
	s.URL = scheme + "://" + addr + "/0"
	s.mu.Unlock()
	return nil
}

// logTail is the end of the process's log file, for start-up failures.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return "no log"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Client returns a go-redis client for the server, closed when the test ends.
// For a server from StartTLS it trusts the CA and presents ClientCert; for a
// node of a SentinelGroup it authenticates with the group's password.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, TLSConfig: s.tls, Password: s.password})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Port is the server's TCP port (the TLS port for a server from StartTLS).
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Stop kills the server with SIGKILL, as a crash would, and returns once the
// process is gone. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.kill()
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

func waitReady(addr string, tlsConf *tls.Config, password string, p *process) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, TLSConfig: tlsConf, Password: password})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s on %s exited early", filepath.Base(p.cmd.Path), addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s on %s not ready after 10s", filepath.Base(p.cmd.Path), addr)
}
