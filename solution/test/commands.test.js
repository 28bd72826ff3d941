// The command bar side of invite.js: enable rules (button visibility), the
// form and grid commands, and the request written through Xrm.WebApi.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { defaultConfig, loadInvite, FakeStorage, guid, makeXrm, makeForm, DIALOG_NAME } = require("./fakes");

function setup(xrmOpts) {
  const PortalInvite = loadInvite();
  const xrm = makeXrm(xrmOpts);
  globalThis.Xrm = xrm;
  globalThis.sessionStorage = new FakeStorage();
  return { PortalInvite, xrm };
}

test.afterEach(() => {
  delete globalThis.Xrm;
  delete globalThis.sessionStorage;
});

// A dialog run that picks the first portal, ticks the given roles and sends.
function pickAndSend(roleNames) {
  return async (win, ctx) => {
    const PortalInvite = loadInvite();
    const dialog = PortalInvite.dialog.start(win);
    if (roleNames) {
      dialog.roleInputs.forEach((r) => {
        r.input.checked = roleNames.includes(r.role);
      });
    }
    await dialog.submit();
    if (!dialog.finished || dialog.data.ids.length === 0) {
      dialog.cancel();
    } else if (win.document.getElementById("pi-cancel").textContent === "Close") {
      // partial failure: the dialog stays open until the user closes it
      dialog.cancel();
    }
    return ctx;
  };
}

test.describe("canInviteFromForm", () => {
  test("true when the contact has an email address", () => {
    const { PortalInvite } = setup();
    assert.equal(PortalInvite.canInviteFromForm(makeForm({ email: "avery@contoso.com" })), true);
  });

  test("false without an email address", () => {
    const { PortalInvite } = setup();
    assert.equal(PortalInvite.canInviteFromForm(makeForm({ email: null })), false);
    assert.equal(PortalInvite.canInviteFromForm(makeForm({ email: "   " })), false);
  });

  test("false on a contact that is not saved yet", () => {
    const { PortalInvite } = setup();
    assert.equal(PortalInvite.canInviteFromForm(makeForm({ email: "a@b.c", formType: 1 })), false);
  });

  test("false without a form context", () => {
    const { PortalInvite } = setup();
    assert.equal(PortalInvite.canInviteFromForm(undefined), false);
  });

  test("refreshes the command bar when the email changes, with one handler", () => {
    const { PortalInvite } = setup();
    const form = makeForm({ email: null });
    PortalInvite.canInviteFromForm(form);
    PortalInvite.canInviteFromForm(form);
    PortalInvite.canInviteFromForm(form);
    assert.equal(form.state.handlers.length, 1);
    form.state.email = "new@contoso.com";
    form.fireEmailChange();
    assert.equal(form.state.ribbonRefreshes, 1);
    assert.equal(PortalInvite.canInviteFromForm(form), true);
  });

  test("asks Dataverse when the email column is not on the form", async () => {
    const id = guid(7);
    const { PortalInvite, xrm } = setup({ contacts: { [id]: { emailaddress1: "x@contoso.com" } } });
    const form = makeForm({ id: "{" + id.toUpperCase() + "}", emailOnForm: false });
    assert.equal(await PortalInvite.canInviteFromForm(form), true);
    assert.deepEqual(xrm.calls.retrieve, [{ entity: "contact", id, options: "?$select=emailaddress1" }]);

    xrm.contacts[id].emailaddress1 = null;
    assert.equal(await PortalInvite.canInviteFromForm(form), false);
  });

  test("hidden when that lookup fails", async () => {
    const { PortalInvite } = setup({ failRetrieve: true });
    assert.equal(await PortalInvite.canInviteFromForm(makeForm({ emailOnForm: false })), false);
  });
});

