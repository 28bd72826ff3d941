package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

func TestInviteOneContact(t *testing.T) {
	org := newTestOrg(t)
	env := org.getenv(org.emu.ClientSecret)
	row, _ := org.emu.Row("contact", org.seed.ContactIDs[0])
	email := row["emailaddress1"].(string)

	code, out, stderr := runCLI(t, env, "invite", "--config", org.cfgPath, "--contact", strings.ToUpper(email), "--role", "Partners")
	if code != exitOK || !strings.Contains(out, ": invited invitation ") {
		t.Fatalf("invite by email: exit %d\n%s%s", code, out, stderr)
	}
	if n := len(org.emu.Outbox()); n != 1 {
		t.Fatalf("%d emails sent, want 1", n)
	}
	code, out, _ = runCLI(t, env, "invite", "--config", org.cfgPath, "--contact", org.seed.ContactIDs[0], "--role", "Partners")
	if code != exitOK || !strings.Contains(out, "already invited") || len(org.emu.Outbox()) != 1 {
		t.Fatalf("second invite: exit %d, %d emails\n%s", code, len(org.emu.Outbox()), out)
	}
	code, out, _ = runCLI(t, env, "invite", "--config", org.cfgPath, "--contact", "nobody@example.invalid")
	if code != exitFail || !strings.Contains(out, "failed") {
		t.Fatalf("unknown email: exit %d\n%s", code, out)
	}
	code, _, stderr = runCLI(t, env, "invite", "--config", org.cfgPath, "--contact", "x", "--portal", "Nope")
	if code != exitUsage || !strings.Contains(stderr, `--portal "Nope" is not configured`) {
		t.Fatalf("unknown portal: exit %d\n%s", code, stderr)
	}
}

func TestInviteBulkThroughQueueIsResumable(t *testing.T) {
	org := newTestOrg(t)
	env := org.getenv(org.emu.ClientSecret)
	var b strings.Builder
	b.WriteString("email,portal,roles\n")
	var ids []string
	for _, id := range org.seed.ContactIDs[:6] {
		row, _ := org.emu.Row("contact", id)
		if e, _ := row["emailaddress1"].(string); e != "" && fmtInt(row["statecode"]) == "0" {
			b.WriteString(e + ",Contoso Partner Portal,Partners;Authenticated Users\n")
			ids = append(ids, id)
		}
	}
	csvPath := filepath.Join(t.TempDir(), "contacts.csv")
	if err := os.WriteFile(csvPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, stderr := runCLI(t, env, "invite", "--config", org.cfgPath, "--file", csvPath, "--dry-run")
	if code != exitOK || !strings.Contains(out, "would invite") || len(org.emu.Outbox()) != 0 {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, stderr)
	}

	code, out, stderr = runCLI(t, env, "invite", "--config", org.cfgPath, "--file", csvPath)
	if code != exitOK {
		t.Fatalf("bulk: exit %d\n%s%s", code, out, stderr)
	}
	if !regexp.MustCompile(`queued\s+` + itoa(len(ids))).MatchString(out) {
		t.Errorf("summary:\n%s", out)
	}
	// Not a terminal: plain progress lines, the last one for the whole run.
	if !strings.Contains(stderr, "progress: "+itoa(len(ids))+"/"+itoa(len(ids))+" (100%), done in ") || strings.Contains(stderr, "\r") {
		t.Errorf("progress:\n%s", stderr)
	}
	rdb := org.redis.Client(t)
	n, err := rdb.XLen(context.Background(), "pinv:intake:stream").Result()
	if err != nil || n != int64(len(ids)) {
		t.Errorf("queue length %d (%v), want %d", n, err, len(ids))
	}
	for _, id := range ids {
		row, _ := org.emu.Row("contact", id)
		if fmtInt(row[emulator.ColInviteStatus]) != itoa(emulator.InviteRequested) || row[emulator.ColInviteRoles] != "Partners,Authenticated Users" {
			t.Errorf("contact %s: status %v roles %v", id, row[emulator.ColInviteStatus], row[emulator.ColInviteRoles])
		}
	}

	code, out, stderr = runCLI(t, env, "invite", "--config", org.cfgPath, "--file", csvPath)
	if code != exitOK || !strings.Contains(stderr, "resuming: "+itoa(len(ids))+" row(s) already done") {
		t.Fatalf("resume: exit %d\n%s%s", code, out, stderr)
	}
	if n2, _ := rdb.XLen(context.Background(), "pinv:intake:stream").Result(); n2 != n {
		t.Errorf("resume queued again: %d -> %d", n, n2)
	}
}

func TestInviteBulkCountsAlreadyInvited(t *testing.T) {
	org := newTestOrg(t)
	env := org.getenv(org.emu.ClientSecret)
	done, fresh := org.seed.ContactIDs[0], org.seed.ContactIDs[1]
	if code, out, stderr := runCLI(t, env, "invite", "--config", org.cfgPath, "--contact", done); code != exitOK {
		t.Fatalf("invite one: exit %d\n%s%s", code, out, stderr)
	}
	csvPath := filepath.Join(t.TempDir(), "contacts.csv")
	if err := os.WriteFile(csvPath, []byte("contactid\n"+done+"\n"+fresh+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, env, "invite", "--config", org.cfgPath, "--file", csvPath)
	if code != exitOK || !regexp.MustCompile(`already invited\s+1\n`).MatchString(out) || !regexp.MustCompile(`queued\s+1\n`).MatchString(out) {
		t.Fatalf("bulk: exit %d\n%s%s", code, out, stderr)
	}
	if n, err := org.redis.Client(t).XLen(context.Background(), "pinv:intake:stream").Result(); err != nil || n != 1 {
		t.Errorf("queue length %d (%v), want 1: the invited contact was queued again", n, err)
	}
	if n := len(org.emu.Outbox()); n != 1 {
		t.Errorf("%d emails, want 1", n)
	}
}

func TestInviteBulkBadCSVNamesTheLine(t *testing.T) {
	org := newTestOrg(t)
	csvPath := filepath.Join(t.TempDir(), "contacts.csv")
	if err := os.WriteFile(csvPath, []byte("email\na@example.invalid\nb@example.invalid\"x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, org.getenv(org.emu.ClientSecret), "invite", "--config", org.cfgPath, "--file", csvPath)
	if code != exitUsage || !strings.Contains(stderr, csvPath+": parse error on line 3") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
}
