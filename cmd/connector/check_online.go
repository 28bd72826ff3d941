package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/redis/go-redis/v9"

	"github.com/d365portal/connector/internal/config"
	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/redisconn"
	intake "github.com/d365portal/connector/internal/sync"
)

// checklist prints ✓/✗ lines with what to do about each ✗.
type checklist struct {
	w      io.Writer
	failed int
}

func (c *checklist) ok(format string, args ...any) {
	fmt.Fprintf(c.w, "✓ %s\n", fmt.Sprintf(format, args...))
}

func (c *checklist) fail(fix, format string, args ...any) {
	c.failed++
	fmt.Fprintf(c.w, "✗ %s\n    → %s\n", fmt.Sprintf(format, args...), fix)
}

// checkOnline verifies everything the connector needs from Redis and
// Dataverse, continuing past failures so one run lists every problem.
func checkOnline(ctx context.Context, e env, c *config.Config) int {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cl := &checklist{w: e.Stdout}
	cl.ok("configuration %s is valid (%d portal(s))", c.Path, len(c.Portals))
	log := newLogger(config.Log{Level: "error", Format: "text"}, e.Stderr)

	checkRedis(ctx, cl, c)
	checkProviders(ctx, cl, c)

	hc, err := dataverse.NewHTTPClient(c.Dataverse.CAFile)
	if err != nil {
		cl.fail("fix dataverse.ca_file", "Dataverse CA file: %v", err)
		return exitFail
	}
	cred, err := dataverse.NewCredential(authConfig(c), hc)
	if err == nil {
		_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{strings.TrimRight(c.Dataverse.URL, "/") + "/.default"}})
	}
	if err != nil {
		cl.fail("check dataverse.auth (tenant, client id, secret or certificate) and the app registration", "Entra ID token for %s: %s", c.Dataverse.URL, firstLine(err))
		return summary(cl, e)
	}
	cl.ok("Entra ID token for %s", c.Dataverse.URL)

	dv, err := newDataverse(c, log, noHooks)
	if err != nil {
		cl.fail("fix the dataverse settings", "Dataverse client: %v", err)
		return summary(cl, e)
	}
	who, err := dv.WhoAmI(ctx)
	if err != nil {
		cl.fail("create an application user for the app registration in the environment and give it the connector's security role (docs/ADMIN.md)", "WhoAmI: %s", firstLine(err))
		return summary(cl, e)
	}
	cl.ok("WhoAmI: application user %s", who.UserID)

	cols := contactColumns(c)
	colNames := []string{cols.Status, cols.Portal, cols.Roles, cols.InvitedOn, cols.Error}
	if _, err := dv.QueryPage(ctx, "contacts", &dataverse.Query{Select: colNames, Top: 1}, ""); err != nil {
		cl.fail("import the solution (connector solution pack) or set intake.contact.* to your columns", "contact invite columns %s: %s", strings.Join(colNames, ", "), firstLine(err))
	} else {
		cl.ok("contact has the invite columns %s", strings.Join(colNames, ", "))
	}

	ic, err := inviteConfig(c, log, nil)
	var svc *invite.Service
	if err == nil {
		svc, err = invite.New(dv, ic)
	}
	if err != nil {
		cl.fail("fix the portals section", "portals: %v", err)
		return summary(cl, e)
	}
	for _, p := range c.Portals {
		roles := slices.Compact(slices.Sorted(slices.Values(append(append([]string(nil), p.DefaultRoles...), p.Roles...))))
		pc, err := svc.CheckPortal(ctx, p.Name, roles)
		if err != nil {
			cl.fail("see the error; check the application user's privileges", "portal %q: %s", p.Name, firstLine(err))
			continue
		}
		switch {
		case pc.DetectedModel == "":
			cl.fail("set website_id to the id of the powerpagesite (enhanced) or adx_website (standard)", "portal %q: website %s not found", p.Name, p.WebsiteID)
		case pc.DetectedModel != pc.ConfiguredModel:
			cl.fail(fmt.Sprintf("set data_model: %s for this portal", pc.DetectedModel), "portal %q: website %s uses the %s data model, configured %s", p.Name, p.WebsiteID, pc.DetectedModel, pc.ConfiguredModel)
		default:
			cl.ok("portal %q: website %s (%s data model)", p.Name, p.WebsiteID, pc.DetectedModel)
			if len(pc.MissingRoles) > 0 {
				cl.fail("create the web roles on the site or fix default_roles/roles", "portal %q: web role(s) %s not found on the website", p.Name, strings.Join(pc.MissingRoles, ", "))
			} else {
				cl.ok("portal %q: web roles %s", p.Name, strings.Join(roles, ", "))
			}
		}
		if pc.SenderChecked {
			if pc.SenderFound {
				cl.ok("portal %q: email sender %s", p.Name, p.Email.Sender)
			} else {
				cl.fail("set email.sender to an existing systemuser or queue with an approved mailbox", "portal %q: email sender %s not found", p.Name, p.Email.Sender)
			}
		}
	}

	checkMailboxes(ctx, cl, c, dv)

	if c.Intake.Webhook.Enabled {
		checkWebhook(ctx, cl, c, dv)
	}
	return summary(cl, e)
}

