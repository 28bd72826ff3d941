package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

// TestMain lets a test run the real program as a subprocess by re-executing
// the test binary with CONNECTOR_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("CONNECTOR_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func startDev(t *testing.T, args ...string) (*exec.Cmd, devInfo) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"dev", "--addr", "127.0.0.1:0", "--json"}, args...)...)
	cmd.Env = append(os.Environ(), "CONNECTOR_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("connector dev stderr:\n%s", stderr.String())
		}
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var info devInfo
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(line), &info); err != nil {
			t.Fatalf("first stdout line is not JSON: %q (%v)\n%s", line, err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("connector dev printed nothing in 60s\n%s", stderr.String())
	}
	return cmd, info
}

var (
	contactFormRe = regexp.MustCompile(`name="contact" value="([0-9a-f-]{36})"`)
	invitationRe  = regexp.MustCompile(`href="(http://[^"]+/invitation\?code=[^"]+)"`)
	hiddenRe      = regexp.MustCompile(`name="(csrf_token|code)" value="([^"]*)"`)
)

// TestDevEndToEnd runs `connector dev` as a newcomer would and walks the whole
// story over HTTP: the Invite button, the outbox, the link, the sign-up, the
// contact marked Redeemed, then a clean exit on SIGTERM.
func TestDevEndToEnd(t *testing.T) {
	cmd, info := startDev(t)
	client := &http.Client{Timeout: 30 * time.Second}
	get := func(u string) string {
		t.Helper()
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", u, resp.StatusCode)
		}
		return string(b)
	}

	m := contactFormRe.FindStringSubmatch(get(info.DynamicsURL))
	if m == nil {
		t.Fatal("no Invite to portal button on the Dynamics page")
	}
	contact := m[1]
	resp, err := client.PostForm(info.DynamicsURL+"invite", url.Values{
		"contact": {contact}, "portal": {"Contoso Partner Portal"}, "role": {"Partners"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	var link string
	for deadline := time.Now().Add(30 * time.Second); link == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m := invitationRe.FindStringSubmatch(get(info.OutboxURL)); m != nil {
			link = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if link == "" {
		t.Fatal("no invitation email in the outbox after 30s")
	}
	// The click came from Avery Admin (the demo acts as that CRM user), so the
	// webhook names an initiating user and the email is created owned by them.
	hc, token := emulatorClient(context.Background(), t, info.Emulator)
	var emails struct {
		Value []map[string]any `json:"value"`
	}
	raw := apiGet(context.Background(), t, hc, token, info.Emulator.APIURL+"emails?$select=subject,_ownerid_value")
	if err := json.Unmarshal(raw, &emails); err != nil || len(emails.Value) != 1 {
		t.Fatalf("emails: %s (%v)", raw, err)
	}
	if owner, _ := emails.Value[0]["_ownerid_value"].(string); !strings.EqualFold(owner, emulator.DemoAdminUserID) {
		t.Errorf("invitation email owner %q, want the clicking user %s", owner, emulator.DemoAdminUserID)
	}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = browser.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := url.Values{"username": {"newcomer@example.test"}, "password": {"Blue-Harbor-Lantern-42"}, "confirm_password": {"Blue-Harbor-Lantern-42"}}
	for _, h := range hiddenRe.FindAllStringSubmatch(string(page), -1) {
		form.Set(h[1], h[2])
	}
	if form.Get("csrf_token") == "" || form.Get("code") == "" {
		t.Fatalf("sign-up form lacks csrf_token or code:\n%s", page)
	}
	req, _ := http.NewRequest("POST", info.PortalURL+"invitation", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", strings.TrimSuffix(info.PortalURL, "/"))
	resp, err = browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/profile" {
		t.Fatalf("redeem: %d -> %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = browser.Get(info.PortalURL + "profile")
	if err != nil {
		t.Fatal(err)
	}
	profile, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(profile), "newcomer@example.test") {
		t.Fatalf("profile after redeem: %d", resp.StatusCode)
	}

	var row string
	for _, tr := range strings.Split(get(info.DynamicsURL), "<tr>") {
		if strings.Contains(tr, `value="`+contact+`"`) {
			row = tr
		}
	}
	if !strings.Contains(row, `status-Redeemed`) {
		t.Errorf("contact %s not marked Redeemed on the Dynamics page:\n%s", contact, row)
	}

	stopGracefully(t, cmd, 30*time.Second)
}
