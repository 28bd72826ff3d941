// The dialog web resource: dialog.html's markup driven by invite.js against a
// fake Xrm and a fake DOM made from the real markup.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const {
  DIALOG_HTML,
  INVITE_JS,
  defaultConfig,
  loadInvite,
  FakeStorage,
  guid,
  makeXrm,
  makeHost,
  makeDialogWindow
} = require("./fakes");

test.afterEach(() => {
  delete globalThis.sessionStorage;
});

function open({ ids = [guid(1)], nonce = "abc123", config = defaultConfig(), xrm = makeXrm(), search } = {}) {
  const PortalInvite = loadInvite();
  globalThis.sessionStorage = new FakeStorage();
  let closed = 0;
  const host = makeHost(() => closed++);
  host.Xrm = xrm;
  const win = makeDialogWindow({
    search: search !== undefined ? search : "?data=" + encodeURIComponent(JSON.stringify({ ids, nonce })),
    parent: host,
    config
  });
  const dialog = PortalInvite.dialog.start(win);
  const el = (id) => win.document.getElementById(id);
  return { PortalInvite, dialog, win, xrm, el, closed: () => closed };
}

test.describe("dialog.html", () => {
  test("has every element invite.js looks up", () => {
    const html = fs.readFileSync(DIALOG_HTML, "utf8");
    const js = fs.readFileSync(INVITE_JS, "utf8");
    const wanted = [...js.matchAll(/el\("(pi-[a-z-]+)"\)/g)].map((m) => m[1]);
    assert.ok(wanted.length >= 10, "invite.js should reference the dialog's elements");
    for (const id of new Set(wanted)) {
      assert.match(html, new RegExp(`id="${id}"`), `dialog.html lacks #${id}`);
    }
  });

  test("loads config.js and invite.js from beside itself and starts the dialog", () => {
    const html = fs.readFileSync(DIALOG_HTML, "utf8");
    assert.match(html, /<script src="config.js"><\/script>/);
    assert.match(html, /<script src="invite.js"><\/script>/);
    assert.ok(html.indexOf('src="config.js"') < html.indexOf('src="invite.js"'));
    assert.match(html, /PortalInvite\.dialog\.start\(window\)/);
  });

  test("invite.js never writes markup from strings", () => {
    const js = fs.readFileSync(INVITE_JS, "utf8");
    assert.doesNotMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  });
});

test.describe("render", () => {
  test("lists the configured portals and their roles, defaults ticked", () => {
    const { el, dialog } = open();
    const options = el("pi-portal").children;
    assert.deepEqual(
      options.map((o) => [o.tagName, o.value, o.textContent]),
      [
        ["OPTION", "Contoso Partner Portal", "Contoso Partner Portal"],
        ["OPTION", "Contoso Customer Portal", "Contoso Customer Portal"]
      ]
    );
    assert.equal(el("pi-portal").value, "Contoso Partner Portal");
    assert.deepEqual(
      dialog.roleInputs.map((r) => [r.role, r.input.type, r.input.checked]),
      [
        ["Authenticated Users", "checkbox", true],
        ["Partners", "checkbox", false],
        ["Customers", "checkbox", false]
      ]
    );
    assert.equal(el("pi-portal").hidden, false);
    assert.equal(el("pi-portal-text").hidden, true);
    assert.equal(el("pi-roles-text").hidden, true);
    assert.equal(el("pi-message").hidden, true);
    assert.equal(el("pi-submit").disabled, false);
    assert.match(el("pi-intro").textContent, /^The contact receives an email/);
  });

  test("switching the portal shows that portal's roles", () => {
    const { el, dialog } = open();
    el("pi-portal").value = "Contoso Customer Portal";
    el("pi-portal").dispatch("change");
    assert.deepEqual(
      dialog.roleInputs.map((r) => [r.role, r.input.checked]),
      [
        ["Customers", false],
        ["Administrators", false]
      ]
    );
    assert.equal(el("pi-roles-list").children.length, 2);
  });

  test("names the number of contacts for a grid selection", () => {
    const { el } = open({ ids: [guid(1), guid(2), guid(3)] });
    assert.match(el("pi-intro").textContent, /Each of the 3 selected contacts/);
  });

  test("falls back to free text when no portal is configured", () => {
    const { el } = open({ config: defaultConfig([]) });
    assert.equal(el("pi-portal").hidden, true);
    assert.equal(el("pi-roles-list").hidden, true);
    assert.equal(el("pi-portal-text").hidden, false);
    assert.equal(el("pi-roles-text").hidden, false);
    assert.match(el("pi-hint").textContent, /default roles/);
  });

  test("names from config are text, never markup", () => {
    const evil = '<img src=x onerror="alert(1)">';
    const { el, dialog } = open({ config: defaultConfig([{ name: evil, roles: [evil], defaultRoles: [] }]) });
    assert.equal(el("pi-portal").children[0].textContent, evil);
    assert.equal(dialog.roleInputs[0].input.value, evil);
  });

  test("without settings the dialog explains and cannot send", () => {
    const { el } = open({ config: null });
    assert.equal(el("pi-submit").disabled, true);
    assert.match(el("pi-message").textContent, /settings are missing/);
  });

  test("outside Dynamics 365 the dialog explains and cannot send", () => {
    const PortalInvite = loadInvite();
    const win = makeDialogWindow({
      search: "?data=" + encodeURIComponent(JSON.stringify({ ids: [guid(1)], nonce: "n" })),
      config: defaultConfig()
    });
    PortalInvite.dialog.start(win);
    assert.equal(win.document.getElementById("pi-submit").disabled, true);
    assert.match(win.document.getElementById("pi-message").textContent, /from a contact in Dynamics 365/);
  });

  test("without contacts the dialog cannot send", () => {
    const { el } = open({ search: "" });
    assert.equal(el("pi-submit").disabled, true);
    assert.match(el("pi-message").textContent, /No contact/);
  });
});

