// The SINR range-map viewer page: Leaflet maps (plate carrée), H3 cells drawn with h3-js, data
// from the JSON API (sinr_jax/viewer/api.py). One panel per run; panels share the species, the
// resolution, the toggles and the view, and each has its own threshold slider (runs differ in
// their F1-optimal threshold). Panels expose what they show as data-* attributes (tests read them).
"use strict";
(function () {
  const WORLD = [[-58, -180], [84, 180]];  // the initial view (no Antarctica)
  const BINS = 5;  // colour classes between the threshold and 1
  const COLORS = ["#fde725", "#7ad151", "#22a884", "#2a788e", "#414487"];  // viridis, low → high
  const state = { info: null, taxon: null, res: null, panels: [], syncing: false };
  window.sinrViewer = state;  // for the browser test and the console
  const $ = (sel, root) => (root || document).querySelector(sel);

  async function api(path, params) {
    const url = path + (params ? "?" + new URLSearchParams(params) : "");
    const response = await fetch(url);
    let body;
    try { body = await response.json(); } catch (e) { body = {}; }
    if (!response.ok) throw new Error(body.error || response.status + " " + response.statusText);
    return body;
  }

  function message(text, isError) {
    const el = $("#message");
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  // ---- H3 cells → Leaflet polygons ------------------------------------------------------------

  // A ring of [lng, lat] from h3-js as [lat, lng] with longitudes made continuous across ±180.
  function unwrapRing(ring) {
    const out = [];
    let prev = null;
    for (const [lng0, lat] of ring) {
      let lng = lng0;
      if (prev !== null) {
        while (lng - prev > 180) lng -= 360;
        while (lng - prev < -180) lng += 360;
      }
      out.push([lat, lng]);
      prev = lng;
    }
    return out;
  }

  function shifted(rings, by) { return rings.map((r) => r.map(([lat, lng]) => [lat, lng + by])); }

  // Cells merged into outlines (one MultiPolygon), copies shifted by 360° where they cross ±180.
  function cellsLayer(cells, style) {
    const latlngs = [];
    for (const polygon of h3.cellsToMultiPolygon(cells, true)) {
      const rings = polygon.map(unwrapRing);
      let lo = Infinity, hi = -Infinity;
      for (const [, lng] of rings[0]) { lo = Math.min(lo, lng); hi = Math.max(hi, lng); }
      latlngs.push(rings);
      if (hi > 180) latlngs.push(shifted(rings, -360));
      if (lo < -180) latlngs.push(shifted(rings, 360));
    }
    return L.polygon(latlngs, style);
  }

  // ---- panels ---------------------------------------------------------------------------------

  function makePanel(run) {
    const el = document.createElement("section");
    el.className = "panel";
    el.dataset.run = run.id;
    el.dataset.state = "empty";
    el.innerHTML =
      '<h2></h2><div class="controls"><label>threshold <input class="threshold" type="range" ' +
      'min="0.01" max="0.99" step="0.01" value="0.5" disabled></label><output></output>' +
      '<button class="f1" type="button" disabled>F1-optimal</button></div>' +
      '<div class="status"></div><div class="map"></div>';
    const title = $("h2", el);
    title.textContent = run.name + " ";
    const small = document.createElement("small");
    small.textContent = "(step " + run.step + ", " + run.num_taxa + " taxa)";
    title.appendChild(small);
    $("#panels").appendChild(el);
    const map = L.map($(".map", el), { crs: L.CRS.EPSG4326, zoomSnap: 0.25, minZoom: -1,
                                       maxZoom: 10 });
    L.imageOverlay("api/basemap.jpg", [[-90, -180], [90, 180]],
                   { attribution: "NASA Blue Marble, GLOBE land mask" }).addTo(map);
    const panel = { run, el, map, data: null, request: 0,
                    slider: $(".threshold", el), output: $("output", el), f1: $(".f1", el),
                    status: $(".status", el), range: L.featureGroup().addTo(map),
                    truth: L.layerGroup().addTo(map),
                    obs: L.layerGroup().addTo(map), canvas: L.canvas({ padding: 0.2 }) };
    panel.slider.addEventListener("input", () => {
      panel.output.textContent = Number(panel.slider.value).toFixed(2);
    });
    panel.slider.addEventListener("change", () => loadRange(panel, Number(panel.slider.value)));
    panel.f1.addEventListener("click", () => loadRange(panel, null));
    addLegend(map);
    return panel;
  }

  function addLegend(map) {
    const legend = L.control({ position: "bottomleft" });
    legend.onAdd = () => {
      const div = L.DomUtil.create("div", "legend");
      div.innerHTML = "P(presence), threshold → 1<br>" +
        COLORS.map((c) => '<i style="background:' + c + '"></i>').join("") +
        '<br><i style="border-top:2px dashed #111;height:0"></i>true range ' +
        '<i style="background:#e0115f;border-radius:50%;width:0.7em;height:0.7em"></i>' +
        "observations";
      return div;
    };
    legend.addTo(map);
  }

  function syncViews() {
    for (const p of state.panels) {
      p.map.on("move", () => {
        if (state.syncing) return;
        state.syncing = true;
        for (const q of state.panels) {
          if (q !== p) q.map.setView(p.map.getCenter(), p.map.getZoom(), { animate: false });
        }
        state.syncing = false;
      });
    }
  }

  async function loadRange(panel, threshold) {
    if (state.taxon === null) return;
    const params = { run: panel.run.id, taxon: state.taxon, res: state.res };
    if (threshold !== null) params.threshold = threshold;
    const request = ++panel.request;
    panel.el.classList.add("loading");
    panel.el.dataset.state = "loading";
    const slow = setTimeout(() => {
      if (request === panel.request) {
        panel.status.textContent = "computing… the first map at an H3 resolution encodes every " +
          "land cell once (572,176 at res 5: tens of seconds on a CPU)";
      }
    }, 1500);
    try {
      const data = await api("api/range", params);
      if (request !== panel.request) return;  // a newer request is under way
      panel.data = data;
      drawRange(panel);
    } catch (e) {
      if (request !== panel.request) return;
      panel.data = null;
      panel.range.clearLayers();
      panel.status.textContent = e.message;
      panel.status.classList.add("error");
      panel.el.dataset.cells = "0";
      panel.el.dataset.state = "error";
    } finally {
      clearTimeout(slow);
      if (request === panel.request) panel.el.classList.remove("loading");
    }
  }

  function drawRange(panel) {
    const d = panel.data;
    panel.range.clearLayers();
    const bins = Array.from({ length: BINS }, () => []);
    const span = Math.max(1 - d.threshold, 1e-9);
    d.cells.forEach((cell, i) => {
      const k = Math.floor((d.probability[i] - d.threshold) / span * BINS);
      bins[Math.min(BINS - 1, Math.max(0, k))].push(cell);
    });
    bins.forEach((cells, k) => {
      if (cells.length) {
        panel.range.addLayer(cellsLayer(cells, { stroke: false, fillColor: COLORS[k],
                                                 fillOpacity: 0.78, interactive: false }));
      }
    });
    panel.slider.disabled = false;
    panel.slider.value = d.threshold.toFixed(2);
    const source = { f1: " (F1-optimal)", default: " (default)", request: "" }[d.threshold_source];
    panel.output.textContent = d.threshold.toFixed(3) + source;
    panel.f1.disabled = d.f1_threshold === null;
    const parts = [(d.name ? d.name + " " : "") + "(taxon " + d.taxon_id + "): " +
                   d.num_cells.toLocaleString() + " of " + d.num_land_cells.toLocaleString() +
                   " land cells at res " + d.res + " with P ≥ " + d.threshold.toFixed(3),
                   Math.round(d.area_km2).toLocaleString() + " km²"];
    if (d.ap !== null) parts.push("AP " + d.ap.toFixed(3) + " against the true range");
    if (d.truncated) parts.push("the " + d.cells.length.toLocaleString() + " most probable shown");
    panel.status.textContent = parts.join("; ");
    if (state.fitPending && panel === state.panels[0] && d.cells.length) {
      state.fitPending = false;  // a new species: show its range (the other maps follow)
      panel.map.fitBounds(panel.range.getBounds().pad(0.4), { maxZoom: 4 });
    }
    panel.status.classList.remove("error");
    Object.assign(panel.el.dataset, { cells: String(d.cells.length), numCells: String(d.num_cells),
                                      threshold: String(d.threshold), taxon: String(d.taxon_id),
                                      res: String(d.res), state: "ready" });
  }

  async function loadTruth(panel) {
    panel.truth.clearLayers();
    delete panel.el.dataset.truthCells;
    if (!$("#show-truth").checked || state.taxon === null || !panel.run.has_truth) return;
    try {
      const d = await api("api/truth", { run: panel.run.id, taxon: state.taxon });
      panel.truth.addLayer(cellsLayer(d.cells, { color: "#111", weight: 1.6, fill: false,
                                                 dashArray: "5 3", interactive: false }));
      panel.el.dataset.truthCells = String(d.num_cells);
    } catch (e) {
      panel.el.dataset.truthCells = "0";
    }
  }

  async function loadObservations(panel) {
    panel.obs.clearLayers();
    delete panel.el.dataset.observations;
    if (!$("#show-obs").checked || state.taxon === null || !panel.run.has_observations) return;
    try {
      const d = await api("api/observations", { run: panel.run.id, taxon: state.taxon });
      for (const [lon, lat] of d.points) {
        panel.obs.addLayer(L.circleMarker([lat, lon], { renderer: panel.canvas, radius: 2.5,
          color: "#fff", weight: 0.8, fillColor: "#e0115f", fillOpacity: 1,
          interactive: false }));
      }
      panel.el.dataset.observations = String(d.points.length);
    } catch (e) {
      panel.el.dataset.observations = "0";
    }
  }

  function refresh() {
    for (const p of state.panels) {
      loadRange(p, null);
      loadTruth(p);
      loadObservations(p);
    }
  }

  // ---- species search -------------------------------------------------------------------------

  function selectTaxon(taxon, label) {
    state.fitPending = taxon !== state.taxon;
    state.taxon = taxon;
    $("#results").innerHTML = "";
    $("#search").value = label || String(taxon);
    message(label ? label : "taxon " + taxon);
    history.replaceState(null, "", "#taxon=" + taxon + "&res=" + state.res);
    refresh();
  }

  let searchTimer = null;
  async function search() {
    const q = $("#search").value.trim();
    const list = $("#results");
    try {
      const d = await api("api/search", { q, limit: 20 });
      list.innerHTML = "";
      for (const r of d.results) {
        const li = document.createElement("li");
        const label = (r.name ? r.name + " — " : "") + r.taxon_id;
        li.textContent = label + " ";
        li.dataset.taxon = r.taxon_id;
        if (state.panels.length > 1) {
          const small = document.createElement("small");
          small.textContent = "(" + r.runs.join(", ") + ")";
          li.appendChild(small);
        }
        li.addEventListener("click", () => selectTaxon(r.taxon_id, label));
        list.appendChild(li);
      }
      if (!d.results.length) message("no species matches '" + q + "'", true);
    } catch (e) {
      message(e.message, true);
    }
  }

  async function init() {
    try {
      state.info = await api("api/info");
    } catch (e) {
      message("cannot reach the viewer's API: " + e.message, true);
      return;
    }
    const info = state.info;
    const res = $("#res");
    for (let r = info.res.min; r <= info.res.max; r++) {
      const opt = document.createElement("option");
      opt.value = opt.textContent = String(r);
      res.appendChild(opt);
    }
    const hash = new URLSearchParams(location.hash.slice(1));
    state.res = Number(hash.get("res")) || info.res.default;
    res.value = String(state.res);
    state.panels = info.runs.map(makePanel);
    for (const p of state.panels) {  // once every panel has its final width
      p.map.invalidateSize();
      p.map.fitBounds(WORLD);
    }
    syncViews();
    if (!info.runs.some((r) => r.has_truth)) $("#show-truth").parentElement.hidden = true;
    res.addEventListener("change", () => {
      state.res = Number(res.value);
      if (state.taxon !== null) selectTaxon(state.taxon, $("#search").value);
    });
    $("#show-obs").addEventListener("change", () => state.panels.forEach(loadObservations));
    $("#show-truth").addEventListener("change", () => state.panels.forEach(loadTruth));
    const input = $("#search");
    input.addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(search, 200);
    });
    input.addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter") return;
      clearTimeout(searchTimer);
      const first = $("#results li");
      if (first) first.click();
      else search().then(() => { const li = $("#results li"); if (li) li.click(); });
    });
    document.body.dataset.ready = "true";
    if (hash.get("taxon")) selectTaxon(Number(hash.get("taxon")));
  }

  init();
})();
