package emulator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/d365portal/connector/internal/dataverse/emulator/throttle"
)

func TestAzidentityTokenAcceptedByWhoAmI(t *testing.T) {
	r, err := StartTLS(Options{}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	cred, err := azidentity.NewClientSecretCredential(r.TenantID, r.ClientID, r.ClientSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: r.AuthorityHost},
			Transport: r.HTTPClient,
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{r.OrgURL + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, r: r, token: tok.Token}
	res := c.must(200, "GET", "WhoAmI", nil)
	if res.str("UserId") != AppUserID {
		t.Fatalf("WhoAmI: %s", res.body)
	}
	// Without a valid bearer: 401 with a WWW-Authenticate challenge.
	anon := &client{t: t, r: r, token: "not-a-token"}
	res = anon.do("GET", "WhoAmI", nil)
	if res.status != 401 || !strings.Contains(res.header.Get("WWW-Authenticate"), "authorization_uri=https://") {
		t.Fatalf("unauthenticated: %d %v", res.status, res.header)
	}
	// A second client id registered with the STS gets its own application user.
	r.STS().AddSecretClient("0a0a0a0a-0000-4000-8000-000000000001", "s3cret")
	other := &client{t: t, r: r, token: r.STS().IssueToken("0a0a0a0a-0000-4000-8000-000000000001")}
	res = other.must(200, "GET", "WhoAmI", nil)
	if res.str("UserId") == AppUserID || res.str("UserId") == "" {
		t.Fatalf("second app user: %s", res.body)
	}
}

func TestServiceProtectionLimits(t *testing.T) {
	c := startPlain(t, Options{Limits: throttle.Limits{Window: time.Minute, MaxRequests: 3, MaxConcurrent: 10, DOPHint: 6}})
	for range 3 {
		res := c.must(200, "GET", "WhoAmI", nil)
		if res.header.Get("x-ms-dop-hint") != "6" || res.header.Get("x-ms-ratelimit-burst-remaining-xrm-requests") == "" {
			t.Fatalf("headers: %v", res.header)
		}
	}
	res := c.do("GET", "WhoAmI", nil)
	wantError(t, res, 429, "0x80072322")
	if res.header.Get("Retry-After") == "" {
		t.Fatalf("no Retry-After: %v", res.header)
	}
	if st := c.r.Stats(); st.Throttled != 1 {
		t.Fatalf("throttled count: %+v", st)
	}
}

func TestBatchCountsOnceButCostsAll(t *testing.T) {
	c := startPlain(t, Options{
		Limits: throttle.Limits{Window: time.Minute, MaxRequests: 100, MaxExecution: 50 * time.Millisecond},
		Costs:  Costs{Create: 20 * time.Millisecond},
	})
	bb := newBatch()
	for range 5 {
		bb.op("POST", "contacts", `{"lastname":"x"}`)
	}
	status, parts, _ := sendBatch(t, c, bb)
	if status != 200 || len(parts) != 5 {
		t.Fatalf("batch: %d %d", status, len(parts))
	}
	// 5 x 20ms exceeded the 50ms execution budget: the next request is throttled.
	res := c.do("GET", "WhoAmI", nil)
	wantError(t, res, 429, "0x80072321")
}

func TestFaultInjection(t *testing.T) {
	c := startPlain(t, Options{Faults: FaultOptions{Seed: 7, Rules: []FaultRule{
		{Method: "GET", Set: "contacts", Throttle: 1, RetryAfter: 2 * time.Second},
		{Method: "POST", Set: "accounts", Unavailable: 1},
		{Method: "GET", Set: "accounts", Reset: 1},
		{Set: "WhoAmI", Latency: time.Millisecond, SlowBody: 5 * time.Millisecond},
	}}})
	res := c.do("GET", "contacts", nil)
	wantError(t, res, 429, "0x80072322")
	if res.header.Get("Retry-After") != "2" {
		t.Fatalf("Retry-After %q", res.header.Get("Retry-After"))
	}
	wantError(t, c.do("POST", "accounts", map[string]any{"name": "x"}), 503, "0x80040216")
	if len(c.r.Rows("account")) != 0 {
		t.Fatal("a faulted create must not write")
	}
	if _, err := c.r.HTTPClient.Get(c.r.APIURL + "accounts"); err == nil {
		t.Fatal("reset: want a transport error")
	}
	res = c.must(200, "GET", "WhoAmI", nil)
	if res.str("UserId") != AppUserID {
		t.Fatalf("slow body: %s", res.body)
	}
	st := c.r.Stats()
	// Go's transport may retry the reset GET once on a reused connection.
	if st.Faults < 3 || st.Throttled != 1 || st.ByStatus[0] < 1 {
		t.Fatalf("stats: %+v", st)
	}
	if n := len(c.r.RequestLog()); n != st.Total {
		t.Fatalf("request log: %d entries, %d requests", n, st.Total)
	}
	c.r.ResetStats()
	if c.r.Stats().Total != 0 {
		t.Fatal("ResetStats")
	}
}

type hookCapture struct {
	mu   sync.Mutex
	reqs []capturedHook
}

type capturedHook struct {
	query  string
	header http.Header
	body   map[string]any
}

func (h *hookCapture) handler(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	h.mu.Lock()
	h.reqs = append(h.reqs, capturedHook{query: r.URL.RawQuery, header: r.Header.Clone(), body: m})
	h.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (h *hookCapture) all() []capturedHook {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]capturedHook(nil), h.reqs...)
}

