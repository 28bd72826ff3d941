package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dataverse/emulator/schema"
)

// TestEmulatorCommand runs `connector emulator` as a user would and calls it
// with an ordinary token credential and HTTP client built from its first line.
func TestEmulatorCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"emulator", "--seed", "demo"}, env{
			Getenv: func(string) string { return "" }, Stdin: strings.NewReader(""), Stdout: pw, Stderr: io.Discard,
		})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("read first line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	var info emulatorInfo
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		t.Fatalf("first line is not JSON: %q: %v", line, err)
	}
	hc, token := emulatorClient(ctx, t, info)
	req, _ := http.NewRequestWithContext(ctx, "GET", info.APIURL+"contacts?$select=fullname&$top=3", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Value []map[string]any `json:"value"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&page) != nil || len(page.Value) != 3 {
		t.Fatalf("contacts query: status %d, %d rows", resp.StatusCode, len(page.Value))
	}
	// It serves the table reference's names: $metadata matches the facts, with
	// the solution's own contact columns (publisher prefix pinv_) on top.
	md := apiGet(ctx, t, hc, token, info.APIURL+"$metadata")
	sc, err := schema.Load()
	if err != nil {
		t.Fatal(err)
	}
	diffs, err := schema.Drift(bytes.NewReader(md), sc, func(table, prop string) bool {
		return table == "contact" && strings.HasPrefix(prop, "pinv_")
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("emulator did not stop on cancel")
	}
}

// emulatorClient trusts the emulator's CA and gets a token the way an
// operator's tool would: a client-secret credential against its authority.
func emulatorClient(ctx context.Context, t *testing.T, info emulatorInfo) (*http.Client, string) {
	t.Helper()
	caPEM, err := os.ReadFile(info.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca_file holds no certificate")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	cred, err := azidentity.NewClientSecretCredential(info.TenantID, info.ClientID, info.ClientSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: info.AuthorityHost}, Transport: hc},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{info.OrgURL + "/.default"}})
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return hc, tok.Token
}

// apiGet GETs a Web API URL and returns the body of a 200 response.
func apiGet(ctx context.Context, t *testing.T, hc *http.Client, token, u string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", u, resp.StatusCode, b, err)
	}
	return b
}

// TestEmulatorCommandEmailSync sets the demo's mailboxes with --mailbox and
// sends through the unapproved queue: the email stays in Pending Send with
// the mailbox's alert, while the approved user's email is sent.
func TestEmulatorCommandEmailSync(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"emulator", "--seed", "demo", "--email-delay", "0", "--mailbox", "queue=pending",
			"--mailbox", "avery.admin@contoso.example=disabled,outlook"}, env{
			Getenv: func(string) string { return "" }, Stdin: strings.NewReader(""), Stdout: pw, Stderr: io.Discard,
		})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("read first line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	var info emulatorInfo
	if err := json.Unmarshal([]byte(line), &info); err != nil {
		t.Fatalf("first line is not JSON: %q: %v", line, err)
	}
	hc, token := emulatorClient(ctx, t, info)
	var boxes struct {
		Value []struct {
			Name     string `json:"name"`
			ID       string `json:"mailboxid"`
			Approval int    `json:"emailrouteraccessapproval"`
			Enabled  bool   `json:"enabledforoutgoingemail"`
			Method   int    `json:"outgoingemaildeliverymethod"`
		} `json:"value"`
	}
	raw := apiGet(ctx, t, hc, token, info.APIURL+"mailboxes?$select=name,emailrouteraccessapproval,enabledforoutgoingemail,outgoingemaildeliverymethod&$filter=emailaddress%20ne%20null")
	if err := json.Unmarshal(raw, &boxes); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	queueBox := ""
	for _, b := range boxes.Value {
		got[b.Name] = fmt.Sprint(b.Approval, b.Enabled, b.Method)
		if b.Name == "Portal Invitations" {
			queueBox = b.ID
		}
	}
	want := map[string]string{"Portal Invitations": "2 true 2", "Avery Admin": "1 false 1", "Portal Mailer": "1 true 2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("mailboxes %v, want %v", got, want)
	}

	send := func(from string) string {
		var email struct {
			ID string `json:"activityid"`
		}
		b := apiDo(ctx, t, hc, token, "POST", info.APIURL+"emails", map[string]any{"subject": "Hi", "email_activity_parties": []any{
			map[string]any{"participationtypemask": 1, "partyid_" + strings.TrimSuffix(strings.SplitN(from, "(", 2)[0], "s") + "@odata.bind": "/" + from},
			map[string]any{"participationtypemask": 2, "addressused": "ada@example.com"},
		}})
		if err := json.Unmarshal(b, &email); err != nil || email.ID == "" {
			t.Fatalf("create email: %s", b)
		}
		apiDo(ctx, t, hc, token, "POST", info.APIURL+"emails("+email.ID+")/Microsoft.Dynamics.CRM.SendEmail", map[string]any{"IssueSend": true})
		return email.ID
	}
	status := func(id string) string {
		var e struct {
			Status int `json:"statuscode"`
		}
		_ = json.Unmarshal(apiGet(ctx, t, hc, token, info.APIURL+"emails("+id+")?$select=statuscode"), &e)
		return fmt.Sprint(e.Status)
	}
	held := send("queues(" + emulator.DemoQueueID + ")")
	sent := send("systemusers(" + emulator.DemoMailerUserID + ")")
	if status(held) != "6" || status(sent) != "3" {
		t.Fatalf("queue email %s, mailer email %s; want 6 (Pending Send) and 3 (Sent)", status(held), status(sent))
	}
	alerts := apiGet(ctx, t, hc, token, info.APIURL+"tracelogs?$select=text&$filter=_regardingobjectid_value%20eq%20"+queueBox)
	if !strings.Contains(string(alerts), "have not been approved") {
		t.Fatalf("queue mailbox alerts: %s", alerts)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d", code)
	}
}

func TestEmulatorCommandRefusesBadMailboxFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--mailbox", "queue=sometimes"},
		{"--mailbox", "queue"},
		{"--mailbox", "nobody@example.com=pending"},
		{"--seed", "empty", "--mailbox", "queue=pending"},
		{"--mailbox-messages", "-1"},
		{"--mailbox-limits-scale", "0"},
	} {
		var stderr strings.Builder
		code := run(context.Background(), append([]string{"emulator"}, args...), env{
			Getenv: func(string) string { return "" }, Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &stderr,
		})
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (usage)\n%s", args, code, exitUsage, stderr.String())
		}
	}
}

func TestEmailSyncFlagOptions(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f := addEmailSyncFlags(fs, time.Second)
	if err := fs.Parse([]string{"--mailbox-messages", "0", "--mailbox-recipients", "200", "--mailbox-limits-scale", "0.5", "--bounce-suffix", ".test"}); err != nil {
		t.Fatal(err)
	}
	o, err := f.options()
	if err != nil {
		t.Fatal(err)
	}
	if o.Delay != time.Second || o.Retry != 5*time.Minute || o.Limits.Messages != -1 || o.Limits.Recipients != 100 || o.Limits.RecipientWindow != 12*time.Hour {
		t.Fatalf("options: %+v", o)
	}
	if !o.Bounce("x@Host.TEST") || o.Bounce("x@host.invalid") {
		t.Fatal("bounce rule")
	}
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	f = addEmailSyncFlags(fs, 0)
	if err := fs.Parse([]string{"--bounce-suffix", ""}); err != nil {
		t.Fatal(err)
	}
	if o, _ := f.options(); o.Bounce("x@host.invalid") {
		t.Fatal("an empty suffix bounces")
	}
}

// apiDo sends a JSON body and returns the response body of a 2xx answer.
func apiDo(ctx context.Context, t *testing.T, hc *http.Client, token, method, u string, body any) []byte {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "return=representation")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, u, resp.StatusCode, b)
	}
	return b
}
