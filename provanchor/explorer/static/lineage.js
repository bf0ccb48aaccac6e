// Draws the lineage graph the server embedded as JSON (the tables below it hold the same data).
(function () {
  "use strict";
  var holder = document.getElementById("graph");
  var source = document.getElementById("graph-data");
  if (!holder || !source || typeof window.cytoscape !== "function") { return; }
  var graph = JSON.parse(source.textContent);
  var elements = [];
  graph.nodes.forEach(function (node) {
    elements.push({ data: { id: node.id, label: node.label, kind: node.kind, runId: node.run_id || "" } });
  });
  graph.edges.forEach(function (edge, i) {
    elements.push({ data: { id: "e" + i, source: edge.from, target: edge.to, kind: edge.kind } });
  });
  var cy = window.cytoscape({
    container: holder,
    elements: elements,
    layout: { name: "breadthfirst", directed: true, spacingFactor: 1.2 },
    style: [
      { selector: "node", style: { "label": "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 4 } },
      { selector: "node[kind = 'file']", style: { "shape": "round-rectangle", "background-color": "#3a77b5" } },
      { selector: "node[kind = 'run']", style: { "shape": "diamond", "background-color": "#d48a1f" } },
      { selector: "edge", style: { "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 1.5,
                                   "line-color": "#8895a7", "target-arrow-color": "#8895a7" } }
    ]
  });
  cy.on("tap", "node", function (event) {
    var data = event.target.data();
    window.location.href = data.kind === "run" ? "/run/" + encodeURIComponent(data.runId)
                                               : "/lineage?location=" + encodeURIComponent(data.id);
  });
  holder.setAttribute("data-rendered", String(cy.nodes().length));
})();