func kv(list any, key string) any {
	arr, _ := list.([]any)
	for _, e := range arr {
		m, _ := e.(map[string]any)
		if m["key"] == key {
			return m["value"]
		}
	}
	return nil
}

func TestWebhookRegistrationAndDelivery(t *testing.T) {
	capture := &hookCapture{}
	hs := httptest.NewServer(http.HandlerFunc(capture.handler))
	t.Cleanup(hs.Close)
	c := startPlain(t, Options{})
	DefineInviteColumns(c.r.Server)

	se := c.must(201, "POST", "serviceendpoints?$select=name,authtype,isauthvalueset", map[string]any{
		"name": "invite-connector", "url": hs.URL + "/hooks/dataverse", "contract": 8, "authtype": 4, "authvalue": "hook-key",
	}, "Prefer", "return=representation")
	if _, ok := se.json["authvalue"]; ok || se.json["isauthvalueset"] != true {
		t.Fatalf("authvalue must be write-only: %s", se.body)
	}
	if got := c.must(200, "GET", "serviceendpoints("+se.str("serviceendpointid")+")", nil); strings.Contains(string(got.body), "hook-key") {
		t.Fatalf("authvalue leaked: %s", got.body)
	}
	msg := c.must(200, "GET", "sdkmessages?$select=sdkmessageid,name&$filter=name eq 'Update'", nil).values()[0]["sdkmessageid"].(string)
	flt := c.must(200, "GET", "sdkmessagefilters?$select=sdkmessagefilterid&$filter=primaryobjecttypecode eq 'contact' and sdkmessageid/name eq 'Update'", nil).values()
	if len(flt) != 1 {
		t.Fatalf("filters: %v", flt)
	}
	step := c.create("sdkmessageprocessingsteps", map[string]any{
		"name": "contact update", "stage": 40, "mode": 1, "rank": 1, "supporteddeployment": 0, "asyncautodelete": true,
		"filteringattributes":                     ColInviteStatus + ",emailaddress1",
		"eventhandler_serviceendpoint@odata.bind": "/serviceendpoints(" + se.str("serviceendpointid") + ")",
		"sdkmessageid@odata.bind":                 "/sdkmessages(" + msg + ")",
		"sdkmessagefilterid@odata.bind":           "/sdkmessagefilters(" + flt[0]["sdkmessagefilterid"].(string) + ")",
	})
	c.create("sdkmessageprocessingstepimages", map[string]any{
		"sdkmessageprocessingstepid@odata.bind": "/sdkmessageprocessingsteps(" + step + ")",
		"imagetype":                             0, "name": "PreImage", "entityalias": "PreImage", "messagepropertyname": "Target", "attributes": "firstname,lastname",
	})
	steps := c.must(200, "GET", "serviceendpoints("+se.str("serviceendpointid")+")/serviceendpoint_sdkmessageprocessingstep?$select=name", nil)
	if len(steps.values()) != 1 {
		t.Fatalf("registration query: %s", steps.body)
	}

	cid := c.create("contacts", map[string]any{"firstname": "Hook", "lastname": "Target"})
	// Not a filtering attribute: no delivery.
	c.must(204, "PATCH", "contacts("+cid+")", map[string]any{"jobtitle": "x"})
	// A filtering attribute: one delivery.
	c.must(204, "PATCH", "contacts("+cid+")", map[string]any{ColInviteStatus: InviteRequested})
	c.r.WaitWebhooks()
	got := capture.all()
	if len(got) != 1 {
		t.Fatalf("deliveries: %d", len(got))
	}
	h := got[0]
	if h.query != "code=hook-key" {
		t.Fatalf("webhook key: %q", h.query)
	}
	if h.header.Get("x-ms-dynamics-request-name") != "Update" || h.header.Get("x-ms-dynamics-entity-name") != "contact" || h.header.Get("x-ms-correlation-request-id") == "" {
		t.Fatalf("headers: %v", h.header)
	}
	b := h.body
	if b["MessageName"] != "Update" || b["PrimaryEntityId"] != cid || b["InitiatingUserId"] != AppUserID || num(b["Depth"]) != 1 || num(b["Mode"]) != 1 || num(b["Stage"]) != 40 {
		t.Fatalf("context: %v", b)
	}
	if !strings.HasPrefix(b["OperationCreatedOn"].(string), "/Date(") {
		t.Fatalf("date format: %v", b["OperationCreatedOn"])
	}
	target, _ := kv(b["InputParameters"], "Target").(map[string]any)
	attrs := target["Attributes"]
	st, _ := kv(attrs, ColInviteStatus).(map[string]any)
	if st == nil || num(st["Value"]) != InviteRequested || kv(attrs, "jobtitle") != nil || kv(attrs, "firstname") != nil {
		t.Fatalf("target attributes: %v", attrs)
	}
	pre, _ := kv(b["PreEntityImages"], "PreImage").(map[string]any)
	if pre == nil || kv(pre["Attributes"], "firstname") != "Hook" {
		t.Fatalf("pre image: %v", b["PreEntityImages"])
	}
	if b["OwningExtension"].(map[string]any)["Id"] != step {
		t.Fatalf("owning extension: %v", b["OwningExtension"])
	}
	// Disabled steps stop deliveries.
	c.must(204, "PATCH", "sdkmessageprocessingsteps("+step+")", map[string]any{"statecode": 1, "statuscode": 2})
	c.must(204, "PATCH", "contacts("+cid+")", map[string]any{ColInviteStatus: InviteSent})
	c.r.WaitWebhooks()
	if n := len(capture.all()); n != 1 {
		t.Fatalf("disabled step delivered: %d", n)
	}
	if res := c.r.WebhookResults(); len(res) != 1 || res[0].StatusCode != 200 {
		t.Fatalf("results: %+v", res)
	}
}

