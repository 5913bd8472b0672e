// The worklist of the batch page: renders the JSON block #worklist-data a page at a time, with sorting,
// search and filters. Everything is local (no network, no storage); rows are built with DOM methods
// and textContent only, so no value from the data is ever parsed as HTML. Row layout: see
// rls_screen/batch/worklist_page.py (page_data).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("worklist-data").textContent);
  var findings = data.findings;
  var roleNames = {}, severityNames = {}, changeNames = {}, writtenNames = {}, writtenOrder = {};
  data.roles.forEach(function (r) { roleNames[r[0]] = r[1]; });
  data.severities.forEach(function (s) { severityNames[s[0]] = s[1]; });
  data.changeKinds.forEach(function (c) { changeNames[c[0]] = c[1]; });
  data.writtenKinds.forEach(function (w, i) { writtenNames[w[0]] = w[1]; writtenOrder[w[0]] = i; });
  var changeOrder = { "new": 0, "changed": 1, "resolved": 2 };

  var rows = data.rows.map(function (r, i) {
    var change = 3;
    r[2].forEach(function (c) { change = Math.min(change, changeOrder[c[1]]); });
    return { rank: i + 1, id: r[0], findings: r[1], changes: r[2], written: r[3], detail: r[4],
             change: change, text: null };
  });
  // the link per patient: the site's template (checked when the report was written) with the id encoded
  // as Python's quote(id, safe="") does (worklist_page.patient_link)
  var template = /^https?:\/\//i.test(data.linkTemplate) ? data.linkTemplate : "";
  function linkOf(id) {
    var encoded = encodeURIComponent(id).replace(/[!'()*]/g, function (c) {
      return "%" + c.charCodeAt(0).toString(16).toUpperCase();
    });
    return template ? template.split("{patient_id}").join(encoded) : "";
  }

  var state = { key: "rank", dir: 1, page: 0, size: 50, q: "", finding: "", role: "", severity: "",
                change: "", written: "" };
  var view = rows;
  var $ = function (id) { return document.getElementById(id); };

  function findingName(code) { return findings[code] ? findings[code][0] : code; }
  function roleOf(code) { return findings[code] ? findings[code][1] : ""; }

  function searchText(row) {
    if (row.text === null) {
      var parts = [row.id];
      row.findings.forEach(function (f) { parts.push(findingName(f[0]), severityNames[f[1]] || "", f[2]); });
      row.changes.forEach(function (c) { parts.push(findingName(c[0]), changeNames[c[1]], c[2], c[3]); });
      row.text = parts.join(" ").toLowerCase();
    }
    return row.text;
  }

  function codes(row) {
    var out = row.findings.map(function (f) { return f[0]; });
    row.changes.forEach(function (c) { if (c[1] === "resolved") { out.push(c[0]); } });
    return out;
  }

  function matches(row) {
    if (state.q && searchText(row).indexOf(state.q) < 0) { return false; }
    if (state.finding && codes(row).indexOf(state.finding) < 0) { return false; }
    if (state.role && !codes(row).some(function (c) { return roleOf(c) === state.role; })) { return false; }
    if (state.severity && !row.findings.some(function (f) { return f[1] === state.severity; })) { return false; }
    if (state.change === "any-change" && !row.changes.length) { return false; }
    if (state.change === "none" && row.changes.length) { return false; }
    if (state.change && state.change !== "any-change" && state.change !== "none" &&
        !row.changes.some(function (c) { return c[1] === state.change; })) { return false; }
    if (state.written && row.written !== state.written) { return false; }
    return true;
  }

  var sorters = {
    rank: function (a, b) { return a.rank - b.rank; },
    patient: function (a, b) { return a.id < b.id ? -1 : (a.id > b.id ? 1 : a.rank - b.rank); },
    findings: function (a, b) { return (b.findings.length - a.findings.length) || a.rank - b.rank; },
    change: function (a, b) { return (a.change - b.change) || a.rank - b.rank; },
    written: function (a, b) { return (writtenOrder[a.written] - writtenOrder[b.written]) || a.rank - b.rank; }
  };

  function recompute() {
    var filtered = rows.filter(matches);
    if (state.key !== "rank" || state.dir !== 1) {
      var sorter = sorters[state.key];
      filtered.sort(function (a, b) { return state.dir * sorter(a, b); });
    }
    view = filtered;
    state.page = 0;
  }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text) { node.textContent = text; }
    if (cls) { node.className = cls; }
    return node;
  }

  function list(items) {
    var ul = el("ul");
    items.forEach(function (item) { ul.appendChild(item); });
    return ul;
  }

  function renderRow(row) {
    var tr = el("tr");
    tr.appendChild(el("td", String(row.rank), "rank"));
    var who = el("td", "", "patient");
    if (template) {
      var a = el("a", row.id);
      a.href = linkOf(row.id);
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      who.appendChild(a);
    } else {
      who.textContent = row.id;
    }
    tr.appendChild(who);
    var found = el("td"), values = el("td");
    if (row.findings.length) {
      found.appendChild(list(row.findings.map(function (f) {
        var li = el("li", findingName(f[0]) + (f[1] ? " (" + (severityNames[f[1]] || f[1]) + ")" : ""));
        if (roleNames[roleOf(f[0])]) { li.appendChild(el("span", roleNames[roleOf(f[0])], "role")); }
        return li;
      })));
      values.appendChild(list(row.findings.filter(function (f) { return f[2]; }).map(function (f) {
        return el("li", f[2]);
      })));
    } else {
      found.textContent = "none now";
    }
    tr.appendChild(found);
    tr.appendChild(values);
    var changed = el("td");
    if (row.changes.length) {
      changed.appendChild(list(row.changes.map(function (c) {
        var li = el("li");
        li.appendChild(el("span", changeNames[c[1]], "kind kind-" + c[1]));
        li.appendChild(document.createTextNode(": " + findingName(c[0])));
        var was = c[1] === "changed" ? c[2] + " \u2192 " + c[3] : (c[1] === "resolved" ? "was " + c[2] : "");
        if (was) { li.appendChild(el("span", was, "detail")); }
        return li;
      })));
    } else {
      changed.textContent = data.previousRun ? "no change" : "";
    }
    tr.appendChild(changed);
    var written = el("td", writtenNames[row.written] || row.written);
    if (row.detail) { written.appendChild(el("span", row.detail, "detail")); }
    tr.appendChild(written);
    return tr;
  }

  function render() {
    var pages = Math.max(1, Math.ceil(view.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * state.size, end = Math.min(view.length, start + state.size);
    var body = document.createDocumentFragment();
    for (var i = start; i < end; i++) { body.appendChild(renderRow(view[i])); }
    if (!view.length) {
      var td = el("td", rows.length ? "No patient matches these filters." : "No patient has a finding.");
      td.colSpan = 6;
      body.appendChild(el("tr")).appendChild(td);
    }
    var tbody = document.querySelector("#worklist tbody");
    tbody.textContent = "";
    tbody.appendChild(body);
    $("status").textContent = view.length
      ? "Patients " + (start + 1) + "\u2013" + end + " of " + view.length +
        (view.length < rows.length ? " (filtered from " + rows.length + ")" : "") + "."
      : "No patients shown (" + rows.length + " in the worklist).";
    $("page-of").textContent = "Page " + (state.page + 1) + " of " + pages;
    $("first").disabled = $("prev").disabled = state.page === 0;
    $("next").disabled = $("last").disabled = state.page >= pages - 1;
    document.querySelectorAll("#worklist th[data-key]").forEach(function (th) {
      var key = th.getAttribute("data-key");
      th.setAttribute("aria-sort", key !== state.key ? "none" : (state.dir === 1 ? "ascending" : "descending"));
    });
  }

  function options(select, items) {
    items.forEach(function (item) { select.appendChild(new Option(item[1], item[0])); });
  }

  var present = {};
  rows.forEach(function (r) { codes(r).forEach(function (c) { present[c] = true; }); });
  options($("f-finding"), Object.keys(findings).filter(function (c) { return present[c]; })
    .map(function (c) { return [c, findingName(c)]; }));
  options($("f-role"), data.roles);
  options($("f-severity"), data.severities);
  if (data.previousRun) {
    options($("f-change"), data.changeKinds.concat([["none", "no change"]]));
  } else {
    $("f-change").disabled = true;
  }
  options($("f-written"), data.writtenKinds);

  function readControls() {
    state.q = $("q").value.trim().toLowerCase();
    state.finding = $("f-finding").value;
    state.role = $("f-role").value;
    state.severity = $("f-severity").value;
    state.change = $("f-change").value;
    state.written = $("f-written").value;
    state.size = parseInt($("page-size").value, 10) || 50;
    recompute();
    render();
  }

  var typing = null;
  $("q").addEventListener("input", function () { clearTimeout(typing); typing = setTimeout(readControls, 150); });
  ["f-finding", "f-role", "f-severity", "f-change", "f-written", "page-size"].forEach(function (id) {
    $(id).addEventListener("change", readControls);
  });
  $("controls").addEventListener("submit", function (event) { event.preventDefault(); readControls(); });
  $("controls").addEventListener("reset", function () { setTimeout(readControls, 0); });
  document.querySelectorAll("#worklist th[data-key] button").forEach(function (button) {
    button.addEventListener("click", function () {
      var key = button.parentNode.getAttribute("data-key");
      state.dir = key === state.key ? -state.dir : 1;
      state.key = key;
      recompute();
      render();
    });
  });
  function go(page) { return function () { state.page = page(); render(); }; }
  $("first").addEventListener("click", go(function () { return 0; }));
  $("prev").addEventListener("click", go(function () { return Math.max(0, state.page - 1); }));
  $("next").addEventListener("click", go(function () { return state.page + 1; }));
  $("last").addEventListener("click", go(function () { return Math.max(0, Math.ceil(view.length / state.size) - 1); }));

  render();
  if (window.performance && performance.mark) { performance.mark("worklist-first-render"); }
}());
