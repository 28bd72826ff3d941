package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/d365portal/connector/internal/dataverse/emulator"
)

type raceResult struct {
	Racers        int         `json:"racers"`
	Replicas      int         `json:"replicas"`
	Accounts      int         `json:"accounts"` // sign-ups answered with the redirect to /profile
	Statuses      map[int]int `json:"statuses"`
	Redemptions   int         `json:"adx_redemptions"`
	RedemptionRec int         `json:"adx_inviteredemption_rows"`
	Username      string      `json:"username_on_contact"`
	Redeemed      bool        `json:"contact_status_redeemed"`
	Elapsed       string      `json:"elapsed"`
}

// chaosRace signs up with one single-use code from many browsers at once,
// spread over three replicas: exactly one may win.
func chaosRace(ctx context.Context, h *harness, o options) (sec *Section) {
	sec = &Section{Name: "race", Title: "Parallel redemptions of one single-use code"}
	racers := 50
	if o.quick {
		racers = 20
	}
	res, err := runRace(ctx, h, racers)
	if err != nil {
		sec.Error = err.Error()
	}
	if res == nil {
		return sec
	}
	sec.Columns = []string{"check", "expected", "got"}
	sec.row("sign-ups that created an account (303 → /profile)", 1, res.Accounts)
	sec.row("adx_redemptions on the invitation", 1, res.Redemptions)
	sec.row("adx_inviteredemption activities", 1, res.RedemptionRec)
	sec.row("identity on the contact", "one of the racers", res.Username)
	sec.row("contact invite status", "Redeemed", map[bool]string{true: "Redeemed", false: "not Redeemed"}[res.Redeemed])
	sec.check(res.Accounts == 1, "%d sign-ups succeeded, want exactly 1 (statuses %v)", res.Accounts, res.Statuses)
	sec.check(res.Redemptions == 1, "adx_redemptions = %d, want 1", res.Redemptions)
	sec.check(res.RedemptionRec == 1, "%d adx_inviteredemption rows, want 1", res.RedemptionRec)
	sec.check(strings.HasPrefix(res.Username, "racer-"), "contact identity %q is not a racer's", res.Username)
	sec.check(res.Redeemed, "contact status is not Redeemed")
	sec.note("%d browsers each opened the invitation link (own session and CSRF token), then all posted the sign-up form at once with different user names, round-robin over %d replicas. Answers: %v (the losers see the \"already used\" page). The redemption rate limit was raised to let all of them reach the service.", res.Racers, res.Replicas, res.Statuses)
	sec.Data = res
	return sec
}

func runRace(ctx context.Context, h *harness, racers int) (*raceResult, error) {
	st, err := h.stage("chaos-race")
	if err != nil {
		return nil, err
	}
	defer st.close()
	c, err := st.startCluster(ctx, clusterOptions{Replicas: 3, Config: connectorConfig{Redemptions: 10_000, CodeLookups: 10_000}})
	if err != nil {
		return nil, err
	}
	cs, err := c.org.insertContacts("race", 1, nil)
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
	browsers := make([]*browser, racers)
	forms := make([]map[string][]string, racers)
	for i := range browsers {
		browsers[i] = newBrowser(c.lb.URL, "")
		p, err := browsers[i].get("/invitation?code=" + code)
		if err != nil || p.Status != http.StatusOK {
			return nil, fmt.Errorf("racer %d: invitation page: %v %s", i, err, statusOf(p))
		}
		f := hidden(p.Body)
		f.Set("username", fmt.Sprintf("racer-%02d", i))
		f.Set("password", benchPassword)
		f.Set("confirm_password", benchPassword)
		forms[i] = f
	}
	res := &raceResult{Racers: racers, Replicas: len(c.replicas), Statuses: map[int]int{}}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	t0 := time.Now()
	for i, b := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			p, err := b.do(http.MethodPost, "/invitation", forms[i], nil)
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
		}()
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
	res.Username, _ = row["adx_identity_username"].(string)
	res.Redeemed = row[emulator.ColInviteStatus] == emulator.InviteRedeemed
	return res, nil
}
