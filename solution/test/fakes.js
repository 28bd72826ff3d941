// Test doubles for the web resources: a fake Xrm (WebApi, Navigation, App),
// a fake form context, sessionStorage, and a minimal DOM built from the ids in
// the real dialog.html, so the tests exercise the markup that ships.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");

const WEB = path.join(__dirname, "..", "WebResources");
const INVITE_JS = path.join(WEB, "invite.js");
const DIALOG_HTML = path.join(WEB, "dialog.html");
const DIALOG_NAME = "pinv_/portalinvite/dialog.html";

// The config `connector solution pack` generates for the default prefix.
function defaultConfig(portals) {
  return {
    entity: "contact",
    columns: {
      status: "pinv_portalinvitestatus",
      portal: "pinv_portalname",
      roles: "pinv_portalroles",
      invitedOn: "pinv_lastinvitedon",
      error: "pinv_lastinviteerror"
    },
    status: { requested: 100000000, sent: 100000001, failed: 100000002, redeemed: 100000003, delivered: 100000004 },
    portals:
      portals === undefined
        ? [
            {
              name: "Contoso Partner Portal",
              roles: ["Authenticated Users", "Partners", "Customers"],
              defaultRoles: ["Authenticated Users"]
            },
            { name: "Contoso Customer Portal", roles: ["Customers", "Administrators"], defaultRoles: [] }
          ]
        : portals
  };
}

// loadInvite returns a fresh copy of invite.js (module state included).
function loadInvite() {
  delete require.cache[require.resolve(INVITE_JS)];
  return require(INVITE_JS);
}

// loadConfigFile evaluates a generated config.js the way a browser would and
// returns the PortalInviteConfig it defines.
function loadConfigFile(file) {
  const sandbox = {};
  vm.runInNewContext(fs.readFileSync(file, "utf8"), sandbox, { filename: file });
  // Copied into this realm so that deepStrictEqual compares like with like.
  return JSON.parse(JSON.stringify(sandbox.PortalInviteConfig));
}

class FakeStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
  get length() {
    return this.map.size;
  }
}

function guid(n) {
  const hex = n.toString(16).padStart(12, "0");
  return `00000000-0000-4000-8000-${hex}`;
}

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// makeXrm builds a fake Xrm. contacts maps id -> {emailaddress1,...};
// failUpdates maps id -> error object thrown by updateRecord; onDialog(win,
// ctx) runs the dialog that navigateTo opened.
function makeXrm(opts = {}) {
  const contacts = opts.contacts || {};
  const failUpdates = opts.failUpdates || {};
  const calls = {
    update: [],
    retrieve: [],
    retrieveMultiple: [],
    navigate: [],
    globalNotifications: [],
    errorDialogs: [],
    inFlightMax: 0
  };
  let inFlight = 0;
  const xrm = {
    calls,
    contacts,
    WebApi: {
      async updateRecord(entity, id, data) {
        calls.update.push({ entity, id, data: JSON.parse(JSON.stringify(data)) });
        inFlight++;
        calls.inFlightMax = Math.max(calls.inFlightMax, inFlight);
        await new Promise((r) => setImmediate(r));
        inFlight--;
        if (failUpdates[id]) {
          throw failUpdates[id];
        }
        contacts[id] = Object.assign({}, contacts[id], data);
        return { entityType: entity, id };
      },
      async retrieveRecord(entity, id, options) {
        calls.retrieve.push({ entity, id, options });
        if (opts.failRetrieve) {
          throw { errorCode: 2147746611, message: "retrieve failed" };
        }
        if (!contacts[id]) {
          throw { errorCode: 2147746611, message: "contact not found" };
        }
        return Object.assign({ contactid: id }, contacts[id]);
      },
      async retrieveMultipleRecords(entity, options, maxPageSize) {
        calls.retrieveMultiple.push({ entity, options, maxPageSize });
        if (opts.failRetrieve) {
          throw { errorCode: 2147746611, message: "retrieve failed" };
        }
        const filter = decodeURIComponent(options.split("$filter=")[1] || "");
        const ids = [...filter.matchAll(/contactid eq ([0-9a-f-]{36})/g)].map((m) => m[1]);
        const entities = ids
          .filter((id) => contacts[id])
          .map((id) => Object.assign({ contactid: id }, contacts[id]));
        return { entities };
      }
    },
    Navigation: {
      navigateTo(pageInput, options) {
        calls.navigate.push({ pageInput, options });
        const closed = deferred();
        if (opts.onDialog) {
          const host = makeHost(() => closed.resolve());
          const win = makeDialogWindow({
            search: "?data=" + encodeURIComponent(pageInput.data),
            parent: host,
            config: opts.dialogConfig === undefined ? defaultConfig() : opts.dialogConfig
          });
          host.Xrm = xrm;
          Promise.resolve(opts.onDialog(win, { close: () => closed.resolve(), host })).catch(closed.reject);
        } else {
          closed.resolve();
        }
        return closed.promise;
      },
      openErrorDialog(options) {
        calls.errorDialogs.push(options);
        return Promise.resolve();
      }
    },
    App: {
      addGlobalNotification(notification) {
        calls.globalNotifications.push(notification);
        return Promise.resolve("n" + calls.globalNotifications.length);
      }
    }
  };
  return xrm;
}