test.describe("canInviteFromGrid", () => {
  const a = guid(1);
  const b = guid(2);
  const c = guid(3);
  const contacts = () => ({
    [a]: { emailaddress1: "a@contoso.com" },
    [b]: { emailaddress1: "b@contoso.com" },
    [c]: { emailaddress1: null }
  });

  test("true when every selected contact has an email address", async () => {
    const { PortalInvite, xrm } = setup({ contacts: contacts() });
    assert.equal(await PortalInvite.canInviteFromGrid(["{" + a.toUpperCase() + "}", b]), true);
    assert.equal(xrm.calls.retrieveMultiple.length, 1);
    const q = xrm.calls.retrieveMultiple[0];
    assert.equal(q.entity, "contact");
    assert.match(q.options, /^\?\$select=contactid,emailaddress1&\$filter=/);
    assert.match(decodeURIComponent(q.options), new RegExp(`contactid eq ${a} or contactid eq ${b}`));
  });

  test("false when one of them has none", async () => {
    const { PortalInvite } = setup({ contacts: contacts() });
    assert.equal(await PortalInvite.canInviteFromGrid([a, c]), false);
  });

  test("false when a selected contact no longer exists", async () => {
    const { PortalInvite } = setup({ contacts: contacts() });
    assert.equal(await PortalInvite.canInviteFromGrid([a, guid(99)]), false);
  });

  test("false without a selection, and above the cap without asking", async () => {
    const { PortalInvite, xrm } = setup({ contacts: contacts() });
    assert.equal(await PortalInvite.canInviteFromGrid([]), false);
    assert.equal(await PortalInvite.canInviteFromGrid(null), false);
    const many = Array.from({ length: PortalInvite.MAX_RECORDS + 1 }, (_, i) => guid(i + 100));
    assert.equal(await PortalInvite.canInviteFromGrid(many), false);
    assert.equal(xrm.calls.retrieveMultiple.length, 0);
  });

  test("false when the lookup fails", async () => {
    const { PortalInvite } = setup({ contacts: contacts(), failRetrieve: true });
    assert.equal(await PortalInvite.canInviteFromGrid([a]), false);
  });

  test("one lookup for concurrent evaluations of the same selection", async () => {
    const { PortalInvite, xrm } = setup({ contacts: contacts() });
    const results = await Promise.all([PortalInvite.canInviteFromGrid([a, b]), PortalInvite.canInviteFromGrid([b, a])]);
    assert.deepEqual(results, [true, true]);
    assert.equal(xrm.calls.retrieveMultiple.length, 1);
  });
});

test.describe("requestInvites", () => {
  test("writes Requested, the portal, the roles and clears the last error", async () => {
    const { PortalInvite, xrm } = setup();
    const id = guid(5);
    const result = await PortalInvite.requestInvites(xrm, defaultConfig(), [id], "Contoso Partner Portal", [
      "Partners",
      "Customers"
    ]);
    assert.deepEqual(xrm.calls.update, [
      {
        entity: "contact",
        id,
        data: {
          pinv_portalinvitestatus: 100000000,
          pinv_portalname: "Contoso Partner Portal",
          pinv_portalroles: "Partners,Customers",
          pinv_lastinviteerror: null
        }
      }
    ]);
    assert.deepEqual(result, {
      portal: "Contoso Partner Portal",
      roles: ["Partners", "Customers"],
      requested: [id],
      failed: []
    });
  });

  test("no roles clears the roles column so the portal defaults apply", async () => {
    const { PortalInvite, xrm } = setup();
    await PortalInvite.requestInvites(xrm, defaultConfig(), [guid(5)], "P", []);
    assert.equal(xrm.calls.update[0].data.pinv_portalroles, null);
  });

  test("uses the configured column names", async () => {
    const { PortalInvite, xrm } = setup();
    const cfg = defaultConfig();
    cfg.columns = { status: "acme_s", portal: "acme_p", roles: "acme_r", invitedOn: "acme_o", error: "acme_e" };
    await PortalInvite.requestInvites(xrm, cfg, [guid(5)], "P", ["R"]);
    assert.deepEqual(xrm.calls.update[0].data, { acme_s: 100000000, acme_p: "P", acme_r: "R", acme_e: null });
  });

  test("collects per-contact failures and keeps going", async () => {
    const ids = [guid(1), guid(2), guid(3)];
    const { PortalInvite, xrm } = setup({
      failUpdates: { [ids[1]]: { errorCode: 2147746336, message: "Principal user is missing prvWritecontact" } }
    });
    const result = await PortalInvite.requestInvites(xrm, defaultConfig(), ids, "P", []);
    assert.deepEqual(result.requested, [ids[0], ids[2]]);
    assert.deepEqual(result.failed, [{ id: ids[1], message: "Principal user is missing prvWritecontact" }]);
    assert.equal(xrm.calls.update.length, 3);
  });

  test("keeps at most four updates in flight", async () => {
    const { PortalInvite, xrm } = setup();
    const ids = Array.from({ length: 20 }, (_, i) => guid(i + 1));
    const result = await PortalInvite.requestInvites(xrm, defaultConfig(), ids, "P", []);
    assert.equal(result.requested.length, 20);
    assert.ok(xrm.calls.inFlightMax <= 4, `in flight ${xrm.calls.inFlightMax}`);
    assert.ok(xrm.calls.inFlightMax > 1, "updates should overlap");
  });

  test("each update gets its own body object", async () => {
    const { PortalInvite, xrm } = setup();
    const seen = [];
    xrm.WebApi.updateRecord = async (entity, id, data) => {
      seen.push(data);
      data.mutated = true;
    };
    await PortalInvite.requestInvites(xrm, defaultConfig(), [guid(1), guid(2)], "P", []);
    assert.notEqual(seen[0], seen[1]);
    assert.equal(seen[1].mutated, true);
  });
});

