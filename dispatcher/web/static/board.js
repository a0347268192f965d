// The live zone board: renders the alert's status, then every change the server sends.
// A file, not an inline script: the Content-Security-Policy allows scripts from 'self' only.
(function () {
  var board = document.getElementById("board");
  function cell(row, text, cls) {
    var td = document.createElement("td"); td.textContent = text == null ? "" : text;
    if (cls) td.className = cls; row.appendChild(td);
  }
  function render(s) {
    document.getElementById("alert-state").textContent = s.state;
    board.textContent = "";
    s.zones.forEach(function (z) {
      var sec = document.createElement("section");
      sec.className = "zone"; sec.dataset.zone = z.zone; sec.dataset.state = z.state;
      var h = document.createElement("h2"); h.textContent = z.zone + ": ";
      var st = document.createElement("span"); st.className = "state-" + z.state;
      st.textContent = z.state + (z.tier ? " (tier: " + z.tier + ")" : ""); h.appendChild(st);
      sec.appendChild(h);
      var wrap = document.createElement("div"); wrap.className = "table-wrap";
      var t = document.createElement("table");
      var head = t.insertRow(); ["Tier", "Volunteer", "Channels", "State", "Reply", "Acknowledged"].forEach(function (x) {
        var th = document.createElement("th"); th.textContent = x; head.appendChild(th); });
      s.recipients.filter(function (r) { return r.zone === z.zone; }).forEach(function (r) {
        var row = t.insertRow(); row.dataset.volunteer = r.name; row.dataset.state = r.state;
        cell(row, r.tier); cell(row, r.name);
        cell(row, r.deliveries.filter(function (d) { return ["alert", "failover", "unreached"].indexOf(d.purpose) >= 0; })
          .map(function (d) { return d.channel + ": " + d.state; }).join(", "));
        cell(row, r.state, r.state === "acknowledged" ? "state-acknowledged" : "");
        cell(row, r.reply ? r.reply.text : "", r.reply && r.reply.urgent ? "urgent" : "");
        cell(row, r.acknowledged_at ? r.acknowledged_at.substring(11, 19) : "");
      });
      wrap.appendChild(t); sec.appendChild(wrap); board.appendChild(sec);
    });
  }
  render(JSON.parse(document.getElementById("board-data").textContent));
  var source = new EventSource(board.dataset.events);
  source.onmessage = function (e) { render(JSON.parse(e.data)); };
})();