test.describe("submit", () => {
  test("writes the request, hands the result back and closes", async () => {
    const id = guid(1);
    const { el, dialog, xrm, closed } = open({ ids: [id], nonce: "n1" });
    dialog.roleInputs[1].input.checked = true; // Partners, plus the ticked default
    const result = await dialog.submit();

    assert.deepEqual(xrm.calls.update, [
      {
        entity: "contact",
        id,
        data: {
          pinv_portalinvitestatus: 100000000,
          pinv_portalname: "Contoso Partner Portal",
          pinv_portalroles: "Authenticated Users,Partners",
          pinv_lastinviteerror: null
        }
      }
    ]);
    assert.deepEqual(result.requested, [id]);
    assert.deepEqual(JSON.parse(globalThis.sessionStorage.getItem("portalinvite:result:n1")), result);
    assert.equal(closed(), 1);
    assert.equal(el("pi-message").className, "message success");
    assert.equal(el("pi-submit").disabled, true);
  });

  test("the form's submit event sends", async () => {
    const { el, xrm, dialog } = open();
    let prevented = false;
    el("pi-form").dispatch("submit", { preventDefault: () => (prevented = true) });
    await dialog.lastSubmit;
    assert.equal(prevented, true);
    assert.equal(xrm.calls.update.length, 1);
  });

  test("a second submit does nothing", async () => {
    const { dialog, xrm } = open();
    await Promise.all([dialog.submit(), dialog.submit()]);
    await dialog.submit();
    assert.equal(xrm.calls.update.length, 1);
  });

  test("free text: portal required, roles split on commas", async () => {
    const { el, dialog, xrm } = open({ config: defaultConfig([]) });
    assert.equal(await dialog.submit(), null);
    assert.equal(el("pi-message").textContent, "Enter the portal name.");
    assert.equal(xrm.calls.update.length, 0);

    el("pi-portal-text").value = "  Fabrikam  ";
    el("pi-roles-text").value = " Partners, ,Customers,partners ";
    await dialog.submit();
    assert.equal(xrm.calls.update[0].data.pinv_portalname, "Fabrikam");
    assert.equal(xrm.calls.update[0].data.pinv_portalroles, "Partners,Customers");
  });

  test("rejects values longer than the columns", async () => {
    const { el, dialog, xrm } = open({ config: defaultConfig([]) });
    el("pi-portal-text").value = "p".repeat(101);
    await dialog.submit();
    assert.match(el("pi-message").textContent, /longer than 100/);
    el("pi-portal-text").value = "p";
    el("pi-roles-text").value = Array.from({ length: 100 }, (_, i) => "role number " + i).join(",");
    await dialog.submit();
    assert.match(el("pi-message").textContent, /longer than 1000/);
    assert.equal(xrm.calls.update.length, 0);
  });

  test("a portal missing from the list is refused", async () => {
    const { el, dialog, xrm } = open();
    el("pi-portal").value = "Not configured";
    await dialog.submit();
    assert.equal(el("pi-message").textContent, "Choose a portal.");
    assert.equal(xrm.calls.update.length, 0);
  });

  test("when every write fails it stays open to retry", async () => {
    const id = guid(1);
    const xrm = makeXrm({ failUpdates: { [id]: { errorCode: 2147746336, message: "Access denied" } } });
    const { el, dialog, closed } = open({ ids: [id], nonce: "n2", xrm });
    const result = await dialog.submit();
    assert.equal(result.failed.length, 1);
    assert.equal(closed(), 0);
    assert.equal(globalThis.sessionStorage.getItem("portalinvite:result:n2"), null);
    assert.equal(el("pi-message").className, "message error");
    assert.match(el("pi-message").textContent, /Access denied/);
    assert.equal(el("pi-submit").disabled, false);
    assert.equal(el("pi-cancel").disabled, false);

    delete xrm.WebApi.updateRecord; // fix the cause, then retry
    xrm.WebApi.updateRecord = async () => ({});
    const retry = await dialog.submit();
    assert.deepEqual(retry.requested, [id]);
    assert.equal(closed(), 1);
  });

  test("a partial failure reports back but stays open for the user to read", async () => {
    const ids = [guid(1), guid(2)];
    const xrm = makeXrm({ failUpdates: { [ids[1]]: { message: "Record is locked" } } });
    const { el, dialog, closed } = open({ ids, nonce: "n3", xrm });
    await dialog.submit();
    assert.equal(closed(), 0);
    const stored = JSON.parse(globalThis.sessionStorage.getItem("portalinvite:result:n3"));
    assert.deepEqual(stored.requested, [ids[0]]);
    assert.equal(el("pi-message").className, "message warning");
    assert.equal(el("pi-cancel").textContent, "Close");
    el("pi-cancel").click();
    assert.equal(closed(), 1);
  });

  test("cancel closes through the host, or the window when there is none", () => {
    const a = open();
    a.el("pi-cancel").click();
    assert.equal(a.closed(), 1);

    const PortalInvite = loadInvite();
    const win = makeDialogWindow({ search: "", config: defaultConfig(), xrm: makeXrm() });
    const d = PortalInvite.dialog.start(win);
    d.cancel();
    assert.equal(win.closedByWindowClose, true);
  });
});

