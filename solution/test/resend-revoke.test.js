// Resend invitation and Revoke invitation: the command value written into the
// status column from the form and from grids.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { loadInvite, FakeStorage, guid, makeXrm, makeForm } = require("./fakes");

const COLUMN = "pinv_portalinvitestatus";
const RESEND = 100000005;
const REVOKE = 100000006;

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

test("form: Resend writes the resend value only, refreshes and notifies", async () => {
  const id = guid(1);
  const { PortalInvite, xrm } = setup();
  const form = makeForm({ id: "{" + id.toUpperCase() + "}", email: "a@contoso.com", dirty: true });
  await PortalInvite.commandFromForm(form, COLUMN, RESEND, "resend");
  assert.equal(form.state.saved, 1, "a dirty form is saved first");
  assert.deepEqual(
    xrm.calls.update.map((u) => [u.entity, u.id, u.data]),
    [["contact", id, { [COLUMN]: RESEND }]]
  );
  assert.deepEqual(form.state.refreshed, [false]);
  assert.equal(form.state.notifications.length, 1);
  assert.equal(form.state.notifications[0].level, "INFO");
  assert.match(form.state.notifications[0].message, /^Resend requested for the invitation\./);
  assert.equal(xrm.calls.errorDialogs.length, 0);
});

test("form: a failed write is reported as an error", async () => {
  const id = guid(2);
  const { PortalInvite } = setup({ failUpdates: { [id]: { message: "Principal user is missing prvWriteContact" } } });
  const form = makeForm({ id, email: "a@contoso.com" });
  await PortalInvite.commandFromForm(form, COLUMN, REVOKE, "revoke");
  assert.equal(form.state.notifications[0].level, "ERROR");
  assert.match(form.state.notifications[0].message, /1 of 1 revoke requests failed: Principal user is missing prvWriteContact/);
});

test("grid: Revoke writes the revoke value on every selected contact and refreshes", async () => {
  const ids = [guid(3), guid(4), guid(5)];
  const { PortalInvite, xrm } = setup();
  let refreshed = 0;
  await PortalInvite.commandFromGrid(ids, { refresh: () => refreshed++ }, COLUMN, REVOKE, "revoke");
  assert.deepEqual(
    xrm.calls.update.map((u) => u.id).sort(),
    [...ids].sort()
  );
  for (const u of xrm.calls.update) {
    assert.deepEqual(u.data, { [COLUMN]: REVOKE });
  }
  assert.equal(refreshed, 1);
  assert.equal(xrm.calls.globalNotifications.length, 1);
  assert.match(xrm.calls.globalNotifications[0].message, /^Revoke requested for 3 invitations\./);
});

test("grid: nothing selected, or more than the cap, writes nothing", async () => {
  const { PortalInvite, xrm } = setup();
  await PortalInvite.commandFromGrid([], null, COLUMN, RESEND, "resend");
  const many = Array.from({ length: PortalInvite.MAX_RECORDS + 1 }, (_, i) => guid(100 + i));
  await PortalInvite.commandFromGrid(many, null, COLUMN, RESEND, "resend");
  assert.equal(xrm.calls.update.length, 0);
  assert.equal(xrm.calls.errorDialogs.length, 2);
});
