// stormwatch dashboard: the only script, served by the app itself. It sorts tables whose class
// is "sortable" when a column header is clicked. It reads cell text (textContent) and moves
// existing rows; it never builds HTML from data.
"use strict";
(function () {
  function key(cell) {
    var text = (cell ? cell.textContent : "").trim();
    var num = Number(text.replace(/[,\s%]/g, ""));
    return text !== "" && !isNaN(num) ? num : text.toLowerCase();
  }
  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    if (!body) { return; }
    var desc = !th.classList.contains("sorted-desc");
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
    th.classList.add(desc ? "sorted-desc" : "sorted-asc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index]), y = key(b.cells[index]);
      var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return desc ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
      var head = table.tHead;
      if (!head) { return; }
      Array.prototype.forEach.call(head.rows[0].cells, function (th, i) {
        th.addEventListener("click", function () { sortBy(table, i, th); });
      });
    });
  });
})();
