// The web resources as `connector solution pack` ships them: the Go test in
// internal/solution packs a solution with its own prefix and portals, unpacks
// config.js, invite.js and dialog.html into PORTALINVITE_PACKED_DIR and runs
// these tests against them.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { loadConfigFile, FakeStorage, guid, makeXrm, makeHost, makeDialogWindow } = require("./fakes");

const dir = process.env.PORTALINVITE_PACKED_DIR;
const prefix = process.env.PORTALINVITE_PACKED_PREFIX || "pinv";
const skip = dir ? false : "PORTALINVITE_PACKED_DIR is not set (go test ./internal/solution sets it)";

test.afterEach(() => {
  delete globalThis.sessionStorage;
});

test("the generated config names the prefixed columns and fixed status values", { skip }, () => {
  const cfg = loadConfigFile(path.join(dir, "config.js"));
  assert.deepEqual(cfg.columns, {
    status: `${prefix}_portalinvitestatus`,
    portal: `${prefix}_portalname`,
    roles: `${prefix}_portalroles`,
    invitedOn: `${prefix}_lastinvitedon`,
    error: `${prefix}_lastinviteerror`
  });
  assert.deepEqual(cfg.status, { requested: 100000000, sent: 100000001, failed: 100000002, redeemed: 100000003, delivered: 100000004,
    resend: 100000005, revoke: 100000006, revoked: 100000007, expired: 100000008 });
  assert.equal(cfg.entity, "contact");
  assert.ok(Array.isArray(cfg.portals) && cfg.portals.length > 0, "the Go test packs with portals");
});

test("the packed dialog offers the configured portals and writes the prefixed columns", { skip }, async () => {
  const cfg = loadConfigFile(path.join(dir, "config.js"));
  const PortalInvite = require(path.join(dir, "invite.js"));
  globalThis.sessionStorage = new FakeStorage();
  const xrm = makeXrm();
  let closed = 0;
  const host = makeHost(() => closed++);
  host.Xrm = xrm;
  const id = guid(9);
  const win = makeDialogWindow({
    html: path.join(dir, "dialog.html"),
    search: "?data=" + encodeURIComponent(JSON.stringify({ ids: [id], nonce: "packed" })),
    parent: host,
    config: cfg
  });
  const dialog = PortalInvite.dialog.start(win);
  const select = win.document.getElementById("pi-portal");
  assert.deepEqual(
    select.children.map((o) => o.value),
    cfg.portals.map((p) => p.name)
  );
  const first = cfg.portals[0];
  assert.deepEqual(
    dialog.roleInputs.filter((r) => r.input.checked).map((r) => r.role),
    first.defaultRoles
  );
  dialog.roleInputs.forEach((r) => (r.input.checked = true));

  await dialog.submit();
  assert.equal(closed, 1);
  assert.deepEqual(xrm.calls.update, [
    {
      entity: "contact",
      id,
      data: {
        [`${prefix}_portalinvitestatus`]: 100000000,
        [`${prefix}_portalname`]: first.name,
        [`${prefix}_portalroles`]: first.roles.join(","),
        [`${prefix}_lastinviteerror`]: null
      }
    }
  ]);
});