test.describe("parseDialogData", () => {
  const { parseDialogData } = loadInvite();
  const id = guid(42);

  test("reads ids and nonce encoded once or twice", () => {
    const json = JSON.stringify({ ids: ["{" + id.toUpperCase() + "}"], nonce: "xyz" });
    assert.deepEqual(parseDialogData("?data=" + encodeURIComponent(json)), { ids: [id], nonce: "xyz" });
    assert.deepEqual(parseDialogData("?data=" + encodeURIComponent(encodeURIComponent(json))), {
      ids: [id],
      nonce: "xyz"
    });
    assert.deepEqual(parseDialogData("?orglcid=1033&data=" + encodeURIComponent(json) + "&userlcid=1033"), {
      ids: [id],
      nonce: "xyz"
    });
  });

  test("drops junk and caps the number of ids", () => {
    assert.deepEqual(parseDialogData("?data=%7Bnot json"), { ids: [], nonce: "" });
    assert.deepEqual(parseDialogData(""), { ids: [], nonce: "" });
    const json = JSON.stringify({ ids: ["nope", id, id, 7], nonce: 5 });
    assert.deepEqual(parseDialogData("?data=" + encodeURIComponent(json)), { ids: [id], nonce: "" });
    const many = Array.from({ length: 80 }, (_, i) => guid(i + 1));
    assert.equal(parseDialogData("?data=" + encodeURIComponent(JSON.stringify({ ids: many }))).ids.length, 50);
  });
});
