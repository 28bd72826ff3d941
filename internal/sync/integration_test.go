package sync

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/dataverse/emulator/throttle"
	"github.com/d365portal/connector/internal/delivery"
	"github.com/d365portal/connector/internal/invite"
	"github.com/d365portal/connector/internal/redistest"
	"github.com/d365portal/connector/internal/telemetry"
)

const (
	itPortal = "Contoso Partner Portal"
	itSecret = "it-webhook-key"
	itPrefix = "it:"
)

type clusterOpts struct {
	contacts  int
	instances int
	workers   int
	webhooks  bool    // register the webhook and route deliveries to the instances
	duplicate float64 // probability a delivery is sent twice
	poll      string  // cron schedule; "" = polling off
	faults    emulator.FaultOptions
	latency   time.Duration
	limits    throttle.Limits
	lease     time.Duration

	// Delivery following: the email step registered, a follower per
	// replica, the emulator's server-side sync shaped by emailSync.
	follow       bool
	emailSync    emulator.EmailSyncOptions
	pendingAlert time.Duration // default 30m
	recheck      time.Duration // delivery poll re-check; default 1m
	dropEmails   bool          // the load balancer loses every email webhook

	// Pacing: each portal's senders, and the clock of the pacer and the
	// intake (a scaled one, like the emulator's mailbox limits).
	pace  map[string][]delivery.Sender
	now   func() time.Time
	guard time.Duration // delivery.PacerOptions.Guard, on the scaled clock

	// tracing, when set, traces every replica and its Dataverse client.
	tracing trace.TracerProvider
}

// cluster is the emulator, one redis-server and several Intake instances as
// separate replicas: each has its own Redis client, Web API client and
// invite.Service, sharing only Redis and Dataverse.
type cluster struct {
	t        testing.TB
	o        clusterOpts
	em       *emulator.Running
	redis    *redistest.Server
	admin    *dataverse.Client // the "CRM user" flagging contacts, and registration
	router   *httptest.Server
	insts    []*instance
	contacts []string // contact ids, in order
	emails   map[string]string

	rr        atomic.Uint64
	firstPost stdsync.Map  // contact id -> time the first webhook POST for it arrived
	outcomes  stdsync.Map  // webhook outcome -> *atomic.Int64
	sources   stdsync.Map  // enqueue source -> *atomic.Int64 (enqueued only)
	emailHook atomic.Int64 // email webhook deliveries seen by the load balancer
}

type instance struct {
	name   string
	intake *Intake
	rdb    redis.UniversalClient
	cancel context.CancelFunc
	dead   atomic.Bool
}

func counter(m *stdsync.Map, key string) *atomic.Int64 {
	v, _ := m.LoadOrStore(key, new(atomic.Int64))
	return v.(*atomic.Int64)
}