test.describe("summarize", () => {
  test("messages for success, partial and total failure", () => {
    const { PortalInvite } = setup();
    assert.deepEqual(PortalInvite.summarize({ portal: "P", requested: ["a"], failed: [] }), {
      level: "success",
      text: "Portal invitation requested for P. The invitation email follows shortly."
    });
    assert.equal(
      PortalInvite.summarize({ portal: "P", requested: ["a", "b"], failed: [] }).text,
      "Portal invitations requested for 2 contacts on P."
    );
    assert.deepEqual(PortalInvite.summarize({ portal: "P", requested: ["a"], failed: [{ id: "b", message: "boom" }] }), {
      level: "warning",
      text: "1 of 2 portal invitation requests failed: boom"
    });
    assert.deepEqual(PortalInvite.summarize({ portal: "P", requested: [], failed: [{ id: "b", message: "boom" }] }), {
      level: "error",
      text: "The portal invitation could not be requested: boom"
    });
    assert.equal(
      PortalInvite.summarize({ requested: [], failed: [{ message: "x" }, { message: "y" }] }).text,
      "None of the 2 portal invitations could be requested: x"
    );
  });
});

test.describe("openFromForm", () => {
  test("opens the dialog, writes the request, refreshes and notifies", async () => {
    const id = guid(1);
    const { PortalInvite, xrm } = setup({ onDialog: pickAndSend(["Partners"]) });
    const form = makeForm({ id: "{" + id.toUpperCase() + "}", email: "a@contoso.com" });
    await PortalInvite.openFromForm(form, DIALOG_NAME);

    assert.equal(xrm.calls.navigate.length, 1);
    const nav = xrm.calls.navigate[0];
    assert.equal(nav.pageInput.pageType, "webresource");
    assert.equal(nav.pageInput.webresourceName, DIALOG_NAME);
    const data = JSON.parse(nav.pageInput.data);
    assert.deepEqual(data.ids, [id]);
    assert.match(data.nonce, /^[0-9a-f]{24}$/);
    assert.equal(nav.options.target, 2);

    assert.deepEqual(
      xrm.calls.update.map((u) => [u.id, u.data]),
      [
        [
          id,
          {
            pinv_portalinvitestatus: 100000000,
            pinv_portalname: "Contoso Partner Portal",
            pinv_portalroles: "Partners",
            pinv_lastinviteerror: null
          }
        ]
      ]
    );
    assert.deepEqual(form.state.refreshed, [false]);
    assert.deepEqual(form.state.notifications, [
      {
        message: "Portal invitation requested for Contoso Partner Portal. The invitation email follows shortly.",
        level: "INFO",
        id: "portalinvite"
      }
    ]);
    assert.equal(globalThis.sessionStorage.length, 0, "the result is taken out of storage");
    assert.equal(xrm.calls.errorDialogs.length, 0);
  });

  test("saves a dirty form first", async () => {
    const { PortalInvite } = setup({ onDialog: pickAndSend([]) });
    const form = makeForm({ email: "a@contoso.com", dirty: true });
    await PortalInvite.openFromForm(form, DIALOG_NAME);
    assert.equal(form.state.saved, 1);
  });

  test("does nothing more when the dialog is cancelled", async () => {
    const { PortalInvite, xrm } = setup({
      onDialog: (win) => {
        const PI = loadInvite();
        PI.dialog.start(win).cancel();
      }
    });
    const form = makeForm({ email: "a@contoso.com" });
    await PortalInvite.openFromForm(form, DIALOG_NAME);
    assert.equal(xrm.calls.update.length, 0);
    assert.deepEqual(form.state.refreshed, []);
    assert.deepEqual(form.state.notifications, []);
  });

  test("reports a failed write on the form", async () => {
    const id = guid(1);
    const { PortalInvite, xrm } = setup({
      failUpdates: { [id]: { message: "Access denied" } },
      onDialog: pickAndSend([])
    });
    const form = makeForm({ id, email: "a@contoso.com" });
    await PortalInvite.openFromForm(form, DIALOG_NAME);
    // Nothing was written, so the dialog stayed open and reported nothing back.
    assert.equal(xrm.calls.update.length, 1);
    assert.deepEqual(form.state.notifications, []);
  });

  test("an unsaved contact gets an error dialog, not a dialog", async () => {
    const { PortalInvite, xrm } = setup({ onDialog: pickAndSend([]) });
    await PortalInvite.openFromForm(makeForm({ id: "", email: "a@b.c" }), DIALOG_NAME);
    assert.equal(xrm.calls.navigate.length, 0);
    assert.equal(xrm.calls.errorDialogs.length, 1);
    assert.match(xrm.calls.errorDialogs[0].message, /Save the contact/);
  });

  test("an error while opening is shown, not thrown", async () => {
    const { PortalInvite, xrm } = setup();
    xrm.Navigation.navigateTo = () => Promise.reject(new Error("navigation blocked"));
    await PortalInvite.openFromForm(makeForm({ email: "a@b.c" }), DIALOG_NAME);
    assert.deepEqual(xrm.calls.errorDialogs, [{ message: "navigation blocked" }]);
  });
});