func TestSeedDemo(t *testing.T) {
	c := startPlain(t, Options{})
	d, err := SeedDemo(c.r.Server)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.ContactIDs) != 12 || d.EnhancedRoles["Partners"] != DemoRolePartnersID || d.StandardRoles["Administrators"] != DemoWebRoleAdministratorsID {
		t.Fatalf("demo: %+v", d)
	}
	roles := c.must(200, "GET", "powerpagecomponents?$select=name&$filter=powerpagecomponenttype eq 11 and _powerpagesiteid_value eq "+DemoSiteID, nil)
	if len(roles.values()) != 3 {
		t.Fatalf("roles: %s", roles.body)
	}
	inactive := c.must(200, "GET", "contacts("+DemoContactInactiveID+")?$select=statecode,emailaddress1", nil)
	if num(inactive.json["statecode"]) != 1 {
		t.Fatalf("inactive: %s", inactive.body)
	}
	noMail := c.must(200, "GET", "contacts("+DemoContactNoEmailID+")?$select=emailaddress1", nil)
	if noMail.json["emailaddress1"] != nil {
		t.Fatalf("no email: %s", noMail.body)
	}
	c.must(204, "PATCH", "contacts("+d.ContactIDs[0]+")", map[string]any{ColInviteStatus: InviteRequested, ColInvitePortal: "Contoso Partner Portal"})
	req := c.must(200, "GET", "contacts?$select=fullname&$filter="+ColInviteStatus+" eq 100000000", nil)
	if len(req.values()) != 1 {
		t.Fatalf("custom column filter: %s", req.body)
	}
}
