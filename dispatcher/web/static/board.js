// The live zone board: renders the board's snapshot (the page's JSON block, or a "snapshot"
// event), then merges every "change" event: only the zones, parts and people that changed.
// The board holds each zone's first page of volunteers and whom to call; "Show more" pages
// through the rest (a country-wide alert has thousands).
// A file, not an inline script: the Content-Security-Policy allows scripts from 'self' only.
// Untrusted text (names, replies, the alert's text) only ever goes in through textContent.
(function () {
  "use strict";
  var board = document.getElementById("board");
  var ctx = JSON.parse(document.getElementById("board-context").textContent);
  var status = null;
  var skewMs = 0;          // the server's clock minus ours
  var phones = {};         // recipient id -> number in clear (officers only)
  var asked = {};          // recipient ids already looked up
  var lastUpdate = null;
  var openZones = {};      // acknowledged zones the officer opened stay open
  var pages = {};          // zone -> id to list more after (null: the board holds all)

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text != null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function now() { return Date.now() + skewMs; }
  function fmt(iso, withDate) {
    if (!iso) return "";
    var opts = { timeZone: status.timezone, hour: "2-digit", minute: "2-digit",
                 second: "2-digit", hourCycle: "h23" };
    if (withDate) { opts.year = "numeric"; opts.month = "2-digit"; opts.day = "2-digit";
                    delete opts.second; }
    try { return new Intl.DateTimeFormat("en-CA", opts).format(new Date(iso)); }
    catch (e) { return iso.substring(0, 19); }
  }
  function ago(iso) {
    if (!iso) return "";
    var s = Math.max(0, Math.round((now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    var h = Math.floor(s / 3600);
    return h + " h " + Math.floor((s % 3600) / 60) + " min ago";
  }
  function until(iso) {
    var s = Math.max(0, Math.round((Date.parse(iso) - now()) / 1000));
    var m = Math.floor(s / 60), r = s % 60;
    return (m < 10 ? "0" : "") + m + ":" + (r < 10 ? "0" : "") + r;
  }
  function timeEl(iso, withDate) {
    var t = el("time", fmt(iso, withDate)); t.dateTime = iso || "";
    t.dataset.ago = iso || ""; return t;
  }

  // --- the summary line, ticking every second -----------------------------------------
  function renderSummary() {
    var s = status.summary;
    document.getElementById("sum-covered").textContent =
      s.acknowledged + " of " + s.zones + " zones covered";
    document.getElementById("sum-waiting").textContent =
      status.state === "cancelled" ? "cancelled" : s.waiting + " waiting";
    document.getElementById("sum-unreached").textContent = s.unreached + " unreached";
    var help = document.getElementById("sum-help");
    help.textContent = s.help + " HELP"; help.className = s.help ? "urgent" : "";
    var calls = document.getElementById("sum-calls");
    calls.textContent = "· calls: " + (status.calls_line || ""); calls.hidden = !status.calls_line;
    document.getElementById("sum-sent").textContent = status.sent_at
      ? "sent " + fmt(status.sent_at) + " (" + ago(status.sent_at) + ")" : "not sent";
    document.getElementById("sum-next").textContent = status.next_escalation_at
      ? "next escalation in " + until(status.next_escalation_at) : "no escalation pending";
    document.getElementById("alert-state").textContent = status.state;
    board.querySelectorAll("[data-until]").forEach(function (e) {
      e.textContent = "next escalation in " + until(e.dataset.until); });
  }
  function renderLive(state) {
    var live = document.getElementById("live");
    if (state) live.dataset.live = state;
    var stamp = lastUpdate ? fmt(new Date(lastUpdate).toISOString()) : "";
    live.textContent = live.dataset.live === "live" ? "● Live · last update " + stamp
      : live.dataset.live === "reconnecting" ? "Reconnecting… last update " + stamp
      : "Connecting…";
  }

  // --- the alert's text and the replies to attach -----------------------------------------
  function renderVersions() {
    var list = document.getElementById("versions"); list.textContent = "";
    status.versions.forEach(function (v) {
      var li = el("li");
      li.appendChild(el("span", v.msg_type + " " + v.number + " · " + fmt(v.sent_at, true) +
                        " · " + v.by, "vhead"));
      li.appendChild(el("p", v.body, "vbody"));
      list.appendChild(li);
    });
  }
  function renderUnattached() {
    var sec = document.getElementById("unattached"), list = document.getElementById("unattached-list");
    list.textContent = "";
    sec.hidden = status.unattached_replies.length === 0;
    status.unattached_replies.forEach(function (r) {
      var li = el("li", (r.name || "unknown") + " (" + (r.zone || "?") + "): “" + r.text + "” " +
                  fmt(r.received_at) + " ");
      li.dataset.reply = r.id;
      if (ctx.officer) {
        var f = el("form", null, "inline"); f.method = "post";
        f.action = "/alerts/" + status.id + "/replies/" + r.id + "/attach";
        var c = el("input"); c.type = "hidden"; c.name = "csrf"; c.value = ctx.csrf;
        var b = el("button", "Attach to this alert"); b.type = "submit";
        f.appendChild(c); f.appendChild(b); li.appendChild(f);
      }
      list.appendChild(li);
    });
  }

  // --- who to call ---------------------------------------------------------------------
  function lookUpPhones() {
    if (!ctx.officer) return;
    var ids = [];
    status.zones.forEach(function (z) { z.call_next.forEach(function (id) {
      if (!asked[id]) { asked[id] = true; ids.push(id); } }); });
    if (!ids.length) return;
    var url = board.dataset.phones + "?" + ids.map(function (i) { return "ids=" + i; }).join("&");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : {}; })
      .then(function (found) {
        Object.keys(found).forEach(function (k) { phones[k] = found[k]; });
        renderZones();
      })
      .catch(function () { ids.forEach(function (i) { delete asked[i]; }); });
  }
  function callList(z, byId) {
    var wrap = el("div", null, "call");
    wrap.appendChild(el("h4", z.state === "unreached" ? "Call now (chain exhausted)" : "Call next"));
    var ul = el("ul", null, "call-list");
    z.call_next.forEach(function (id) {
      var r = byId[id]; if (!r) return;
      var li = el("li"); li.dataset.recipient = id;
      li.appendChild(el("strong", r.name));
      var help = r.reply && r.reply.urgent;
      li.appendChild(document.createTextNode(" (" + r.tier + (help ? ", asked for HELP" : "") + ") "));
      var clear = phones[id];
      if (clear) {
        var a = el("a", clear, "tel"); a.href = "tel:" + clear; li.appendChild(a);
      } else if (r.phone) {
        li.appendChild(el("span", r.phone, "masked"));
      } else {
        li.appendChild(el("span", "no phone", "masked"));
      }
      ul.appendChild(li);
    });
    wrap.appendChild(ul);
    if (z.call_next_more) wrap.appendChild(el("p", "and " + z.call_next_more +
      " more not answering: see the zone's list below", "facts"));
    return wrap;
  }

  // --- the zones -------------------------------------------------------------------------
  var HEADS = ["Tier", "Volunteer", "Channels", "State", "Reply", "Acknowledged"];
  function cell(row, i, text, cls) {
    var td = el("td", text == null ? "" : text, cls); td.dataset.label = HEADS[i];
    row.appendChild(td); return td;
  }
  function recipientTable(z) {
    var wrap = el("div", null, "table-wrap cards");
    var t = el("table"); var thead = t.createTHead().insertRow();
    HEADS.forEach(function (x) { thead.appendChild(el("th", x)); });
    var body = t.createTBody();
    status.recipients.filter(function (r) { return r.zone === z.zone; }).sort(function (a, b) {
      return tierRank(a.tier) - tierRank(b.tier) || a.id - b.id;
    }).forEach(function (r) {
      var row = body.insertRow(); row.dataset.volunteer = r.name; row.dataset.state = r.state;
      cell(row, 0, r.tier); cell(row, 1, r.name);
      cell(row, 2, r.deliveries.filter(function (d) {
        return ["alert", "failover", "unreached"].indexOf(d.purpose) >= 0; })
        .map(function (d) { return d.channel + ": " + d.state; }).join(", "));
      cell(row, 3, r.state, r.state === "acknowledged" ? "state-acknowledged" : "");
      cell(row, 4, r.reply ? r.reply.text : "", r.reply && r.reply.urgent ? "urgent" : "");
      var ack = cell(row, 5, "");
      if (r.acknowledged_at) ack.appendChild(timeEl(r.acknowledged_at));
    });
    wrap.appendChild(t);
    if (pages[z.zone]) {
      var held = status.recipients.filter(function (r) { return r.zone === z.zone; }).length;
      var more = el("button", "Show more volunteers (" + held + " of " + z.listed + " listed)",
                    "more");
      more.type = "button";
      more.addEventListener("click", function () { showMore(z.zone, more); });
      wrap.appendChild(more);
    }
    return wrap;
  }
  function tierRank(name) {
    if (name === "primary") return 0;
    var m = /^alternate(\d+)$/.exec(name || "");
    return m ? +m[1] : 1e6;
  }
  function showMore(zone, button) {
    button.disabled = true;
    var url = board.dataset.volunteers + "?zone=" + encodeURIComponent(zone) +
      "&after=" + pages[zone];
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (page) {
        var byId = {};
        status.recipients.forEach(function (r) { byId[r.id] = r; });
        page.recipients.forEach(function (r) { if (!byId[r.id]) status.recipients.push(r); });
        pages[zone] = page.more_after;
        renderZones();
      })
      .catch(function () { button.disabled = false; });
  }
  function zoneHeading(tag, z) {
    var h = el(tag, z.zone + ": ");
    h.appendChild(el("span", z.shown_state, "state-" + z.shown_state));
    if (z.help) h.appendChild(el("span", " HELP ×" + z.help, "urgent"));
    return h;
  }
  function zoneFacts(z) {
    var p = el("p", null, "facts");
    var parts = [z.acknowledged + " of " + z.recipients + " acknowledged"];
    if (z.tier && z.shown_state === "waiting") parts.push("asking: " + z.tier);
    p.appendChild(document.createTextNode(parts.join(" · ")));
    if (z.acknowledged_at) {
      p.appendChild(document.createTextNode(" · covered at "));
      p.appendChild(timeEl(z.acknowledged_at));
    }
    if (z.unreached_at) {
      p.appendChild(document.createTextNode(" · unreached since "));
      p.appendChild(timeEl(z.unreached_at));
    }
    if (z.next_deadline_at) {
      p.appendChild(document.createTextNode(" · "));
      var n = el("span", "next escalation in " + until(z.next_deadline_at), "countdown");
      n.dataset.until = z.next_deadline_at; p.appendChild(n);
    }
    if (status.state === "cancelled") p.appendChild(el("span", " · alert cancelled", "cancelled"));
    return p;
  }
  function renderZones() {
    var byId = {};
    status.recipients.forEach(function (r) { byId[r.id] = r; });
    board.querySelectorAll("details.zone").forEach(function (d) { openZones[d.dataset.zone] = d.open; });
    board.textContent = "";
    status.zones.slice().sort(function (a, b) {
      return a.priority - b.priority || (a.zone < b.zone ? -1 : a.zone > b.zone ? 1 : 0);
    }).forEach(function (z) {
      var sec;
      if (z.state === "acknowledged" && !z.help) {
        sec = el("details", null, "zone"); sec.open = !!openZones[z.zone];
        var sum = el("summary"); sum.appendChild(zoneHeading("span", z)); sec.appendChild(sum);
      } else {
        sec = el("section", null, "zone"); sec.appendChild(zoneHeading("h3", z));
      }
      sec.dataset.zone = z.zone; sec.dataset.state = z.state; sec.dataset.shown = z.shown_state;
      sec.appendChild(zoneFacts(z));
      if (z.call_next.length) sec.appendChild(callList(z, byId));
      sec.appendChild(recipientTable(z));
      board.appendChild(sec);
    });
    tickTimes();
  }
  function tickTimes() {
    document.querySelectorAll("time[data-ago]").forEach(function (t) {
      if (t.dataset.ago) t.title = ago(t.dataset.ago);
      if (t.dataset.ago && !t.dataset.abs) t.dataset.abs = t.textContent;
      if (t.dataset.ago) t.textContent = t.dataset.abs + " (" + ago(t.dataset.ago) + ")";
    });
  }

  // --- what changed, for screen readers -------------------------------------------------
  function changes(before, after) {
    var out = [];
    if (!before) return out;
    if (before.state !== after.state) out.push("Alert " + after.state + ".");
    var old = {};
    before.zones.forEach(function (z) { old[z.zone] = z; });
    after.zones.forEach(function (z) {
      var o = old[z.zone];
      if (o && o.shown_state !== z.shown_state) out.push(z.zone + ": " + z.shown_state + ".");
      if (o && z.help > o.help) out.push(z.zone + ": HELP received.");
      if (o && o.tier !== z.tier && z.state === "waiting") out.push(z.zone + ": now asking " + z.tier + ".");
    });
    if (after.unattached_replies.length > before.unattached_replies.length)
      out.push("A reply to attach arrived.");
    if (after.versions.length > before.versions.length) out.push("New version sent.");
    return out;
  }

  function render(s) {
    var said = changes(status, s);
    status = s;
    if (s.now) skewMs = Date.parse(s.now) - Date.now();
    lastUpdate = Date.now();
    renderSummary(); renderVersions(); renderUnattached(); renderZones(); renderLive();
    if (said.length) document.getElementById("announce").textContent = said.join(" ");
    lookUpPhones();
  }

  // A change event carries the parts of the board that changed, the zones that changed
  // (whole), and the people whose row changed: rows the board holds are replaced; others
  // are kept only if the board must name them (whom to call) or holds their whole zone.
  function merge(event) {
    var next = {};
    Object.keys(status).forEach(function (k) { next[k] = status[k]; });
    Object.keys(event).forEach(function (k) {
      if (k !== "zones" && k !== "recipients") next[k] = event[k];
    });
    if (event.zones) {
      var changed = {};
      event.zones.forEach(function (z) { changed[z.zone] = z; });
      next.zones = status.zones.map(function (z) { return changed[z.zone] || z; });
      event.zones.forEach(function (z) {
        if (!status.zones.some(function (o) { return o.zone === z.zone; })) next.zones.push(z);
      });
    }
    var named = {};
    next.zones.forEach(function (z) { z.call_next.forEach(function (id) { named[id] = true; }); });
    var rows = {};
    status.recipients.forEach(function (r) { rows[r.id] = r; });
    (event.recipients || []).forEach(function (r) {
      if (rows[r.id] || named[r.id] || pages[r.zone] === null) rows[r.id] = r;
    });
    next.recipients = Object.keys(rows).map(function (k) { return rows[k]; });
    return next;
  }
  function snapshot(s) {
    pages = s.pages || {};
    render(s);
  }

  snapshot(JSON.parse(document.getElementById("board-data").textContent));
  setInterval(function () { renderSummary(); tickTimes(); renderLive(); }, 1000);
  var source = new EventSource(board.dataset.events);
  source.onopen = function () { renderLive("live"); };
  source.onerror = function () { renderLive("reconnecting"); };
  source.addEventListener("snapshot", function (e) { snapshot(JSON.parse(e.data)); renderLive("live"); });
  source.addEventListener("change", function (e) { render(merge(JSON.parse(e.data))); renderLive("live"); });
})();