test.describe("openFromGrid", () => {
  test("requests for every selected contact, refreshes the grid and notifies", async () => {
    const ids = [guid(1), guid(2), guid(3)];
    const { PortalInvite, xrm } = setup({ onDialog: pickAndSend(["Customers"]) });
    let refreshed = 0;
    await PortalInvite.openFromGrid(
      ids.map((id) => "{" + id.toUpperCase() + "}"),
      { refresh: () => refreshed++ },
      DIALOG_NAME
    );
    assert.deepEqual(JSON.parse(xrm.calls.navigate[0].pageInput.data).ids, ids);
    assert.deepEqual(xrm.calls.update.map((u) => u.id).sort(), ids);
    xrm.calls.update.forEach((u) => assert.equal(u.data.pinv_portalroles, "Customers"));
    assert.equal(refreshed, 1);
    assert.deepEqual(xrm.calls.globalNotifications, [
      {
        type: 2,
        level: 1,
        message: "Portal invitations requested for 3 contacts on Contoso Partner Portal.",
        showCloseButton: true
      }
    ]);
  });

  test("a partial failure is a warning", async () => {
    const ids = [guid(1), guid(2)];
    const { PortalInvite, xrm } = setup({
      failUpdates: { [ids[0]]: { message: "Record is locked" } },
      onDialog: pickAndSend([])
    });
    await PortalInvite.openFromGrid(ids, { refresh() {} }, DIALOG_NAME);
    assert.equal(xrm.calls.globalNotifications.length, 1);
    assert.equal(xrm.calls.globalNotifications[0].level, 3);
    assert.equal(xrm.calls.globalNotifications[0].message, "1 of 2 portal invitation requests failed: Record is locked");
  });

  test("refuses an empty or oversized selection", async () => {
    const { PortalInvite, xrm } = setup({ onDialog: pickAndSend([]) });
    await PortalInvite.openFromGrid([], null, DIALOG_NAME);
    const many = Array.from({ length: PortalInvite.MAX_RECORDS + 1 }, (_, i) => guid(i + 1));
    await PortalInvite.openFromGrid(many, null, DIALOG_NAME);
    assert.equal(xrm.calls.navigate.length, 0);
    assert.equal(xrm.calls.errorDialogs.length, 2);
  });

  test("works when sessionStorage is unavailable", async () => {
    const { PortalInvite, xrm } = setup({ onDialog: pickAndSend([]) });
    delete globalThis.sessionStorage;
    let refreshed = 0;
    await PortalInvite.openFromGrid([guid(1)], { refresh: () => refreshed++ }, DIALOG_NAME);
    // The write happened; without the hand-back there is just no message.
    assert.equal(xrm.calls.update.length, 1);
    assert.equal(refreshed, 0);
    assert.equal(xrm.calls.globalNotifications.length, 0);
    assert.equal(xrm.calls.errorDialogs.length, 0);
  });
});