func checkWebhook(ctx context.Context, cl *checklist, c *config.Config, dv *dataverse.Client) {
	hookURL, err := intake.WebhookURL(c.Server.PublicURL, c.Intake.Webhook.Path)
	if err != nil {
		cl.fail("fix server.public_url", "webhook URL: %v", err)
		return
	}
	reg, err := intake.RegisterWebhook(ctx, dv, webhookOptions(c, hookURL, true, io.Discard))
	if err != nil {
		cl.fail("see the error; check the application user's privileges on serviceendpoint and sdkmessageprocessingstep", "webhook registration: %s", firstLine(err))
		return
	}
	var pending []string
	for _, ch := range reg.Changes {
		if strings.HasPrefix(ch, "would create") {
			pending = append(pending, strings.TrimPrefix(ch, "would "))
		}
	}
	if reg.ServiceEndpointID == "" || len(pending) > 0 {
		cl.fail("run: connector webhook register --config "+c.Path, "webhook to %s is not registered (%s)", hookURL, strings.Join(pending, "; "))
		return
	}
	cl.ok("webhook registered: %s (%d steps)", hookURL, len(reg.Steps))
}

func webhookOptions(c *config.Config, url string, dry bool, out io.Writer) intake.RegisterOptions {
	a := c.Intake.Webhook.Auth
	return intake.RegisterOptions{URL: url, AuthType: a.Type, AuthName: a.Name, AuthValue: a.Value, Contact: contactColumns(c), DryRun: dry, Out: out,
		FollowEmails: true}
}

func summary(cl *checklist, e env) int {
	if cl.failed > 0 {
		fmt.Fprintf(e.Stdout, "\n%d problem(s) found.\n", cl.failed)
		return exitFail
	}
	fmt.Fprintln(e.Stdout, "\nAll checks passed.")
	return exitOK
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// checkRedis pings Redis through the client serve would build and, with
// redis.sentinel, asks every sentinel for the primary, naming each that does
// not answer.
func checkRedis(ctx context.Context, cl *checklist, c *config.Config) {
	if c.Redis.Sentinel.Enabled() {
		if sc, err := newSentinelChecker(c); err != nil {
			cl.fail("fix redis.sentinel", "Redis Sentinel: %v", err)
		} else {
			defer sc.Close()
			for _, st := range sc.Check(ctx) {
				if st.Err != nil {
					cl.fail("check that this sentinel runs, is reachable from here and monitors redis.sentinel.master_name (and redis.sentinel.password)",
						"sentinel %s does not answer: %v", st.Addr, st.Err)
				} else {
					cl.ok("sentinel %s names %s as primary of %q", st.Addr, st.Primary, c.Redis.Sentinel.MasterName)
				}
			}
		}
	}
	var tlsErr *redisconn.TLSError
	rdb, err := newRedis(c)
	if err == nil {
		defer rdb.Close()
		err = pingRedis(ctx, rdb)
	}
	tlsOn := strings.HasPrefix(c.Redis.URL, "rediss://") || c.Redis.CAFile != "" || c.Redis.CertFile != ""
	over := ""
	if tlsOn {
		over = " over TLS"
	}
	switch {
	case errors.As(err, &tlsErr):
		cl.fail("fix redis.ca_file (the CA that signed the server's certificate), the host name, or redis.cert_file/redis.key_file", "Redis: %v", err)
	case err != nil && c.Redis.Sentinel.Enabled():
		cl.fail("check redis.sentinel and that a primary is up (the sentinels name it)", "Redis primary of %q through Sentinel: %v", c.Redis.Sentinel.MasterName, err)
	case err != nil:
		cl.fail("check redis.url and that Redis is running and reachable from here", "Redis: %v", err)
	case c.Redis.Sentinel.Enabled():
		cl.ok("Redis primary of %q found through Sentinel and answers%s", c.Redis.Sentinel.MasterName, over)
	default:
		cl.ok("Redis answers at %s%s", redactedRedis(c.Redis.URL), over)
	}
	if err != nil || c.Redis.MinAckedReplicas <= 0 {
		return
	}
	// The same WAIT an accepted webhook waits for.
	want, timeout := c.Redis.MinAckedReplicas, c.Redis.AckTimeout.D()
	got, err := redisconn.WriteAcked(ctx, rdb, want, timeout, func(p redis.Pipeliner) error {
		p.Set(ctx, c.Redis.KeyPrefix+"check:wait", "1", time.Minute)
		return nil
	})
	switch {
	case err != nil:
		cl.fail("see the error", "Redis WAIT for redis.min_acked_replicas: %v", err)
	case got < want:
		cl.fail("add replicas or lower redis.min_acked_replicas; meanwhile every webhook is answered 503",
			"Redis: a write reached %d of the %d replicas redis.min_acked_replicas asks for within %s", got, want, timeout)
	default:
		cl.ok("Redis: a write reached %d replica(s) within %s (redis.min_acked_replicas %d)", got, timeout, want)
	}
}

func redactedRedis(u string) string {
	c := &config.Config{Redis: config.Redis{URL: u}}
	return c.Redacted().Redis.URL
}
