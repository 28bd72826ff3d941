package demo

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

func TestResendAndRevokeButtonsPatchTheStatus(t *testing.T) {
	emu, err := emulator.StartTLS(emulator.Options{}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	d, err := emulator.SeedDemo(emu.Server)
	if err != nil {
		t.Fatal(err)
	}
	cols := Columns{Status: emulator.ColInviteStatus, Portal: emulator.ColInvitePortal, Roles: emulator.ColInviteRoles,
		InvitedOn: emulator.ColInvitedOn, Error: emulator.ColInviteError, Requested: emulator.InviteRequested,
		Sent: emulator.InviteSent, Failed: emulator.InviteFailed, Redeemed: emulator.InviteRedeemed,
		Resend: emulator.InviteResend, Revoke: emulator.InviteRevoke, Revoked: emulator.InviteRevoked, Expired: emulator.InviteExpired}
	h, err := New(Config{
		Emulator: emu.Server, APIURL: emu.APIURL, HTTPClient: emu.HTTPClient, ClientID: emu.ClientID,
		ActAs: d.AdminUserID, ActAsName: "Avery Admin", Prefix: "/_demo",
		Portals: []Portal{{Name: "Contoso Partner Portal", Roles: []string{"Partners"}}}, Columns: cols,
	})
	if err != nil {
		t.Fatal(err)
	}
	site := httptest.NewServer(h)
	t.Cleanup(site.Close)

	resp, err := http.Get(site.URL + "/_demo/")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.Write(body)
	if n, m := strings.Count(b.String(), "Resend invitation</button>"), strings.Count(b.String(), "Revoke invitation</button>"); n != 10 || m != 10 {
		t.Fatalf("%d Resend and %d Revoke buttons; want 10 each (active contacts with an email address)", n, m)
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		path  string
		want  int
		label string
	}{{"/_demo/resend", emulator.InviteResend, "Resend requested"}, {"/_demo/revoke", emulator.InviteRevoke, "Revoke requested"}} {
		contact := d.ContactIDs[1]
		resp, err := noRedirect.PostForm(site.URL+c.path, url.Values{"contact": {contact}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "flash="+url.QueryEscape(c.label)) {
			t.Fatalf("%s: %d %s", c.path, resp.StatusCode, resp.Header.Get("Location"))
		}
		row, _ := emu.Row("contact", contact)
		if n, _ := toInt(row[emulator.ColInviteStatus]); n != c.want {
			t.Errorf("%s: status %v, want %d", c.path, row[emulator.ColInviteStatus], c.want)
		}
		hd := &handler{cfg: Config{Columns: cols}}
		if got := hd.statusLabel(c.want); got != c.label {
			t.Errorf("label %q, want %q", got, c.label)
		}
	}
	resp, err = noRedirect.PostForm(site.URL+"/_demo/revoke", url.Values{"contact": {"not-a-guid"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad id: %d, want 400", resp.StatusCode)
	}
}
