package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// The emulator's Entra ID endpoint as the replicas' identity provider.
const (
	extProvider = "microsoft"
	extClientID = "5c3f8e21-7a4d-4b9e-8f16-2d0c9a7e4b53"
	extSecret   = "bench-provider-secret-0123456789"
)

// extIdentityYAML is the identity.providers block for org's token service.
func extIdentityYAML(g *org) string {
	return fmt.Sprintf(`  providers:
    - name: %s
      display_name: Microsoft
      type: entra_id
      issuer: %q
      client_id: %q
      client_secret: %q
      ca_file: %q
`, extProvider, strings.TrimRight(g.OrgURL, "/")+"/"+g.TenantID+"/v2.0", extClientID, extSecret, g.CAFile)
}

type externalRaceResult struct {
	Racers         int         `json:"racers"`
	Replicas       int         `json:"replicas"`
	Accounts       int         `json:"accounts"` // callbacks answered with the redirect to /profile
	Statuses       map[int]int `json:"statuses"`
	Redemptions    int         `json:"adx_redemptions"`
	RedemptionRec  int         `json:"adx_inviteredemption_rows"`
	IdentityRows   int         `json:"adx_externalidentity_rows"`
	RowIssuer      string      `json:"row_identityprovidername"`
	Issuer         string      `json:"issuer"`
	RowBound       bool        `json:"row_bound_to_contact"`
	UsernameIsRow  bool        `json:"contact_username_is_row_username"`
	ContactHasHash bool        `json:"contact_has_password_hash"`
	Elapsed        string      `json:"elapsed"`
}

// chaosExternal redeems one single-use code with many different people at
// once through "Continue with Microsoft" (the emulator's Entra ID endpoint),
// over three replicas: exactly one account, one adx_externalidentity row.
func chaosExternal(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "external", Title: "Parallel external redemptions of one single-use code"}
	racers := 50
	if o.quick {
		racers = 20
	}
	res, err := runExternalRace(ctx, h, racers)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	sec.Columns = []string{"check", "expected", "got"}
	sec.row("callbacks that created an account (303 → /profile)", 1, res.Accounts)
	sec.row("adx_redemptions on the invitation", 1, res.Redemptions)
	sec.row("adx_inviteredemption activities", 1, res.RedemptionRec)
	sec.row("adx_externalidentity rows", 1, res.IdentityRows)
	sec.row("adx_identityprovidername", res.Issuer, res.RowIssuer)
	sec.check(res.Accounts == 1, "%d callbacks created an account, want exactly 1 (statuses %v)", res.Accounts, res.Statuses)
	sec.check(res.Redemptions == 1, "adx_redemptions = %d, want 1", res.Redemptions)
	sec.check(res.RedemptionRec == 1, "%d adx_inviteredemption rows, want 1", res.RedemptionRec)
	sec.check(res.IdentityRows == 1, "%d adx_externalidentity rows, want 1", res.IdentityRows)
	sec.check(res.RowIssuer == res.Issuer, "adx_identityprovidername %q, want the issuer %q", res.RowIssuer, res.Issuer)
	sec.check(res.RowBound, "the adx_externalidentity row is not bound to the invited contact")
	sec.check(res.UsernameIsRow, "the contact's adx_identity_username is not the row's adx_username")
	sec.check(!res.ContactHasHash, "the contact got a password hash")
	sec.note("%d browsers each opened the invitation link and pressed Continue with Microsoft, signed in as a different demo user at the emulator's Entra ID endpoint, then all came back to the callback at once, round-robin over %d replicas. Answers: %v (the losers see the \"already used\" page or are sent to sign in).", res.Racers, res.Replicas, res.Statuses)
	sec.Data = res
	return sec
}

var (
	stsRequestRe = regexp.MustCompile(`name="request" value="([^"]+)"`)
	stsActionRe  = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
)

