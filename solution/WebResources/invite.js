/*
 * Portal invitations: the "Invite to portal" command on the contact form and
 * contact grids, and the logic of the dialog that picks the portal and roles.
 *
 * The command only records a request on the contact (invite status =
 * Requested, portal name, role names); the connector notices the change,
 * creates the Power Pages invitation and email, and writes the outcome back to
 * the same columns. Column names and option values reach this file through
 * config.js, which `connector solution pack` generates next to the dialog.
 *
 * The ribbon calls the functions below by their global names
 * (PortalInvite.canInviteFromForm, ...). Under Node the object is exported for
 * the tests instead.
 */
var PortalInvite = (function () {
  "use strict";

  var EMAIL = "emailaddress1";
  var NOTIFICATION_ID = "portalinvite";
  var RESULT_KEY = "portalinvite:result:";
  var GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  // Same cap as the SelectionCountRule in the ribbon: the ids travel to the
  // dialog in its URL, and one click should not fan out into a mass mailing.
  var MAX_RECORDS = 50;
  // Parallel updates from the dialog: enough to be quick for a grid
  // selection, few enough to stay far from the service protection limits.
  var CONCURRENCY = 4;
  var FORM_TYPE_CREATE = 1;
  var NOTIFICATION_SUCCESS = 1;
  var NOTIFICATION_ERROR = 2;
  var NOTIFICATION_WARNING = 3;
  var PORTAL_MAX = 100;
  var ROLES_MAX = 1000;

  var api = {};

  // ---------------------------------------------------------------- helpers

  function currentXrm() {
    return typeof Xrm !== "undefined" ? Xrm : undefined;
  }

  function currentStorage() {
    try {
      return typeof sessionStorage !== "undefined" ? sessionStorage : null;
    } catch (e) {
      return null; // storage blocked by the browser
    }
  }

  function cleanId(id) {
    return String(id == null ? "" : id).replace(/[{}]/g, "").trim().toLowerCase();
  }

  // normalizeIds turns whatever the ribbon passes (a string, an array, ids
  // with or without braces) into distinct lower-case GUIDs, dropping junk.
  function normalizeIds(ids) {
    var list = Array.isArray(ids) ? ids : ids == null ? [] : [ids];
    var seen = {};
    var out = [];
    list.forEach(function (raw) {
      var id = cleanId(raw);
      if (GUID.test(id) && !seen[id]) {
        seen[id] = true;
        out.push(id);
      }
    });
    return out;
  }

  function hasEmail(value) {
    return typeof value === "string" && value.trim() !== "";
  }

  function errorMessage(err) {
    if (!err) {
      return "Unknown error.";
    }
    if (typeof err === "string") {
      return err;
    }
    if (err.message) {
      return String(err.message);
    }
    return String(err);
  }

  function newNonce() {
    var bytes = new Uint8Array(12);
    var c = typeof crypto !== "undefined" ? crypto : null;
    if (c && typeof c.getRandomValues === "function") {
      c.getRandomValues(bytes);
    } else {
      for (var i = 0; i < bytes.length; i++) {
        bytes[i] = Math.floor(Math.random() * 256);
      }
    }
    return Array.prototype.map
      .call(bytes, function (b) {
        return ("0" + b.toString(16)).slice(-2);
      })
      .join("");
  }

  // forEachLimit runs fn over items with at most limit calls in flight.
  function forEachLimit(items, limit, fn) {
    var next = 0;
    function worker() {
      if (next >= items.length) {
        return Promise.resolve();
      }
      var item = items[next++];
      return Promise.resolve()
        .then(function () {
          return fn(item);
        })
        .then(worker);
    }
    var workers = [];
    for (var i = 0; i < Math.min(limit, items.length); i++) {
      workers.push(worker());
    }
    return Promise.all(workers);
  }

  function showError(xrm, err) {
    var message = errorMessage(err);
    if (xrm && xrm.Navigation && xrm.Navigation.openErrorDialog) {
      return Promise.resolve(xrm.Navigation.openErrorDialog({ message: message })).catch(function () {});
    }
    return Promise.resolve();
  }

  // ------------------------------------------------------------ enable rules

  // Re-evaluates the command bar when the email changes, so the button
  // appears as soon as an address is typed in. Removing before adding keeps
  // one handler however often the rule runs.
  function onEmailChange(executionContext) {
    var formContext = executionContext && executionContext.getFormContext && executionContext.getFormContext();
    if (formContext && formContext.ui && formContext.ui.refreshRibbon) {
      formContext.ui.refreshRibbon();
    }
  }

  /**
   * Enable rule for the contact form (CrmParameter PrimaryControl). False for
   * an unsaved contact and for one without an email address; with the email
   * column missing from the form it asks Dataverse instead.
   */
  api.canInviteFromForm = function (formContext) {
    if (!formContext || !formContext.ui || !formContext.data) {
      return false;
    }
    if (formContext.ui.getFormType && formContext.ui.getFormType() === FORM_TYPE_CREATE) {
      return false;
    }
    var attribute = formContext.getAttribute ? formContext.getAttribute(EMAIL) : null;
    if (attribute) {
      if (attribute.removeOnChange && attribute.addOnChange) {
        attribute.removeOnChange(onEmailChange);
        attribute.addOnChange(onEmailChange);
      }
      return hasEmail(attribute.getValue());
    }
    var id = normalizeIds(formContext.data.entity && formContext.data.entity.getId())[0];
    var xrm = currentXrm();
    if (!id || !xrm) {
      return false;
    }
    return xrm.WebApi.retrieveRecord("contact", id, "?$select=" + EMAIL).then(
      function (row) {
        return hasEmail(row && row[EMAIL]);
      },
      function () {
        return false;
      }
    );
  };

  var pendingGrid = {};

  /**
   * Enable rule for contact grids (CrmParameter
   * SelectedControlSelectedItemIds). Resolves true when 1..50 contacts are
   * selected and every one of them has an email address.
   */
  api.canInviteFromGrid = function (selectedIds) {
    var ids = normalizeIds(selectedIds);
    if (ids.length === 0 || ids.length > MAX_RECORDS) {
      return Promise.resolve(false);
    }
    var xrm = currentXrm();
    if (!xrm) {
      return Promise.resolve(false);
    }
    var key = ids.slice().sort().join(",");
    if (pendingGrid[key]) {
      return pendingGrid[key]; // the same selection is being checked already
    }
    var filter = ids
      .map(function (id) {
        return "contactid eq " + id;
      })
      .join(" or ");
    var query = "?$select=contactid," + EMAIL + "&$filter=" + encodeURIComponent(filter);
    var promise = xrm.WebApi.retrieveMultipleRecords("contact", query, MAX_RECORDS)
      .then(
        function (res) {
          var rows = (res && res.entities) || [];
          var withEmail = rows.filter(function (row) {
            return hasEmail(row[EMAIL]);
          });
          return rows.length === ids.length && withEmail.length === ids.length;
        },
        function () {
          return false;
        }
      )
      .then(function (ok) {
        delete pendingGrid[key];
        return ok;
      });
    pendingGrid[key] = promise;
    return promise;
  };

  // ---------------------------------------------------------------- commands

  function openDialog(xrm, dialogName, ids) {
    var nonce = newNonce();
    var pageInput = {
      pageType: "webresource",
      webresourceName: dialogName,
      data: JSON.stringify({ ids: ids, nonce: nonce })
    };
    var options = {
      target: 2,
      position: 1,
      width: { value: 520, unit: "px" },
      height: { value: 600, unit: "px" },
      title: "Invite to portal"
    };
    return Promise.resolve(xrm.Navigation.navigateTo(pageInput, options)).then(function () {
      return takeResult(nonce);
    });
  }

  // The dialog hands its outcome back through sessionStorage: navigateTo
  // reports only that the dialog closed, and both pages share the origin.
  function takeResult(nonce) {
    var storage = currentStorage();
    if (!storage) {
      return null;
    }
    try {
      var raw = storage.getItem(RESULT_KEY + nonce);
      storage.removeItem(RESULT_KEY + nonce);
      return raw ? JSON.parse(raw) : null;
    } catch (e) {
      return null;
    }
  }

  function storeResult(nonce, result) {
    var storage = currentStorage();
    if (!storage || !nonce) {
      return;
    }
    try {
      storage.setItem(RESULT_KEY + nonce, JSON.stringify(result));
    } catch (e) {
      // The opener then only refreshes; the contact columns tell the rest.
    }
  }

  /**
   * summarize turns a request result into the message the user sees.
   * level is "success", "warning" or "error".
   */
  api.summarize = function (result) {
    var ok = (result && result.requested) || [];
    var failed = (result && result.failed) || [];
    var portal = (result && result.portal) || "the portal";
    var total = ok.length + failed.length;
    if (failed.length === 0) {
      if (ok.length === 1) {
        return {
          level: "success",
          text: "Portal invitation requested for " + portal + ". The invitation email follows shortly."
        };
      }
      return {
        level: "success",
        text: "Portal invitations requested for " + ok.length + " contacts on " + portal + "."
      };
    }
    var first = failed[0].message;
    if (ok.length === 0) {
      return {
        level: "error",
        text:
          (total === 1
            ? "The portal invitation could not be requested: "
            : "None of the " + total + " portal invitations could be requested: ") + first
      };
    }
    return {
      level: "warning",
      text: failed.length + " of " + total + " portal invitation requests failed: " + first
    };
  };

  function notifyForm(formContext, result) {
    var summary = api.summarize(result);
    var level = summary.level === "success" ? "INFO" : summary.level === "warning" ? "WARNING" : "ERROR";
    formContext.ui.setFormNotification(summary.text, level, NOTIFICATION_ID);
  }

  function notifyApp(xrm, result) {
    var summary = api.summarize(result);
    if (!xrm || !xrm.App || !xrm.App.addGlobalNotification) {
      return Promise.resolve();
    }
    var level =
      summary.level === "success"
        ? NOTIFICATION_SUCCESS
        : summary.level === "warning"
          ? NOTIFICATION_WARNING
          : NOTIFICATION_ERROR;
    return Promise.resolve(
      xrm.App.addGlobalNotification({ type: 2, level: level, message: summary.text, showCloseButton: true })
    ).catch(function () {});
  }

  /**
   * Command for the contact form: CrmParameter PrimaryControl and the name of
   * the dialog web resource (StringParameter).
   */
  api.openFromForm = function (formContext, dialogName) {
    var xrm = currentXrm();
    return Promise.resolve()
      .then(function () {
        var id = normalizeIds(formContext.data.entity.getId())[0];
        if (!id) {
          throw new Error("Save the contact before inviting it to a portal.");
        }
        var save = formContext.data.getIsDirty && formContext.data.getIsDirty() ? formContext.data.save() : null;
        return Promise.resolve(save).then(function () {
          if (formContext.ui.clearFormNotification) {
            formContext.ui.clearFormNotification(NOTIFICATION_ID);
          }
          return openDialog(xrm, dialogName, [id]);
        });
      })
      .then(function (result) {
        if (!result) {
          return undefined; // cancelled
        }
        return Promise.resolve(formContext.data.refresh(false)).then(function () {
          notifyForm(formContext, result);
        });
      })
      .catch(function (err) {
        return showError(xrm, err);
      });
  };

  /**
   * Command for contact grids: CrmParameters SelectedControlSelectedItemIds
   * and SelectedControl, and the dialog web resource name.
   */
  api.openFromGrid = function (selectedIds, selectedControl, dialogName) {
    var xrm = currentXrm();
    var ids = normalizeIds(selectedIds);
    return Promise.resolve()
      .then(function () {
        if (ids.length === 0) {
          throw new Error("Select at least one contact.");
        }
        if (ids.length > MAX_RECORDS) {
          throw new Error("Select at most " + MAX_RECORDS + " contacts at a time.");
        }
        return openDialog(xrm, dialogName, ids);
      })
      .then(function (result) {
        if (!result) {
          return undefined;
        }
        if (selectedControl && selectedControl.refresh) {
          selectedControl.refresh();
        }
        return notifyApp(xrm, result);
      })
      .catch(function (err) {
        return showError(xrm, err);
      });
  };

  // ------------------------------------------------------------------ request

  /**
   * requestInvites writes the request onto each contact: status Requested,
   * the portal name, the comma-separated role names (null for the portal's
   * default roles) and a cleared last error. Per-contact failures are
   * collected, not thrown.
   */
  api.requestInvites = function (xrm, cfg, ids, portal, roles) {
    var columns = cfg.columns;
    var body = {};
    body[columns.status] = cfg.status.requested;
    body[columns.portal] = portal;
    body[columns.roles] = roles && roles.length ? roles.join(",") : null;
    body[columns.error] = null;
    return updateEach(xrm, cfg.entity || "contact", ids, body).then(function (result) {
      result.portal = portal;
      result.roles = roles ? roles.slice() : [];
      return result;
    });
  };

  /**
   * updateEach writes the same columns onto each record, a few at a time,
   * and reports which ids were written and which failed with what message
   * (per-record failures are collected, not thrown).
   */
  function updateEach(xrm, entity, ids, body) {
    var done = {};
    var failures = {};
    return forEachLimit(ids, CONCURRENCY, function (id) {
      var row = {};
      Object.keys(body).forEach(function (k) {
        row[k] = body[k];
      });
      return Promise.resolve()
        .then(function () {
          return xrm.WebApi.updateRecord(entity, id, row);
        })
        .then(
          function () {
            done[id] = true;
          },
          function (err) {
            failures[id] = errorMessage(err);
          }
        );
    }).then(function () {
      return {
        requested: ids.filter(function (id) {
          return done[id];
        }),
        failed: ids
          .filter(function (id) {
            return failures[id] !== undefined;
          })
          .map(function (id) {
            return { id: id, message: failures[id] };
          })
      };
    });
  }

  // ------------------------------------------------------------------- dialog

  /**
   * parseDialogData reads the ids and nonce the command passed through
   * navigateTo (the "data" query parameter, encoded once or twice depending
   * on the host).
   */
  api.parseDialogData = function (search) {
    var raw = null;
    String(search || "")
      .replace(/^\?/, "")
      .split("&")
      .forEach(function (pair) {
        var eq = pair.indexOf("=");
        var name = eq < 0 ? pair : pair.slice(0, eq);
        if (raw === null && decodeURIComponent(name) === "data") {
          raw = decodeURIComponent((eq < 0 ? "" : pair.slice(eq + 1)).replace(/\+/g, " "));
        }
      });
    var parsed = null;
    [raw, raw && safeDecode(raw)].some(function (candidate) {
      try {
        parsed = candidate ? JSON.parse(candidate) : null;
      } catch (e) {
        parsed = null;
      }
      return parsed !== null;
    });
    parsed = parsed || {};
    return {
      ids: normalizeIds(parsed.ids).slice(0, MAX_RECORDS),
      nonce: typeof parsed.nonce === "string" ? parsed.nonce : ""
    };
  };

  function safeDecode(s) {
    try {
      return decodeURIComponent(s);
    } catch (e) {
      return s;
    }
  }

  function splitRoles(text) {
    var seen = {};
    return String(text || "")
      .split(",")
      .map(function (r) {
        return r.trim();
      })
      .filter(function (r) {
        var key = r.toLowerCase();
        if (!r || seen[key]) {
          return false;
        }
        seen[key] = true;
        return true;
      });
  }

  // The Xrm of the app that opened the dialog: HTML web resources get no
  // Xrm of their own, the parent page has it.
  function dialogXrm(win) {
    try {
      if (win.Xrm) {
        return win.Xrm;
      }
      if (win.parent && win.parent !== win && win.parent.Xrm) {
        return win.parent.Xrm;
      }
    } catch (e) {
      // a parent on another origin: no Xrm
    }
    return null;
  }

  // closeDialog closes the dialog navigateTo opened. HTML web resources have
  // no supported call for that; pressing the host's own close button is the
  // established way. When that button cannot be found the dialog stays open
  // showing its outcome, and the user closes it.
  function closeDialog(win) {
    try {
      var host = win.parent && win.parent !== win ? win.parent.document : null;
      var button = host && host.querySelector ? host.querySelector("button[data-id='dialogCloseIconButton']") : null;
      if (button) {
        button.click();
        return true;
      }
    } catch (e) {
      // another origin or a changed host page
    }
    return false;
  }

  function Dialog(win) {
    this.win = win;
    this.doc = win.document;
    this.cfg = win.PortalInviteConfig || null;
    this.xrm = dialogXrm(win);
    this.data = api.parseDialogData(win.location && win.location.search);
    this.roleInputs = [];
    this.busy = false;
    this.finished = false;
  }

  Dialog.prototype.el = function (id) {
    return this.doc.getElementById(id);
  };

  Dialog.prototype.portals = function () {
    return (this.cfg && Array.isArray(this.cfg.portals) && this.cfg.portals) || [];
  };

  Dialog.prototype.freeText = function () {
    return this.portals().length === 0;
  };

  Dialog.prototype.show = function (text, level) {
    var box = this.el("pi-message");
    box.textContent = text || "";
    box.className = "message" + (level ? " " + level : "");
    box.hidden = !text;
  };

  Dialog.prototype.render = function () {
    var self = this;
    var count = this.data.ids.length;
    this.el("pi-intro").textContent =
      count === 1
        ? "The contact receives an email with a link to create a portal account."
        : "Each of the " + count + " selected contacts receives an email with a link to create a portal account.";

    var free = this.freeText();
    this.el("pi-portal").hidden = free;
    this.el("pi-roles-list").hidden = free;
    this.el("pi-portal-text").hidden = !free;
    this.el("pi-roles-text").hidden = !free;

    if (!free) {
      var select = this.el("pi-portal");
      select.replaceChildren();
      this.portals().forEach(function (p) {
        var option = self.doc.createElement("option");
        option.value = p.name;
        option.textContent = p.name;
        select.appendChild(option);
      });
      select.value = this.portals()[0].name;
      this.renderRoles();
    } else {
      this.el("pi-hint").textContent = "Leave the roles empty to give the portal's default roles.";
    }

    if (!this.cfg || !this.cfg.columns || !this.cfg.status) {
      this.show("The portal invitation settings are missing. Ask an administrator to re-import the solution.", "error");
      this.el("pi-submit").disabled = true;
    } else if (!this.xrm) {
      this.show("Open this dialog from a contact in Dynamics 365.", "error");
      this.el("pi-submit").disabled = true;
    } else if (count === 0) {
      this.show("No contact was passed to the dialog.", "error");
      this.el("pi-submit").disabled = true;
    }
  };

  Dialog.prototype.currentPortal = function () {
    var name = this.el("pi-portal").value;
    var found = null;
    this.portals().forEach(function (p) {
      if (!found && p.name === name) {
        found = p;
      }
    });
    return found;
  };

  Dialog.prototype.renderRoles = function () {
    var self = this;
    var list = this.el("pi-roles-list");
    var portal = this.currentPortal();
    list.replaceChildren();
    this.roleInputs = [];
    var roles = (portal && portal.roles) || [];
    var defaults = (portal && portal.defaultRoles) || [];
    roles.forEach(function (role, i) {
      var label = self.doc.createElement("label");
      label.className = "role";
      var input = self.doc.createElement("input");
      input.type = "checkbox";
      input.id = "pi-role-" + i;
      input.value = role;
      input.checked = defaults.indexOf(role) >= 0;
      var text = self.doc.createElement("span");
      text.textContent = role;
      label.appendChild(input);
      label.appendChild(text);
      list.appendChild(label);
      self.roleInputs.push({ role: role, input: input });
    });
    this.el("pi-hint").textContent = roles.length
      ? "With no role ticked, the contact gets the portal's default roles."
      : "This portal gives its default roles.";
  };

  // selection returns {portal, roles} or {error}.
  Dialog.prototype.selection = function () {
    var portal;
    var roles;
    if (this.freeText()) {
      portal = String(this.el("pi-portal-text").value || "").trim();
      roles = splitRoles(this.el("pi-roles-text").value);
    } else {
      var chosen = this.currentPortal();
      if (!chosen) {
        return { error: "Choose a portal." };
      }
      portal = chosen.name;
      roles = this.roleInputs
        .filter(function (r) {
          return r.input.checked;
        })
        .map(function (r) {
          return r.role;
        });
    }
    if (!portal) {
      return { error: "Enter the portal name." };
    }
    if (portal.length > PORTAL_MAX) {
      return { error: "The portal name is longer than " + PORTAL_MAX + " characters." };
    }
    if (roles.join(",").length > ROLES_MAX) {
      return { error: "Too many roles: the list is longer than " + ROLES_MAX + " characters." };
    }
    return { portal: portal, roles: roles };
  };

  Dialog.prototype.setBusy = function (busy) {
    this.busy = busy;
    this.el("pi-submit").disabled = busy;
    this.el("pi-cancel").disabled = busy;
  };

  /**
   * submit validates the choice, writes the request to every contact and
   * leaves the outcome for the command that opened the dialog. Resolves with
   * the result, or null when nothing was sent.
   */
  Dialog.prototype.submit = function () {
    var self = this;
    if (this.busy || this.finished) {
      return Promise.resolve(null);
    }
    var choice = this.selection();
    if (choice.error) {
      this.show(choice.error, "error");
      return Promise.resolve(null);
    }
    if (!this.xrm || !this.cfg || this.data.ids.length === 0) {
      return Promise.resolve(null);
    }
    this.setBusy(true);
    this.show("Requesting…", "");
    return api
      .requestInvites(this.xrm, this.cfg, this.data.ids, choice.portal, choice.roles)
      .then(function (result) {
        var summary = api.summarize(result);
        if (result.requested.length > 0) {
          // Something changed on the contacts: report back and finish.
          storeResult(self.data.nonce, result);
          self.finished = true;
          self.setBusy(false);
          self.el("pi-submit").disabled = true;
          self.el("pi-cancel").textContent = "Close";
          self.show(summary.text, summary.level);
          if (result.failed.length === 0) {
            closeDialog(self.win);
          }
        } else {
          // Nothing was written: stay open so the user can retry or cancel.
          self.setBusy(false);
          self.show(summary.text, "error");
        }
        return result;
      });
  };

  Dialog.prototype.cancel = function () {
    if (this.busy) {
      return false;
    }
    if (!closeDialog(this.win) && this.win.close) {
      this.win.close();
    }
    return true;
  };

  Dialog.prototype.bind = function () {
    var self = this;
    this.el("pi-portal").addEventListener("change", function () {
      self.renderRoles();
    });
    this.el("pi-form").addEventListener("submit", function (event) {
      if (event && event.preventDefault) {
        event.preventDefault();
      }
      self.lastSubmit = self.submit();
    });
    this.el("pi-cancel").addEventListener("click", function () {
      self.cancel();
    });
  };

  api.dialog = {
    /** create builds the dialog controller for a window without touching the page. */
    create: function (win) {
      return new Dialog(win);
    },
    /** start renders dialog.html and wires its events; dialog.html calls it. */
    start: function (win) {
      var d = new Dialog(win);
      d.render();
      d.bind();
      return d;
    }
  };

  // ---------------------------------------------------------- resend, revoke

  /**
   * setCommand writes a Resend or Revoke command (the option value the pack
   * put in the ribbon) into each contact's status column. The connector picks
   * it up like Requested and writes Sent, Revoked or a readable error back.
   * Per-contact failures are collected, not thrown.
   */
  api.setCommand = function (xrm, column, value, ids) {
    var row = {};
    row[column] = value;
    return updateEach(xrm, "contact", ids, row);
  };

  /** commandSummary says what a Resend or Revoke click did ("resend" | "revoke"). */
  api.commandSummary = function (verb, result) {
    var noun = verb === "revoke" ? "Revoke" : "Resend";
    var total = result.requested.length + result.failed.length;
    if (result.failed.length === 0) {
      return {
        level: "success",
        text:
          noun +
          " requested for " +
          (total === 1 ? "the invitation" : total + " invitations") +
          ". The connector updates Portal Invite Status shortly."
      };
    }
    var first = result.failed[0].message;
    return {
      level: result.requested.length === 0 ? "error" : "warning",
      text: result.failed.length + " of " + total + " " + verb + " requests failed: " + first
    };
  };

  /**
   * Resend invitation / Revoke invitation on the contact form: CrmParameter
   * PrimaryControl, the status column (StringParameter), the command value
   * (IntParameter) and "resend" or "revoke".
   */
  api.commandFromForm = function (formContext, column, value, verb) {
    var xrm = currentXrm();
    return Promise.resolve()
      .then(function () {
        var id = normalizeIds(formContext.data.entity.getId())[0];
        if (!id) {
          throw new Error("Save the contact first.");
        }
        var save = formContext.data.getIsDirty && formContext.data.getIsDirty() ? formContext.data.save() : null;
        return Promise.resolve(save).then(function () {
          return api.setCommand(xrm, column, value, [id]);
        });
      })
      .then(function (result) {
        return Promise.resolve(formContext.data.refresh(false)).then(function () {
          var summary = api.commandSummary(verb, result);
          var level = summary.level === "success" ? "INFO" : summary.level === "warning" ? "WARNING" : "ERROR";
          formContext.ui.setFormNotification(summary.text, level, NOTIFICATION_ID);
        });
      })
      .catch(function (err) {
        return showError(xrm, err);
      });
  };

  /**
   * Resend invitation / Revoke invitation on contact grids and subgrids:
   * CrmParameters SelectedControlSelectedItemIds and SelectedControl, then
   * as commandFromForm.
   */
  api.commandFromGrid = function (selectedIds, selectedControl, column, value, verb) {
    var xrm = currentXrm();
    var ids = normalizeIds(selectedIds);
    return Promise.resolve()
      .then(function () {
        if (ids.length === 0) {
          throw new Error("Select at least one contact.");
        }
        if (ids.length > MAX_RECORDS) {
          throw new Error("Select at most " + MAX_RECORDS + " contacts at a time.");
        }
        return api.setCommand(xrm, column, value, ids);
      })
      .then(function (result) {
        if (selectedControl && selectedControl.refresh) {
          selectedControl.refresh();
        }
        var summary = api.commandSummary(verb, result);
        if (!xrm || !xrm.App || !xrm.App.addGlobalNotification) {
          return undefined;
        }
        var level =
          summary.level === "success"
            ? NOTIFICATION_SUCCESS
            : summary.level === "warning"
              ? NOTIFICATION_WARNING
              : NOTIFICATION_ERROR;
        return Promise.resolve(
          xrm.App.addGlobalNotification({ type: 2, level: level, message: summary.text, showCloseButton: true })
        ).catch(function () {});
      })
      .catch(function (err) {
        return showError(xrm, err);
      });
  };

  api.MAX_RECORDS = MAX_RECORDS;
  api.normalizeIds = normalizeIds;

  return api;
})();

if (typeof module !== "undefined" && module.exports) {
  module.exports = PortalInvite;
}
