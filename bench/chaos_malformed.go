package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dataverse/emulator/webhook"
)

type malformedCase struct {
	Area     string `json:"area"`
	Name     string `json:"name"`
	Expected []int  `json:"expected"`
	Got      int    `json:"got"`
	OK       bool   `json:"ok"`
}

type malformedResult struct {
	Cases          []malformedCase `json:"cases"`
	WritesBefore   int             `json:"dataverse_writes_before"`
	WritesAfter    int             `json:"dataverse_writes_after"`
	QueuedBefore   int64           `json:"queue_entries_before"`
	QueuedAfter    int64           `json:"queue_entries_after"`
	Invitations    int             `json:"invitations"`
	TargetIdentity string          `json:"target_identity"`
	Redemptions    int             `json:"target_redemptions"`
}

// chaosMalformed sends a corpus of broken, oversized, unauthenticated and
// forged requests to the webhook and the site: each must get the right
// status, and nothing may be queued or written.
func chaosMalformed(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "malformed", Title: "Malformed and forged input"}
	res, err := runMalformed(ctx, h)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	sec.Columns = []string{"area", "input", "expected", "got", ""}
	for _, c := range res.Cases {
		mark := "ok"
		if !c.OK {
			mark = "**WRONG**"
		}
		exp := make([]string, len(c.Expected))
		for i, e := range c.Expected {
			exp[i] = fmt.Sprint(e)
		}
		sec.row(c.Area, c.Name, strings.Join(exp, " or "), c.Got, mark)
		sec.check(c.OK, "%s: %s: got %d, want %v", c.Area, c.Name, c.Got, c.Expected)
	}
	sec.row("after", "Dataverse writes by the connector during the corpus", 0, res.WritesAfter-res.WritesBefore, okMark(res.WritesAfter == res.WritesBefore))
	sec.row("after", "queue entries and dedupe keys added", 0, res.QueuedAfter-res.QueuedBefore, okMark(res.QueuedAfter == res.QueuedBefore))
	sec.row("after", "invitations for the webhook bodies' contact", 0, res.Invitations, okMark(res.Invitations == 0))
	sec.row("after", "identity on the site invitee / its invitation's redemptions", "none / 0", fmt.Sprintf("%q / %d", res.TargetIdentity, res.Redemptions), okMark(res.TargetIdentity == "" && res.Redemptions == 0))
	sec.check(res.WritesAfter == res.WritesBefore, "%d Dataverse writes during the corpus", res.WritesAfter-res.WritesBefore)
	sec.check(res.QueuedAfter == res.QueuedBefore, "%d queue entries or dedupe keys added", res.QueuedAfter-res.QueuedBefore)
	sec.check(res.Invitations == 0, "%d invitations created from webhook bodies that should have been refused", res.Invitations)
	sec.check(res.TargetIdentity == "" && res.Redemptions == 0, "the site invitee's invitation was redeemed")
	sec.note("Webhook bodies are built from the emulator's RemoteExecutionContext encoder for a contact whose status in Dataverse is Requested, so any body wrongly accepted would end in an invitation. Site requests target a real, unredeemed invitation and a signed-in session.")
	sec.Data = res
	return sec
}

func okMark(ok bool) string {
	if ok {
		return "ok"
	}
	return "**WRONG**"
}