func runExternalRace(ctx context.Context, h *harness, racers int) (*externalRaceResult, error) {
	st, err := h.stage("chaos-external")
	if err != nil {
		return nil, err
	}
	defer st.close()
	c, err := st.startCluster(ctx, clusterOptions{Replicas: 3, Config: connectorConfig{Redemptions: 10_000, CodeLookups: 10_000,
		Identity: extIdentityYAML}})
	if err != nil {
		return nil, err
	}
	sts := c.org.STS()
	sts.AddSecretClient(extClientID, extSecret)
	sts.AddRedirectURI(extClientID, strings.TrimRight(c.lb.URL, "/")+"/signin-oidc/"+extProvider)
	oids := make([]string, racers)
	for i := range oids {
		oids[i] = sts.AddDemoUser(fmt.Sprintf("Racer %02d", i), fmt.Sprintf("racer%02d@example.org", i), "")
	}
	cs, err := c.org.insertContacts("extrace", 1, nil)
	if err != nil {
		return nil, err
	}
	if err := c.org.click(ctx, cs[0].ID); err != nil {
		return nil, err
	}
	if _, err := c.org.waitSent(ctx, cs, time.Minute, nil); err != nil {
		return nil, err
	}
	code := invitationCodes(c.org.Outbox())[strings.ToLower(cs[0].Email)]
	idp := &http.Client{Transport: c.org.HTTPClient.Transport, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	browsers := make([]*browser, racers)
	callbacks := make([]string, racers)
	for i := range browsers {
		b := newBrowser(c.lb.URL, "")
		browsers[i] = b
		p, err := b.get("/invitation?code=" + url.QueryEscape(code))
		if err != nil || p.Status != http.StatusOK {
			return nil, fmt.Errorf("racer %d: invitation page: %v %s", i, err, statusOf(p))
		}
		form := url.Values{"csrf_token": {hidden(p.Body).Get("csrf_token")}, "intent": {"redeem"}}
		start, err := b.do(http.MethodPost, "/login/external/"+extProvider, form, nil)
		if err != nil || start.Status != http.StatusSeeOther {
			return nil, fmt.Errorf("racer %d: continue with Microsoft: %v %s", i, err, statusOf(start))
		}
		cb, err := pickDemoUser(idp, start.Location, oids[i])
		if err != nil {
			return nil, fmt.Errorf("racer %d: %w", i, err)
		}
		callbacks[i] = cb.RequestURI()
	}
	res := &externalRaceResult{Racers: racers, Replicas: len(c.replicas), Statuses: map[int]int{},
		Issuer: strings.TrimRight(c.org.OrgURL, "/") + "/" + c.org.TenantID + "/v2.0"}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	t0 := time.Now()
	for i, b := range browsers {
		wg.Go(func() {
			<-start
			p, err := b.get(callbacks[i])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Statuses[0]++
				return
			}
			res.Statuses[p.Status]++
			if p.Status == http.StatusSeeOther && p.Location == "/profile" {
				res.Accounts++
			}
		})
	}
	close(start)
	wg.Wait()
	res.Elapsed = time.Since(t0).Round(time.Millisecond).String()

	for _, inv := range c.org.Rows("adx_invitation") {
		if id, _ := inv["adx_invitecontact"].(string); id == cs[0].ID {
			res.Redemptions, _ = inv["adx_redemptions"].(int)
			invID, _ := inv["adx_invitationid"].(string)
			for _, r := range c.org.Rows("adx_inviteredemption") {
				if reg, _ := r["regardingobjectid"].(string); reg == invID {
					res.RedemptionRec++
				}
			}
		}
	}
	row, _ := c.org.Row("contact", cs[0].ID)
	rows := c.org.Rows("adx_externalidentity")
	res.IdentityRows = len(rows)
	if len(rows) == 1 {
		res.RowIssuer, _ = rows[0]["adx_identityprovidername"].(string)
		res.RowBound = rows[0]["adx_contactid"] == cs[0].ID
		res.UsernameIsRow = rows[0]["adx_username"] != nil && rows[0]["adx_username"] == row["adx_identity_username"]
	}
	res.ContactHasHash = row["adx_identity_passwordhash"] != nil
	return res, nil
}

// pickDemoUser opens the emulator's sign-in page at authURL, picks the
// demo user with object id oid, and returns where it sends the browser.
func pickDemoUser(idp *http.Client, authURL, oid string) (*url.URL, error) {
	resp, err := idp.Get(authURL)
	if err != nil {
		return nil, fmt.Errorf("sign-in page: %w", err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("sign-in page: %w", err)
	}
	body := string(raw)
	req, action := stsRequestRe.FindStringSubmatch(body), stsActionRe.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || req == nil || action == nil {
		return nil, fmt.Errorf("sign-in page: status %d", resp.StatusCode)
	}
	target, err := resp.Request.URL.Parse(html.UnescapeString(action[1]))
	if err != nil {
		return nil, err
	}
	post, err := idp.PostForm(target.String(), url.Values{"request": {html.UnescapeString(req[1])}, "user": {oid}})
	if err != nil {
		return nil, fmt.Errorf("pick account: %w", err)
	}
	post.Body.Close()
	loc, err := post.Location()
	if err != nil {
		return nil, fmt.Errorf("pick account: status %d: %w", post.StatusCode, err)
	}
	return loc, nil
}
