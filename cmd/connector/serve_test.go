package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestServeRefusesEmbeddedRedis(t *testing.T) {
	org := newTestOrg(t)
	src, _ := os.ReadFile(org.cfgPath)
	noRedis := strings.Replace(string(src), "redis:\n  url: "+`"`+org.redis.URL+`"`, "", 1)
	if noRedis == string(src) {
		t.Fatal("test config has no redis section to remove")
	}
	if err := os.WriteFile(org.cfgPath, []byte(noRedis), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, org.getenv(org.emu.ClientSecret), "serve", "--config", org.cfgPath)
	if code != exitUsage || !strings.Contains(stderr, "redis.url: is required") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

// TestServeLifecycle runs `connector serve` as a subprocess against the
// emulator and a real redis-server: it becomes ready, answers its health and
// metrics endpoints, and exits cleanly on SIGTERM.
func TestServeLifecycle(t *testing.T) {
	org := newTestOrg(t)
	src, _ := os.ReadFile(org.cfgPath)
	if err := os.WriteFile(org.cfgPath, []byte(strings.Replace(string(src), "level: warn", "level: info", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "serve", "--config", org.cfgPath)
	cmd.Env = append(os.Environ(), "CONNECTOR_TEST_MAIN=1", "TEST_DV_SECRET="+org.emu.ClientSecret)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "connector ready" {
				addr <- rec["addr"].(string)
			}
		}
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not log ready within 30s")
	}
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "connector_dataverse_requests_total"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %.200s", path, resp.StatusCode, body)
		}
	}
	org.redis.Stop()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "redis: unavailable") {
		t.Errorf("readyz with Redis down: %d %s", resp.StatusCode, body)
	}

	stopGracefully(t, cmd, 30*time.Second)
}