func newCluster(t testing.TB, o clusterOpts) *cluster {
	t.Helper()
	if o.lease == 0 {
		o.lease = time.Second
	}
	c := &cluster{t: t, o: o, emails: map[string]string{}}
	c.redis = redistest.Start(t)
	em, err := emulator.Start(emulator.Options{
		Auth: emulator.AuthOptions{Disabled: true}, Faults: o.faults, Latency: o.latency, Limits: o.limits,
		Webhooks:  emulator.WebhookOptions{Duplicate: o.duplicate, Timeout: 30 * time.Second},
		EmailSync: o.emailSync,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.em = em
	t.Cleanup(func() { _ = em.Close() })
	if _, err := emulator.SeedDemo(em.Server); err != nil {
		t.Fatal(err)
	}
	for n := range o.contacts {
		email := fmt.Sprintf("invitee%04d@example.com", n)
		id, err := em.Insert("contact", map[string]any{
			"firstname": "Invitee", "lastname": fmt.Sprintf("No%04d", n), "emailaddress1": email,
		})
		if err != nil {
			t.Fatal(err)
		}
		c.contacts = append(c.contacts, id)
		c.emails[strings.ToLower(email)] = id
	}
	c.admin = c.client(2 * time.Millisecond)

	c.router = httptest.NewServer(http.HandlerFunc(c.route))
	t.Cleanup(c.router.Close)
	if o.webhooks {
		url, err := WebhookURL(c.router.URL, "/hooks/dataverse")
		if err != nil {
			t.Fatal(err)
		}
		reg, err := RegisterWebhook(context.Background(), c.admin, RegisterOptions{
			URL: url, AuthType: AuthWebhookKey, AuthValue: itSecret, Contact: testCols, FollowEmails: o.follow,
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{false: 2, true: 3}[o.follow]; len(reg.Steps) != want {
			t.Fatalf("registration %+v, want %d steps", reg, want)
		}
	}
	for n := range o.instances {
		c.insts = append(c.insts, c.startInstance(fmt.Sprintf("replica-%d", n)))
	}
	t.Cleanup(func() {
		for _, in := range c.insts {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = in.intake.Shutdown(ctx)
			cancel()
			in.cancel()
		}
	})
	return c
}

func (c *cluster) client(retryDelay time.Duration) *dataverse.Client {
	// The pacer must know the (scaled) service-protection window.
	opts := &dataverse.Options{
		HTTPClient: c.em.HTTPClient, RetryDelay: retryDelay, MaxRetryDelay: 50 * time.Millisecond,
		RateLimitWindow: c.o.limits.Window,
	}
	if c.o.tracing != nil {
		hc := *c.em.HTTPClient
		hc.Transport = telemetry.NewTransport(hc.Transport, c.o.tracing, telemetry.Propagator())
		opts.HTTPClient = &hc
		opts.Hooks.OnWait = func(ctx context.Context, ri dataverse.RequestInfo, d time.Duration) {
			telemetry.RecordRetry(ctx, ri.Attempt, d, ri.StatusCode)
		}
	}
	dv, err := dataverse.New(dataverse.Config{URL: c.em.OrgURL, MaxRetries: 8}, nil, opts)
	if err != nil {
		c.t.Fatal(err)
	}
	return dv
}

func (c *cluster) startInstance(name string) *instance {
	t := c.t
	rdb := c.redis.Client(t)
	dv := c.client(2 * time.Millisecond)
	svc, err := invite.New(dv, invite.Config{
		Portals: []invite.Portal{{
			Name: itPortal, WebsiteID: emulator.DemoSiteID, BaseURL: "https://partners.contoso.example/",
			DefaultRoles: []string{"Partners"}, Email: invite.EmailSettings{Sender: "systemuser:" + emulator.DemoMailerUserID},
		}},
		Contact: testCols, PasswordHash: invite.HashAspNetV2, Locker: NewLocker(rdb, itPrefix), Superseded: NewSuperseded(rdb, itPrefix),
		Logger: testLogger(t).With("instance", name, "component", "invite"),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Redis: rdb, KeyPrefix: itPrefix, Invites: svc, Dataverse: dv, Contact: testCols, DefaultPortal: itPortal,
		Webhook: WebhookConfig{Enabled: true, AuthType: AuthWebhookKey, AuthValue: itSecret},
		Workers: c.o.workers, MaxAttempts: 10, Lease: c.o.lease,
		RetryDelay: 20 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond,
		Consumer: name, Logger: testLogger(t).With("instance", name), Tracing: c.o.tracing,
		Hooks: Hooks{
			Webhook: func(o string) { counter(&c.outcomes, o).Add(1) },
			Enqueue: func(src string, ok bool) {
				if ok {
					counter(&c.sources, src).Add(1)
				}
			},
		},
	}
	if c.o.poll != "" {
		cfg.Poll = PollConfig{Enabled: true, Schedule: c.o.poll}
	}
	if c.o.follow {
		alert := c.o.pendingAlert
		if alert == 0 {
			alert = 30 * time.Minute
		}
		cfg.Deliveries, err = NewDeliveries(svc, delivery.FollowerConfig{
			Dataverse: dv, PendingAlertAfter: func(string) time.Duration { return alert },
			Logger: testLogger(t).With("instance", name, "component", "delivery"),
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg.DeliveryRecheck = c.o.recheck
	}
	if c.o.pace != nil {
		cfg.Pacer = delivery.NewPortalPacer(delivery.NewPacer(rdb, &delivery.PacerOptions{KeyPrefix: itPrefix, Clock: c.o.now, Guard: c.o.guard}), c.o.pace)
		cfg.Now = c.o.now
	}
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := in.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return &instance{name: name, intake: in, rdb: rdb, cancel: cancel}
}

// route is the load balancer in front of the replicas: round-robin over the
// live ones. It notes when the first delivery for each contact arrived.
func (c *cluster) route(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if rc, err := ParseContext(body); err == nil && rc.PrimaryEntityName == "email" {
		c.emailHook.Add(1)
		if c.o.dropEmails {
			w.WriteHeader(http.StatusOK) // lost on the way: Dataverse thinks it was delivered
			return
		}
	}
	if rc, err := ParseContext(body); err == nil && rc.PrimaryEntityID != "" {
		if v, ok := rc.Target().Attr(testCols.Status); ok {
			if st, _ := intValue(v); st == testCols.Requested {
				c.firstPost.LoadOrStore(rc.PrimaryEntityID, time.Now())
			}
		}
	}
	for range len(c.insts) {
		in := c.insts[c.rr.Add(1)%uint64(len(c.insts))]
		if in.dead.Load() {
			continue
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		in.intake.WebhookHandler().ServeHTTP(w, r)
		return
	}
	http.Error(w, "no replica", http.StatusBadGateway)
}

// kill stops an instance abruptly, as a SIGKILL would: no Shutdown, the
// load balancer stops sending to it, its pending messages stay behind.
func (c *cluster) kill(in *instance) {
	in.dead.Store(true)
	in.cancel()
}

// flag sets the contacts' invite status to Requested through the Web API,
// as the "Invite to portal" button does, so webhooks fire.
func (c *cluster) flag(ctx context.Context, ids []string, par int) error {
	ch := make(chan string)
	errs := make(chan error, par)
	var wg stdsync.WaitGroup
	for range par {
		wg.Go(func() {
			for id := range ch {
				_, err := c.admin.Update(ctx, "contacts", id, map[string]any{
					testCols.Status: testCols.Requested, testCols.Portal: itPortal, testCols.Roles: "Partners",
				}, nil)
				if err != nil {
					errs <- fmt.Errorf("flag %s: %w", id, err)
					return
				}
			}
		})
	}
	for _, id := range ids {
		ch <- id
	}
	close(ch)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// pendingOf counts the messages delivered to in and not acknowledged.
func (c *cluster) pendingOf(in *instance) int {
	p, err := in.rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{
		Stream: in.intake.keys.stream, Group: groupName, Start: "-", End: "+", Count: 1000, Consumer: in.name,
	}).Result()
	if err != nil {
		return 0
	}
	return len(p)
}

// status is the contact's invite status in the emulator.
func (c *cluster) status(id string) int {
	row, ok := c.em.Row("contact", id)
	if !ok {
		return -1
	}
	n, _ := intValue(row[testCols.Status])
	if v, ok := row[testCols.Status].(int); ok {
		n = v
	}
	return n
}

func (c *cluster) sentCount(ids []string) int {
	n := 0
	for _, id := range ids {
		if c.status(id) == testCols.Sent {
			n++
		}
	}
	return n
}

func (c *cluster) live() *Intake {
	for _, in := range c.insts {
		if !in.dead.Load() {
			return in.intake
		}
	}
	c.t.Fatal("no live instance")
	return nil
}

// waitDrained waits until every contact is Sent and the queue is empty.
func (c *cluster) waitDrained(ids []string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		s, err := c.live().Stats(context.Background())
		sent := c.sentCount(ids)
		if err == nil && sent == len(ids) && s.Depth == 0 && s.Pending == 0 && s.Retrying == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("not drained after %v: %d/%d sent, queue %+v (%v)", d, sent, len(ids), s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// invitationsPer counts adx_invitation rows per invited contact.
func (c *cluster) invitationsPer() map[string]int {
	out := map[string]int{}
	for _, r := range c.em.Rows("adx_invitation") {
		id, _ := r["adx_invitecontact"].(string)
		out[strings.ToLower(id)]++
	}
	return out
}

// emailsPer counts sent emails per contact (by recipient address).
func (c *cluster) emailsPer() (map[string]int, int) {
	out := map[string]int{}
	total := 0
	for _, m := range c.em.Outbox() {
		total++
		for _, to := range m.To {
			if id, ok := c.emails[strings.ToLower(to)]; ok {
				out[id]++
			}
		}
	}
	return out, total
}

// TestIntegrationExactlyOnce is the end-to-end guarantee: three replicas
// share one redis-server; Dataverse (the emulator, over HTTP) delivers every
// webhook twice and fails 10% of the connector's requests with 429 or 503;
// one replica is killed mid-run. Every flagged contact gets exactly one
// invitation and one email and ends Sent; nothing is dead-lettered.
func TestIntegrationExactlyOnce(t *testing.T) {
	n := 500
	if testing.Short() {
		n = 100
	}
	c := newCluster(t, clusterOpts{
		contacts: n, instances: 3, workers: 4, webhooks: true, duplicate: 1, poll: "@every 3s", lease: time.Second,
		faults: emulator.FaultOptions{Seed: 7, Rules: []emulator.FaultRule{
			// The clicks come from the CRM user, not the connector: no faults on them.
			{Method: http.MethodPatch, Set: "contacts"},
			{Throttle: 0.03, Unavailable: 0.07},
		}},
	})
	ctx := context.Background()
	start := time.Now()
	half := n / 2
	if err := c.flag(ctx, c.contacts[:half], 8); err != nil {
		t.Fatal(err)
	}
	// Kill one replica while it holds work.
	victim := c.insts[1]
	waitFor(t, "work in progress", 30*time.Second, func() bool { return c.sentCount(c.contacts) >= n/5 })
	var held int
	waitFor(t, "the victim holding messages", 30*time.Second, func() bool {
		held = c.pendingOf(victim)
		return held > 0
	})
	c.kill(victim)
	t.Logf("killed %s holding %d messages, with %d/%d sent", victim.name, held, c.sentCount(c.contacts), n)
	if err := c.flag(ctx, c.contacts[half:], 8); err != nil {
		t.Fatal(err)
	}
	c.waitDrained(c.contacts, 90*time.Second)
	c.em.WaitWebhooks()
	c.waitDrained(c.contacts, 10*time.Second)
	elapsed := time.Since(start)

	invs := c.invitationsPer()
	emails, totalEmails := c.emailsPer()
	totalInvs := 0
	for _, id := range c.contacts {
		if invs[id] != 1 || emails[id] != 1 {
			t.Errorf("contact %s: %d invitations, %d emails", id, invs[id], emails[id])
		}
		totalInvs += invs[id]
	}
	if len(c.em.Rows("adx_invitation")) != n || totalEmails != n {
		t.Errorf("%d invitations, %d emails in the outbox; want %d each", len(c.em.Rows("adx_invitation")), totalEmails, n)
	}
	if sent := c.sentCount(c.contacts); sent != n {
		t.Errorf("%d/%d contacts Sent", sent, n)
	}
	s, err := c.live().Stats(ctx)
	if err != nil || s.DeadLetters != 0 {
		t.Errorf("dead letters: %+v %v", s, err)
	}
	if p := c.pendingOf(victim); p != 0 {
		t.Errorf("%d messages still pending with the killed replica", p)
	}
	st := c.em.Stats()
	accepted, dup := counter(&c.outcomes, WebhookAccepted).Load(), counter(&c.outcomes, WebhookDuplicate).Load()
	t.Logf("%d contacts in %v: %d invitations, %d emails; webhooks accepted %d, duplicates %d, ignored %d, unavailable %d; "+
		"enqueued webhook %d poll %d; emulator: %d requests, %d throttled, %d faults",
		n, elapsed.Round(time.Millisecond), totalInvs, totalEmails, accepted, dup,
		counter(&c.outcomes, WebhookIgnored).Load(), counter(&c.outcomes, WebhookUnavailable).Load(),
		counter(&c.sources, "webhook").Load(), counter(&c.sources, "poll").Load(), st.Total, st.Throttled, st.Faults)
	if accepted < int64(n) {
		t.Errorf("only %d webhook deliveries accepted for %d clicks", accepted, n)
	}
	if dup == 0 {
		t.Error("no duplicate deliveries were seen (webhook duplication off?)")
	}
	if st.Faults == 0 {
		t.Error("no faults were injected")
	}
}

// TestIntegrationPollingOnly: with webhooks off, the poller alone finds and
// processes every flagged contact, and an idle poll costs one request.
func TestIntegrationPollingOnly(t *testing.T) {
	n := 60
	if testing.Short() {
		n = 20
	}
	c := newCluster(t, clusterOpts{contacts: n, instances: 2, workers: 2, lease: time.Second})
	ctx := context.Background()
	a := c.insts[0].intake
	// First cycle: no delta link yet, nothing flagged.
	if got, err := a.PollOnce(ctx); err != nil || got != 0 {
		t.Fatalf("baseline poll: %d, %v", got, err)
	}
	if err := c.flag(ctx, c.contacts, 4); err != nil {
		t.Fatal(err)
	}
	got, err := c.insts[1].intake.PollOnce(ctx) // any replica continues from the shared delta link
	if err != nil || got != n {
		t.Fatalf("poll after flagging: enqueued %d, %v; want %d", got, err, n)
	}
	c.waitDrained(c.contacts, 60*time.Second)
	invs := c.invitationsPer()
	emails, total := c.emailsPer()
	for _, id := range c.contacts {
		if invs[id] != 1 || emails[id] != 1 {
			t.Errorf("contact %s: %d invitations, %d emails", id, invs[id], emails[id])
		}
	}
	if total != n {
		t.Errorf("%d emails", total)
	}
	// The write-backs are changes too: the next cycle sees them, enqueues
	// nothing. After that a cycle with no changes is one Dataverse request.
	if got, err := a.PollOnce(ctx); err != nil || got != 0 {
		t.Fatalf("poll over write-backs: %d, %v", got, err)
	}
	c.em.ResetStats()
	if got, err := a.PollOnce(ctx); err != nil || got != 0 {
		t.Fatalf("idle poll: %d, %v", got, err)
	}
	if st := c.em.Stats(); st.Total != 1 || st.Count(http.MethodGet, "contacts") != 1 {
		t.Errorf("idle poll cost %d requests (%v), want 1 GET contacts", st.Total, st.ByRoute)
	}
	// An expired delta link (Dataverse keeps them about 7 days) falls back
	// to the filtered query.
	if err := a.rdb.Set(ctx, a.keys.delta, c.em.APIURL+"contacts?$select=contactid&$deltatoken=1%2101%2F01%2F2000%2000%3A00%3A00", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.em.ResetStats()
	if got, err := a.PollOnce(ctx); err != nil || got != 0 {
		t.Fatalf("poll with a stale link: %d, %v", got, err)
	}
	if st := c.em.Stats(); st.Count(http.MethodGet, "contacts") < 2 {
		t.Errorf("stale link: %v", st.ByRoute)
	}
}

// TestIntegrationRegisterWebhook registers against the emulator, checks the
// rows, re-registers (idempotent), and unregisters.
func TestIntegrationRegisterWebhook(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	ctx := context.Background()
	var out bytes.Buffer
	o := RegisterOptions{URL: "https://connector.contoso.example/hooks/dataverse", AuthType: AuthHTTPHeader,
		AuthName: "X-Api-Key", AuthValue: `k&"<y>`, Contact: testCols, Out: &out}

	dry := o
	dry.DryRun = true
	reg, err := RegisterWebhook(ctx, c.admin, dry)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.em.Rows("serviceendpoint")) != 0 || !strings.Contains(out.String(), "would create serviceendpoint") {
		t.Fatalf("dry run wrote or said %q", out.String())
	}
	if strings.Contains(out.String(), `k&"<y>`) {
		t.Error("the dry run printed the secret")
	}
	t.Logf("dry run plan:\n%s", out.String())

	reg, err = RegisterWebhook(ctx, c.admin, o)
	if err != nil {
		t.Fatal(err)
	}
	ses := c.em.Rows("serviceendpoint")
	if len(ses) != 1 {
		t.Fatalf("%d serviceendpoints", len(ses))
	}
	se := ses[0]
	if se["url"] != o.URL || fmt.Sprint(se["contract"]) != "8" || fmt.Sprint(se["authtype"]) != "5" ||
		se["authvalue"] != `<settings><setting name="X-Api-Key" value="k&amp;&#34;&lt;y&gt;" /></settings>` {
		t.Errorf("serviceendpoint %v", se)
	}
	steps := c.em.Rows("sdkmessageprocessingstep")
	if len(steps) != 2 {
		t.Fatalf("%d steps", len(steps))
	}
	for _, st := range steps {
		if fmt.Sprint(st["stage"]) != "40" || fmt.Sprint(st["mode"]) != "1" || st["asyncautodelete"] != true {
			t.Errorf("step %v", st)
		}
		if strings.Contains(fmt.Sprint(st["name"]), "Update") && st["filteringattributes"] != testCols.Status {
			t.Errorf("update step filtering %v", st["filteringattributes"])
		}
	}
	imgs := c.em.Rows("sdkmessageprocessingstepimage")
	if len(imgs) != 2 {
		t.Fatalf("%d images", len(imgs))
	}
	for _, img := range imgs {
		if img["attributes"] != "pinv_portalinvitestatus,pinv_portalname,pinv_portalroles" || fmt.Sprint(img["imagetype"]) != "1" {
			t.Errorf("image %v", img)
		}
	}

	// Again: the same rows, nothing but the endpoint (whose auth value cannot
	// be read back) rewritten.
	out.Reset()
	reg2, err := RegisterWebhook(ctx, c.admin, o)
	if err != nil {
		t.Fatal(err)
	}
	if reg2.ServiceEndpointID != reg.ServiceEndpointID || reg2.Steps[0].StepID != reg.Steps[0].StepID ||
		reg2.Steps[1].ImageID != reg.Steps[1].ImageID {
		t.Errorf("re-registration created new rows: %+v vs %+v", reg2, reg)
	}
	if strings.Count(out.String(), "unchanged") != 4 || strings.Contains(out.String(), "create") {
		t.Errorf("second run:\n%s", out.String())
	}
	if len(c.em.Rows("sdkmessageprocessingstep")) != 2 || len(c.em.Rows("sdkmessageprocessingstepimage")) != 2 {
		t.Error("duplicate rows after re-registration")
	}

	// A changed column set updates the image in place.
	o2 := o
	o2.Contact.Roles = ""
	if _, err := RegisterWebhook(ctx, c.admin, o2); err != nil {
		t.Fatal(err)
	}
	for _, img := range c.em.Rows("sdkmessageprocessingstepimage") {
		if img["attributes"] != "pinv_portalinvitestatus,pinv_portalname" {
			t.Errorf("image not updated: %v", img["attributes"])
		}
	}

	if err := UnregisterWebhook(ctx, c.admin, o); err != nil {
		t.Fatal(err)
	}
	if len(c.em.Rows("serviceendpoint"))+len(c.em.Rows("sdkmessageprocessingstep"))+len(c.em.Rows("sdkmessageprocessingstepimage")) != 0 {
		t.Error("rows left after unregister")
	}
	if err := UnregisterWebhook(ctx, c.admin, o); err != nil {
		t.Errorf("second unregister: %v", err)
	}
}

// TestIntegrationTrimmedWebhook: a delivery over 256 KB arrives without
// InputParameters and images, flagged by x-ms-dynamics-msg-size-exceeded;
// the handler reads the contact back through the Web API.
func TestIntegrationTrimmedWebhook(t *testing.T) {
	c := newCluster(t, clusterOpts{contacts: 2, instances: 1, workers: 1})
	ctx := context.Background()
	in := c.insts[0].intake
	flagged, plain := c.contacts[0], c.contacts[1]
	if err := c.flag(ctx, []string{flagged}, 1); err != nil { // no webhook registered: nothing fires
		t.Fatal(err)
	}
	trimmed := func(id string) string {
		return fmt.Sprintf(`{"MessageName":"Update","PrimaryEntityName":"contact","PrimaryEntityId":%q,`+
			`"OperationId":"%s","InitiatingUserId":%q,"Depth":1,"Stage":40,"Mode":1}`, id, dataverse.NewGUID(), emulator.DemoAdminUserID)
	}
	hdr := map[string]string{headerSizeExceeded: "true", headerCorrelation: "trimmed-test"}
	if w := post(in.WebhookHandler(), "/hooks/dataverse?code="+itSecret, trimmed(plain), hdr); w.Code != http.StatusOK {
		t.Errorf("trimmed delivery for an unflagged contact: %d", w.Code)
	}
	if w := post(in.WebhookHandler(), "/hooks/dataverse?code="+itSecret, trimmed(flagged), hdr); w.Code != http.StatusAccepted {
		t.Fatalf("trimmed delivery for a flagged contact: %d %s", w.Code, w.Body)
	}
	c.waitDrained([]string{flagged}, 30*time.Second)
	if c.status(plain) == testCols.Sent {
		t.Error("the unflagged contact was invited")
	}
	emails, total := c.emailsPer()
	if total != 1 || emails[flagged] != 1 {
		t.Errorf("emails %v", emails)
	}
	// The user who clicked (InitiatingUserId) owns the invitation.
	rows := c.em.Rows("adx_invitation")
	if len(rows) != 1 {
		t.Fatalf("%d invitations", len(rows))
	}
	inv, err := c.admin.Retrieve(ctx, "adx_invitations", rows[0]["adx_invitationid"].(string),
		&dataverse.Query{Select: []string{"_ownerid_value"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Str("_ownerid_value"); !strings.EqualFold(got, emulator.DemoAdminUserID) {
		t.Errorf("invitation owner %q, want the initiating user %s", got, emulator.DemoAdminUserID)
	}
	// So does its email (bound through ownerid_email: activities name their
	// navigation properties after the table).
	page, err := c.admin.QueryPage(ctx, "emails", &dataverse.Query{Select: []string{"_ownerid_value"},
		Filter: "_regardingobjectid_value eq " + rows[0]["adx_invitationid"].(string)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 1 || !strings.EqualFold(page.Records[0].Str("_ownerid_value"), emulator.DemoAdminUserID) {
		t.Errorf("invitation email owners %v, want the initiating user %s", page.Records, emulator.DemoAdminUserID)
	}
}