func runMalformed(ctx context.Context, h *harness) (*malformedResult, error) {
	st, err := h.stage("chaos-malformed")
	if err != nil {
		return nil, err
	}
	defer st.close()
	c, err := st.startCluster(ctx, clusterOptions{
		Emulator: emulator.Options{RequestLogSize: 1 << 16},
		Config:   connectorConfig{CodeLookups: 1000, Redemptions: 1000},
	})
	if err != nil {
		return nil, err
	}
	g, rep := c.org, c.replicas[0]
	// target: Requested in Dataverse, never clicked (no webhook fired), so
	// only a wrongly accepted webhook body could invite it.
	target, err := g.insertContacts("malformed-target", 1, map[string]any{
		emulator.ColInviteStatus: emulator.InviteRequested, emulator.ColInvitePortal: partnerPortal,
	})
	if err != nil {
		return nil, err
	}
	// invitee has a real invitation to attack; member is signed in.
	others, err := g.insertContacts("malformed", 2, nil)
	if err != nil {
		return nil, err
	}
	if _, err := g.clickAll(ctx, others, 2, 0); err != nil {
		return nil, err
	}
	if _, err := g.waitSent(ctx, others, time.Minute, nil); err != nil {
		return nil, err
	}
	codes := invitationCodes(g.Outbox())
	inviteeCode := codes[strings.ToLower(others[0].Email)]
	member := newBrowser(rep.URL, "")
	if p, err := member.redeem(codes[strings.ToLower(others[1].Email)], "member@example.test", benchPassword); err != nil || p.Status != http.StatusSeeOther {
		return nil, fmt.Errorf("member sign-up: %v %s", err, statusOf(p))
	}
	profile, err := member.get("/profile")
	if err != nil || profile.Status != http.StatusOK {
		return nil, fmt.Errorf("member profile: %v %s", err, statusOf(profile))
	}
	memberCSRF := hidden(profile.Body).Get("csrf_token")
	settle(g, emulator.AppUserID)
	time.Sleep(500 * time.Millisecond) // the member's sign-up webhook (status Redeemed) is answered and ignored

	rdb := c.redis.client()
	defer rdb.Close()
	queued := func() int64 {
		n, _ := rdb.XLen(ctx, "pinv:intake:stream").Result()
		d, _ := rdb.XLen(ctx, "pinv:intake:dead").Result()
		r, _ := rdb.ZCard(ctx, "pinv:intake:retry").Result()
		keys, _ := rdb.Keys(ctx, "pinv:intake:dedupe:*").Result()
		return n + d + r + int64(len(keys))
	}
	writes := func() int {
		n := 0
		for _, l := range g.RequestLog() {
			if l.Caller == emulator.AppUserID && l.Method != http.MethodGet && l.Route != "sts" && !(l.Route == "$batch" && !l.InBatch) {
				n++
			}
		}
		return n
	}
	res := &malformedResult{WritesBefore: writes(), QueuedBefore: queued()}

	raw := func(method, u string, hdr http.Header, body []byte) int {
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
		if err != nil {
			return -1
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := (&http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	add := func(area, name string, got int, want ...int) {
		res.Cases = append(res.Cases, malformedCase{Area: area, Name: name, Expected: want, Got: got, OK: slices.Contains(want, got)})
	}

	// --- webhook -------------------------------------------------------------
	hookURL := rep.URL + webhookPath + "?code=" + url.QueryEscape(webhookKey)
	jsonHdr := http.Header{"Content-Type": {"application/json"}}
	body := func(mut func(*webhook.Context)) []byte {
		wc := webhook.Context{
			MessageName: "Update", PrimaryEntityName: "contact", PrimaryEntityID: target[0].ID,
			InitiatingUserID: emulator.DemoAdminUserID, UserID: emulator.DemoAdminUserID,
			OrganizationID: emulator.OrganizationID, OrganizationName: emulator.OrganizationName, BusinessUnitID: emulator.BusinessUnitID,
			CorrelationID: "11111111-2222-4333-8444-555555555555", OperationID: "66666666-7777-4888-8999-000000000000",
			OperationCreatedOn: time.Now(), Depth: 1, Mode: 1, Stage: 40,
			Target: &webhook.Entity{LogicalName: "contact", ID: target[0].ID, Attributes: map[string]any{
				"contactid":              target[0].ID,
				emulator.ColInviteStatus: webhook.OptionSetValue(emulator.InviteRequested),
				emulator.ColInvitePortal: partnerPortal,
			}},
		}
		if mut != nil {
			mut(&wc)
		}
		b, err := webhook.Encode(wc)
		if err != nil {
			panic(err) // a bug in this file
		}
		return b
	}
	valid := body(nil)
	post := func(u string, hdr http.Header, b []byte) int { return raw(http.MethodPost, u, hdr, b) }
	add("webhook", "no credentials", post(rep.URL+webhookPath, jsonHdr, valid), 401)
	add("webhook", "wrong key", post(rep.URL+webhookPath+"?code=not-the-key", jsonHdr, valid), 401)
	add("webhook", "key sent as a header, not the query", post(rep.URL+webhookPath, http.Header{"Content-Type": {"application/json"}, "X-Code": {webhookKey}}, valid), 401)
	add("webhook", "GET instead of POST", raw(http.MethodGet, hookURL, nil, nil), 405)
	add("webhook", "empty body", post(hookURL, jsonHdr, nil), 400)
	add("webhook", "not JSON", post(hookURL, jsonHdr, []byte("Hello, webhook")), 400)
	add("webhook", "truncated JSON", post(hookURL, jsonHdr, valid[:len(valid)/2]), 400)
	add("webhook", "JSON array", post(hookURL, jsonHdr, []byte("[]")), 400)
	add("webhook", "JSON null", post(hookURL, jsonHdr, []byte("null")), 400)
	add("webhook", "a second object after the context", post(hookURL, jsonHdr, append(slices.Clone(valid), []byte(`{"x":1}`)...)), 400)
	add("webhook", "PrimaryEntityId not a GUID", post(hookURL, jsonHdr, bytes.Replace(valid, []byte(`"PrimaryEntityId":"`+target[0].ID), []byte(`"PrimaryEntityId":"not-a-guid`), 1)), 400)
	add("webhook", "Depth as a string", post(hookURL, jsonHdr, bytes.Replace(valid, []byte(`"Depth":1`), []byte(`"Depth":"one"`), 1)), 400)
	add("webhook", "invalid UTF-8 in a string (OrganizationName)", post(hookURL, jsonHdr, bytes.Replace(valid,
		[]byte(`"OrganizationName":"`+emulator.OrganizationName+`"`), []byte("\"OrganizationName\":\"con\xff\xfetoso\""), 1)), 400)
	add("webhook", "100,000 nested arrays", post(hookURL, jsonHdr, []byte(strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000))), 400)
	add("webhook", "2 MiB body (limit 1 MiB)", post(hookURL, jsonHdr, append(bytes.Repeat([]byte(" "), 2<<20), valid...)), 413)
	add("webhook", "contact event without any contact id", post(hookURL, jsonHdr, body(func(w *webhook.Context) {
		w.PrimaryEntityID = ""
		w.Target.ID = ""
		delete(w.Target.Attributes, "contactid")
	})), 400)
	add("webhook", "well-formed, an account (ignored)", post(hookURL, jsonHdr, body(func(w *webhook.Context) {
		w.PrimaryEntityName, w.Target.LogicalName = "account", "account"
	})), 200)
	add("webhook", "well-formed, status Sent (ignored)", post(hookURL, jsonHdr, body(func(w *webhook.Context) {
		w.Target.Attributes[emulator.ColInviteStatus] = webhook.OptionSetValue(emulator.InviteSent)
	})), 200)
	add("webhook", "well-formed, Delete message (ignored)", post(hookURL, jsonHdr, body(func(w *webhook.Context) {
		w.MessageName = "Delete"
	})), 200)

	// --- site ----------------------------------------------------------------
	form := func(b *browser) (url.Values, error) {
		p, err := b.get("/invitation?code=" + url.QueryEscape(inviteeCode))
		if err != nil || p.Status != http.StatusOK {
			return nil, fmt.Errorf("invitation page: %v %s", err, statusOf(p))
		}
		f := hidden(p.Body)
		f.Set("username", "intruder@example.test")
		f.Set("password", benchPassword)
		f.Set("confirm_password", benchPassword)
		return f, nil
	}
	postStatus := func(b *browser, path string, f url.Values, hdr http.Header) int {
		p, err := b.do(http.MethodPost, path, f, hdr)
		if err != nil {
			return 0
		}
		return p.Status
	}
	b1 := newBrowser(rep.URL, "")
	f1, err := form(b1)
	if err != nil {
		return nil, err
	}
	noToken := cloneValues(f1)
	noToken.Del("csrf_token")
	add("site", "sign-up without the CSRF token", postStatus(b1, "/invitation", noToken, nil), 403)
	wrong := cloneValues(f1)
	wrong.Set("csrf_token", strings.Repeat("A", len(f1.Get("csrf_token"))))
	add("site", "sign-up with a wrong CSRF token", postStatus(b1, "/invitation", wrong, nil), 403)
	add("site", "sign-up posted from another site", postStatus(b1, "/invitation", f1,
		http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}), 403)
	add("site", "sign-up with a token but no session cookie", postStatus(newBrowser(rep.URL, ""), "/invitation", f1, nil), 403)
	add("site", "sign-in without the CSRF token", postStatus(newBrowser(rep.URL, ""), "/login",
		url.Values{"username": {"member@example.test"}, "password": {benchPassword}}, nil), 403)
	add("site", "sign-up as JSON instead of a form", func() int {
		return raw(http.MethodPost, rep.URL+"/invitation", http.Header{"Content-Type": {"application/json"}, "Cookie": b1.cookieHeader()},
			[]byte(`{"code":"`+inviteeCode+`","csrf_token":"`+f1.Get("csrf_token")+`"}`))
	}(), 415)
	big := cloneValues(f1)
	big.Set("padding", strings.Repeat("x", 128<<10))
	add("site", "128 KiB form (limit 64 KiB)", postStatus(b1, "/invitation", big, nil), 413)
	utf := cloneValues(f1)
	utf.Set("username", "intruder\xff\xfe@example.test")
	add("site", "invalid UTF-8 in the user name", postStatus(b1, "/invitation", utf, nil), 400, 422)
	add("site", "invalid UTF-8 in the code", raw(http.MethodGet, rep.URL+"/invitation?code=%FF%FE%FD", nil, nil), 404)
	add("site", "10,000-character code", raw(http.MethodGet, rep.URL+"/invitation?code="+strings.Repeat("A", 10_000), nil, nil), 404)

	tamperedCookie := member.tamperedCookie()
	add("site", "tampered session cookie → /profile", raw(http.MethodGet, rep.URL+"/profile", http.Header{"Cookie": {tamperedCookie}}, nil), 303)
	add("site", "forged session id → /profile", raw(http.MethodGet, rep.URL+"/profile", http.Header{"Cookie": {"session=" + strings.Repeat("Zm9v", 11)}}, nil), 303)
	add("site", "tampered session cookie + real CSRF token → POST /profile", raw(http.MethodPost, rep.URL+"/profile",
		http.Header{"Cookie": {tamperedCookie}, "Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {rep.URL}},
		[]byte(url.Values{"csrf_token": {memberCSRF}, "firstname": {"Mallory"}}.Encode())), 403)

	time.Sleep(time.Second) // anything wrongly queued would be picked up by now
	settle(g, emulator.AppUserID)
	res.WritesAfter, res.QueuedAfter = writes(), queued()
	row, _ := g.Row("contact", others[0].ID)
	res.TargetIdentity, _ = row["adx_identity_username"].(string)
	for _, inv := range g.Rows("adx_invitation") {
		if id, _ := inv["adx_invitecontact"].(string); id == others[0].ID {
			res.Redemptions, _ = inv["adx_redemptions"].(int)
		}
		if id, _ := inv["adx_invitecontact"].(string); id == target[0].ID {
			res.Invitations++
		}
	}
	return res, nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// cookieHeader is the browser's cookies for the site as a Cookie header.
func (b *browser) cookieHeader() []string {
	u, _ := url.Parse(b.base)
	var parts []string
	for _, ck := range b.c.Jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return []string{strings.Join(parts, "; ")}
}

// tamperedCookie is the browser's session cookie with one character of its
// value changed.
func (b *browser) tamperedCookie() string {
	u, _ := url.Parse(b.base)
	for _, ck := range b.c.Jar.Cookies(u) {
		if ck.Name == "session" && ck.Value != "" {
			v := []byte(ck.Value)
			i := len(v) / 2
			if v[i] == 'A' {
				v[i] = 'B'
			} else {
				v[i] = 'A'
			}
			return ck.Name + "=" + string(v)
		}
	}
	return "session=missing"
}
