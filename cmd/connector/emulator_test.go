package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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