// makeForm fakes the formContext the ribbon passes as PrimaryControl.
function makeForm(opts = {}) {
  const handlers = [];
  const state = {
    id: opts.id === undefined ? "{" + guid(1).toUpperCase() + "}" : opts.id,
    formType: opts.formType || 2,
    dirty: !!opts.dirty,
    email: opts.email,
    notifications: [],
    cleared: [],
    refreshed: [],
    saved: 0,
    ribbonRefreshes: 0,
    handlers
  };
  const attribute = {
    getValue: () => state.email,
    addOnChange: (fn) => handlers.push(fn),
    removeOnChange: (fn) => {
      const i = handlers.indexOf(fn);
      if (i >= 0) handlers.splice(i, 1);
    }
  };
  const form = {
    state,
    getAttribute: (name) => (name === "emailaddress1" && opts.emailOnForm !== false ? attribute : null),
    data: {
      entity: { getId: () => state.id },
      getIsDirty: () => state.dirty,
      save: async () => {
        state.saved++;
        state.dirty = false;
      },
      refresh: async (save) => {
        state.refreshed.push(save);
      }
    },
    ui: {
      getFormType: () => state.formType,
      setFormNotification: (message, level, id) => {
        state.notifications.push({ message, level, id });
        return true;
      },
      clearFormNotification: (id) => {
        state.cleared.push(id);
        return true;
      },
      refreshRibbon: () => {
        state.ribbonRefreshes++;
      }
    }
  };
  form.fireEmailChange = () => handlers.forEach((fn) => fn({ getFormContext: () => form }));
  return form;
}

// ------------------------------------------------------------------ fake DOM

class FakeElement {
  constructor(doc, tag, id) {
    this.ownerDocument = doc;
    this.tagName = String(tag).toUpperCase();
    this.id = id || "";
    this.children = [];
    this.parentNode = null;
    this._text = "";
    this.value = "";
    this.checked = false;
    this.disabled = false;
    this.hidden = false;
    this.className = "";
    this.type = "";
    this.listeners = {};
    this.clicks = 0;
  }
  get textContent() {
    return this._text + this.children.map((c) => c.textContent).join("");
  }
  set textContent(v) {
    this._text = String(v);
    this.children = [];
  }
  get innerHTML() {
    throw new Error("innerHTML is not supported by the fake DOM (and must not be used)");
  }
  set innerHTML(v) {
    throw new Error("innerHTML is not supported by the fake DOM (and must not be used)");
  }
  appendChild(child) {
    this.children.push(child);
    child.parentNode = this;
    return child;
  }
  replaceChildren(...nodes) {
    this.children = [];
    nodes.forEach((n) => this.appendChild(n));
  }
  addEventListener(type, fn) {
    (this.listeners[type] = this.listeners[type] || []).push(fn);
  }
  dispatch(type, event = {}) {
    (this.listeners[type] || []).forEach((fn) => fn(event));
  }
  click() {
    this.clicks++;
    this.dispatch("click", {});
  }
  find(predicate) {
    const out = [];
    const walk = (el) => {
      el.children.forEach((c) => {
        if (predicate(c)) out.push(c);
        walk(c);
      });
    };
    walk(this);
    return out;
  }
}

class FakeDocument {
  constructor() {
    this.byId = new Map();
  }
  createElement(tag) {
    return new FakeElement(this, tag);
  }
  getElementById(id) {
    return this.byId.get(id) || null;
  }
}

// dialogDocument builds a FakeDocument holding one element per id in the
// real dialog.html, with the tag name and the hidden flag the markup gives.
function dialogDocument(htmlFile = DIALOG_HTML) {
  const html = fs.readFileSync(htmlFile, "utf8");
  const doc = new FakeDocument();
  for (const m of html.matchAll(/<(\w+)([^>]*?)\sid="([^"]+)"([^>]*)>/g)) {
    const attrs = m[2] + " " + m[4];
    const el = new FakeElement(doc, m[1], m[3]);
    el.hidden = /\shidden(\s|\/|$)/.test(" " + attrs + " ");
    const type = attrs.match(/type="([^"]+)"/);
    if (type) el.type = type[1];
    el.textContent = "";
    doc.byId.set(m[3], el);
  }
  const cancel = doc.getElementById("pi-cancel");
  if (cancel) cancel.textContent = "Cancel";
  return doc;
}

// makeHost fakes the app page around the dialog: its close button ends the
// dialog, as the real one does.
function makeHost(onClose) {
  const closeButton = new FakeElement(new FakeDocument(), "button", "");
  closeButton.addEventListener("click", onClose);
  return {
    closeButton,
    document: {
      querySelector(selector) {
        return selector === "button[data-id='dialogCloseIconButton']" ? closeButton : null;
      }
    }
  };
}

function makeDialogWindow({ search, parent, config, xrm, html }) {
  const win = {
    document: dialogDocument(html),
    location: { search: search || "" },
    PortalInviteConfig: config,
    closedByWindowClose: false,
    close() {
      this.closedByWindowClose = true;
    }
  };
  win.parent = parent || win;
  if (xrm) win.Xrm = xrm;
  return win;
}

module.exports = {
  WEB,
  INVITE_JS,
  DIALOG_HTML,
  DIALOG_NAME,
  defaultConfig,
  loadInvite,
  loadConfigFile,
  FakeStorage,
  FakeElement,
  guid,
  makeXrm,
  makeForm,
  makeHost,
  makeDialogWindow,
  dialogDocument
};
