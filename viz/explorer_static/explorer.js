// The explorer page: jobs and layers from the inlined index, each layer's data from its own
// <script> file (file:// pages cannot fetch JSON). Every name from the data goes into text nodes
// or attributes, never into HTML; every URL in the data is a percent-encoded relative path.
"use strict";
(() => {
  const INDEX = JSON.parse(document.getElementById("explorer-index").textContent);
  const SORT_LABELS = { index: "channel index", mean: "mean", max: "max", min: "min", energy: "energy (mean square)", active: "activity (fraction > 0)",
    diff: "max |A − B|", mean_a: "mean of A", max_a: "max of A", mean_b: "mean of B", max_b: "max of B" };
  const ROW_LABEL_PX = 18, GAP_PX = 6;
  const main = document.getElementById("main"), view = document.getElementById("view");
  const state = { job: null, layer: null, channel: null, sort: "index", order: null, filter: "" };
  const loaded = new Map(), waiting = new Map();
  let page = null; // what is shown: {job, layer, data, grid}
  let lastHash = null;

  // --- small helpers ---------------------------------------------------------------------------
  function el(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value == null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const kid of kids.flat(Infinity)) if (kid != null && kid !== false) node.append(kid);
    return node;
  }
  function fmt(value) {
    if (value == null || !Number.isFinite(value)) return "–";
    if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) return value.toExponential(3);
    return String(Number(value.toPrecision(4)));
  }
  function ticks(lo, hi) {
    if (!(hi > lo)) return [lo];
    const rough = (hi - lo) / 5, magnitude = 10 ** Math.floor(Math.log10(rough));
    const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= rough);
    const out = [];
    for (let i = Math.ceil(lo / step); i <= Math.floor(hi / step); i++) out.push(Number((i * step).toPrecision(12)));
    return out;
  }
  const gradient = (stops, direction) => `linear-gradient(${direction}, ${stops.join(", ")})`;
  function hbar(stops, range) {
    if (!stops || !range) return null;
    const bar = el("div", { class: "hbar" });
    bar.style.background = gradient(stops, "to right");
    return [bar, el("div", { class: "ends" }, el("span", { text: fmt(range[0]) }), el("span", { text: fmt(range[1]) }))];
  }
  function vbar(stops, lo, hi) {
    const bar = el("div", { class: "vbar", title: `colour scale ${fmt(lo)} … ${fmt(hi)}` });
    bar.style.background = gradient(stops, "to top");
    for (const t of ticks(lo, hi)) {
      const tick = el("span", { text: fmt(t) });
      tick.style.bottom = `${hi > lo ? ((t - lo) / (hi - lo)) * 100 : 0}%`;
      bar.append(tick);
    }
    return bar;
  }
  function meta(pairs) {
    return el("dl", { class: "meta" }, pairs.map(([key, value]) => el("div", {}, el("dt", { text: key }), el("dd", { text: value }))));
  }
  function figure(fig) {
    return el("figure", {},
      el("a", { href: fig.src, target: "_blank", rel: "noopener" }, el("img", { src: fig.src, alt: fig.title, loading: "lazy" })),
      hbar(fig.cmap, fig.range),
      el("figcaption", { text: fig.note ? `${fig.title} (${fig.note})` : fig.title }));
  }

  // --- channel images: a file each, or a tile of an atlas page ----------------------------------
  // Channel c of a layer's images ({files} or {atlas}, see viz/explorer.py): {src} of its own file,
  // or {src, left, top, width, height} of its tile on a page; null when it is missing.
  function imageOf(images, channel) {
    if (images.files) return images.files[channel] ? { src: images.files[channel] } : null;
    const atlas = images.atlas, k = channel % atlas.perPage, src = atlas.pages[Math.floor(channel / atlas.perPage)];
    const [height, width] = atlas.tile;
    return src ? { src, left: (k % atlas.columns) * width, top: Math.floor(k / atlas.columns) * height, width, height } : null;
  }
  // A grid thumbnail: an image, or for a tile the page as the background of a box of the tile's size,
  // scaled as a whole (so no pixel of a neighbouring tile shows at its edges).
  function thumbnail(dir, image, side) {
    if (!image) return el("img", { alt: "missing" });
    if (image.left == null) return el("img", { src: dir + image.src, alt: "", decoding: "async" });
    const tile = el("span", { class: "tile" });
    Object.assign(tile.style, { width: `${image.width}px`, height: `${image.height}px`, backgroundImage: `url("${dir + image.src}")`,
      backgroundPosition: `${-image.left}px ${-image.top}px`, transform: `scale(${Math.min(side / image.width, side / image.height)})` });
    return el("span", { class: "thumb" }, tile);
  }
  // The one-channel view: the image enlarged by the largest whole factor within room x room (pixels stay
  // square); a tile is drawn from its page onto a canvas. then(zoom, width, height) once its size is known.
  function fullImage(dir, image, room, id, label, then) {
    if (image && image.left != null) {
      const canvas = el("canvas", { id, "aria-label": label, width: image.width, height: image.height, role: "img", "data-src": dir + image.src,
        "data-box": `${image.left},${image.top},${image.width},${image.height}` });
      const zoom = Math.max(1, Math.min(Math.floor(room / image.width), Math.floor(room / image.height)));
      canvas.style.width = `${image.width * zoom}px`;
      const page = new Image();
      page.addEventListener("load", () => {
        const context = canvas.getContext("2d");
        context.imageSmoothingEnabled = false;
        context.drawImage(page, image.left, image.top, image.width, image.height, 0, 0, image.width, image.height);
        canvas.dataset.drawn = "1";
      });
      page.src = dir + image.src;
      if (then) then(zoom, image.width, image.height);
      return canvas;
    }
    const img = el("img", { id, src: image ? dir + image.src : null, alt: label });
    enlarge(img, room, room, then && ((zoom) => then(zoom, img.naturalWidth, img.naturalHeight)));
    return img;
  }

  // --- the URL hash names the view -------------------------------------------------------------
  function hashOf(s) {
    const params = new URLSearchParams();
    if (s.job != null) params.set("job", s.job);
    if (s.layer != null) params.set("layer", s.layer);
    if (s.channel != null) params.set("channel", s.channel);
    if (s.sort !== "index") params.set("sort", s.sort);
    if (s.order) params.set("order", s.order);
    if (s.filter) params.set("filter", s.filter);
    return "#" + params.toString();
  }
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const channel = params.get("channel");
    return {
      job: params.get("job"), layer: params.get("layer"),
      channel: channel != null && /^\d+$/.test(channel) ? Number(channel) : null,
      sort: SORT_LABELS[params.get("sort")] ? params.get("sort") : "index",
      order: ["asc", "desc"].includes(params.get("order")) ? params.get("order") : null,
      filter: params.get("filter") || "",
    };
  }
  // Changes the view: a new history entry for a new layer or channel, the same entry otherwise.
  function go(changes, push) {
    remember(changes, push);
    show();
  }
  function remember(changes, push) {
    Object.assign(state, changes);
    lastHash = hashOf(state);
    if (push) history.pushState(null, "", lastHash);
    else history.replaceState(null, "", lastHash);
  }
  window.addEventListener("hashchange", () => {
    if (location.hash === lastHash) return;
    Object.assign(state, readHash());
    show();
  });
  window.addEventListener("popstate", () => { Object.assign(state, readHash()); lastHash = location.hash; show(); });

  function findLayer(jobId, layerId) {
    const jobs = INDEX.jobs.filter((job) => jobId == null || job.id === jobId);
    for (const job of jobs) {
      const layer = job.layers.find((l) => layerId == null || l.id === layerId) || job.layers.find((l) => l.label === layerId);
      if (layer) return [job, layer];
    }
    return [null, null];
  }

  // --- layer data: one <script> per layer, loaded when first shown ------------------------------
  window.explorerData = (key, data) => {
    loaded.set(key, data);
    for (const resolve of waiting.get(key) || []) resolve(data);
    waiting.delete(key);
  };
  function load(layer) {
    if (loaded.has(layer.key)) return Promise.resolve(loaded.get(layer.key));
    return new Promise((resolve, reject) => {
      if (!waiting.has(layer.key)) {
        waiting.set(layer.key, []);
        document.head.append(el("script", { src: layer.src, onerror: () => { waiting.delete(layer.key); reject(layer); } }));
      }
      waiting.get(layer.key).push(resolve);
    });
  }

  // --- navigation --------------------------------------------------------------------------------
  const KIND_TITLES = { image: "Images", compare: "Compare", scan: "Dataset scans" };
  function buildNav() {
    const side = document.getElementById("side"), picker = document.getElementById("picker");
    side.replaceChildren();
    picker.replaceChildren(el("option", { value: "", text: "Overview" }));
    let kind = null;
    for (const job of INDEX.jobs) {
      if (job.kind !== kind) side.append(el("h2", { text: KIND_TITLES[(kind = job.kind)] }));
      side.append(el("h3", { text: job.label, title: job.label }));
      const group = el("optgroup", { label: `${KIND_TITLES[job.kind]}: ${job.label}` });
      for (const layer of job.layers) {
        const hash = hashOf({ job: job.id, layer: layer.id, channel: null, sort: "index", order: null, filter: "" });
        const text = layer.channels != null ? `${layer.label} (${layer.channels})` : layer.label;
        side.append(el("a", { href: hash, "data-job": job.id, "data-layer": layer.id, text }));
        group.append(el("option", { value: hash, text }));
      }
      picker.append(group);
    }
    picker.addEventListener("change", () => { location.hash = picker.value || "#"; });
  }
  function markNav() {
    for (const link of document.querySelectorAll("#side a")) {
      const here = page && link.dataset.job === page.job.id && link.dataset.layer === page.layer.id;
      if (here) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
    }
    const picker = document.getElementById("picker");
    picker.value = page ? hashOf({ job: page.job.id, layer: page.layer.id, channel: null, sort: "index", order: null, filter: "" }) : "";
    document.getElementById("where").textContent = page ? `${KIND_TITLES[page.job.kind]} · ${page.job.label} · ${page.layer.label}` : "";
  }

  function leave() {
    if (page && page.grid) page.grid.destroy();
    page = null;
    markNav();
    closeChannel();
    window.scrollTo(0, 0);
  }
  function overview() {
    leave();
    document.title = `${INDEX.title} · fastinterp explorer`;
    const kids = [el("h1", { text: `Jobs in ${INDEX.title}` })];
    if (!INDEX.jobs.length) kids.push(el("p", { class: "empty", text: "No jobs found in this folder: run fastinterp-viz (or a compare or scan) with --out pointing here, then fastinterp-viz open." }));
    for (const job of INDEX.jobs) {
      kids.push(el("h2", { text: `${KIND_TITLES[job.kind]}: ${job.label}` }), meta(job.info),
        el("p", {}, job.layers.map((layer) => [el("a", { href: hashOf({ ...state, job: job.id, layer: layer.id, channel: null }), text: layer.label }), " "])));
    }
    if (INDEX.skipped.length) {
      kids.push(el("h2", { text: "Not shown" }), el("ul", {}, INDEX.skipped.map((s) => el("li", { text: `${s.path}: ${s.reason}` }))));
    }
    main.replaceChildren(...kids);
  }

  // --- the layer page ----------------------------------------------------------------------------
  async function show() {
    if (state.job == null && state.layer == null) { overview(); return; }
    const [job, layer] = findLayer(state.job, state.layer);
    if (!layer) {
      leave();
      main.replaceChildren(el("h1", { text: "Not found" }), el("p", { class: "empty", text: `No layer ${state.layer ?? ""} in job ${state.job ?? ""} here.` }), el("a", { href: "#", text: "All jobs" }));
      return;
    }
    if (!page || page.layer !== layer) {
      let data;
      try { data = await load(layer); } catch {
        leave();
        main.replaceChildren(el("p", { class: "empty", text: `The data file of ${layer.label} is missing: run fastinterp-viz open on this folder again.` }));
        return;
      }
      if (findLayer(state.job, state.layer)[1] !== layer) return; // the user moved on while it loaded
      leave();
      page = { job, layer, data, grid: null };
      renderLayer();
      markNav();
    }
    if (state.sort !== "index" && !(page.data.stats || {})[state.sort]) remember({ sort: "index" }, false); // e.g. activity: scans only
    if (page.grid) page.grid.update();
    if (state.channel != null && state.channel < page.data.count) openChannel(state.channel); else closeChannel();
  }

  function renderLayer() {
    const { job, layer, data } = page;
    document.title = `${layer.label} · ${job.label} · fastinterp explorer`;
    const kids = [el("h1", { text: `${layer.label}` }), meta([["Job", `${KIND_TITLES[job.kind]}: ${job.label}`], ...job.info, ...data.info])];
    if (data.kind === "compare") {
      kids.push(el("div", { class: "figs" }, data.groups.map((group) =>
        el("section", { class: "group" }, el("h2", { text: group.title }), el("div", { class: "figs" }, group.figures.map((f) => figure(f)))))));
      if (data.sheetChannels.length) kids.push(el("p", { class: "note", text: `Sheet channels, best first: ${data.sheetChannels.map((c) => "#" + c).join(" ")}` }));
      if (!data.count) kids.push(el("p", { class: "note", text: "This compare was written without per-channel images; run it again for A, B and A − B of each channel." }));
    } else if (data.figures.length) kids.push(el("h2", { text: "Summaries" }), el("div", { class: "figs" }, data.figures.map((f) => figure(f))));
    if (data.count) {
      kids.push(el("h2", { text: data.kind === "compare" ? `Channels (${data.count}): A − B of each channel; open one for A beside B` : `Channels (${data.count})` }));
      page.grid = new Grid(data);
      kids.push(page.grid.tools, page.grid.node);
    }
    main.replaceChildren(...kids);
    if (page.grid) page.grid.layout();
  }

  // Channel indices from a filter such as "12", "100-199" or "1,5,9-12"; null when it does not parse.
  function parseFilter(text, count) {
    if (!text.trim()) return null;
    const keep = new Uint8Array(count);
    for (const part of text.split(",")) {
      const match = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
      if (!match) return undefined;
      const lo = Number(match[1]), hi = Math.min(count - 1, match[2] != null ? Number(match[2]) : lo);
      for (let c = lo; c <= hi; c++) keep[c] = 1;
    }
    return keep;
  }

  // The channels as a virtualised grid: only the rows near the viewport have elements.
  class Grid {
    constructor(data) {
      this.data = data;
      this.cells = new Map();
      this.order = [];
      this.key = "";
      this.node = el("div", { class: "grid", role: "list", "data-total": data.count });
      const sorts = ["index", ...Object.keys(data.stats)];
      this.sortSelect = el("select", { "aria-label": "Sort by", onchange: () => go({ sort: this.sortSelect.value, order: null }) },
        sorts.map((s) => el("option", { value: s, text: SORT_LABELS[s] || s })));
      this.orderButton = el("button", { type: "button", title: "Reverse the order", onclick: () => go({ order: this.descending() ? "asc" : "desc" }) });
      this.filterInput = el("input", { type: "search", placeholder: "e.g. 0-99, 512", "aria-label": "Channel filter", oninput: () => go({ filter: this.filterInput.value.trim() }) });
      this.countText = el("span", { class: "count", "aria-live": "polite" });
      this.tools = el("div", { class: "tools" },
        el("label", {}, "Sort", this.sortSelect), this.orderButton,
        el("label", {}, "Channels", this.filterInput), this.countText);
      let queued = false;
      const redraw = () => { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; this.draw(); }); } };
      this.onScroll = redraw;
      this.onResize = () => { this.layout(); };
      window.addEventListener("scroll", this.onScroll, { passive: true });
      window.addEventListener("resize", this.onResize);
      this.watcher = new ResizeObserver(redraw); // the summaries' images move the grid as they load
      this.watcher.observe(main);
    }
    destroy() {
      window.removeEventListener("scroll", this.onScroll);
      window.removeEventListener("resize", this.onResize);
      this.watcher.disconnect();
    }
    descending() { return state.order ? state.order === "desc" : state.sort !== "index"; }
    update() {
      const key = `${state.sort}|${this.descending()}|${state.filter}`;
      if (this.sortSelect.value !== state.sort) this.sortSelect.value = state.sort;
      if (document.activeElement !== this.filterInput) this.filterInput.value = state.filter;
      if (key === this.key) return this.mark();
      this.key = key;
      const count = this.data.count, keep = parseFilter(state.filter, count);
      this.filterInput.classList.toggle("bad", keep === undefined);
      const order = [];
      for (let c = 0; c < count; c++) if (!keep || keep[c]) order.push(c);
      const values = this.data.stats[state.sort], sign = this.descending() ? -1 : 1;
      if (values) order.sort((a, b) => (values[a] == null) - (values[b] == null) || sign * (values[a] - values[b]) || a - b);
      else if (sign < 0) order.reverse();
      this.order = order;
      this.position = new Map(order.map((c, i) => [c, i]));
      this.orderButton.textContent = this.descending() ? "↓ highest first" : "↑ lowest first";
      this.countText.textContent = `${order.length} of ${count} channels`;
      this.node.dataset.shown = order.length;
      for (const cell of this.cells.values()) cell.remove();
      this.cells.clear();
      this.layout();
    }
    layout() {
      const width = this.node.clientWidth || main.clientWidth;
      const target = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--cell")) || 120;
      this.columns = Math.max(1, Math.floor((width + GAP_PX) / (target + GAP_PX)));
      this.side = (width - GAP_PX * (this.columns - 1)) / this.columns;
      this.rowHeight = this.side + ROW_LABEL_PX + GAP_PX;
      this.node.style.height = `${Math.ceil(this.order.length / this.columns) * this.rowHeight}px`;
      for (const cell of this.cells.values()) cell.remove();
      this.cells.clear();
      this.draw();
    }
    draw() {
      if (!this.node.isConnected) return;
      const top = -this.node.getBoundingClientRect().top, screen = window.innerHeight;
      const first = Math.max(0, Math.floor((top - screen / 2) / this.rowHeight) * this.columns);
      const last = Math.min(this.order.length, Math.ceil((top + screen * 1.5) / this.rowHeight) * this.columns);
      for (const [i, cell] of this.cells) if (i < first || i >= last) { cell.remove(); this.cells.delete(i); }
      const fresh = document.createDocumentFragment();
      for (let i = first; i < last; i++) if (!this.cells.has(i)) { const cell = this.cell(i); this.cells.set(i, cell); fresh.append(cell); }
      this.node.append(fresh);
      this.mark();
    }
    cell(i) {
      const channel = this.order[i], values = this.data.stats[state.sort];
      const cell = el("a", { class: this.data.kind === "scan" ? "cell strip" : "cell", role: "listitem", href: hashOf({ ...state, channel }), "data-channel": channel },
        thumbnail(this.data.dir, imageOf(this.data, channel), this.side),
        el("span", {}, el("b", { text: `#${channel}` }), values ? fmt(values[channel]) : ""));
      cell.style.width = `${this.side}px`;
      cell.style.height = `${this.side + ROW_LABEL_PX}px`;
      cell.style.transform = `translate(${(i % this.columns) * (this.side + GAP_PX)}px, ${Math.floor(i / this.columns) * this.rowHeight}px)`;
      cell.addEventListener("click", (event) => { if (!event.ctrlKey && !event.metaKey && !event.shiftKey) { event.preventDefault(); go({ channel }, true); } });
      return cell;
    }
    mark() {
      for (const cell of this.cells.values()) cell.classList.toggle("current", Number(cell.dataset.channel) === state.channel);
    }
    reveal(channel) {
      const i = this.position.get(channel);
      if (i == null) return;
      const y = this.node.getBoundingClientRect().top + window.scrollY + Math.floor(i / this.columns) * this.rowHeight;
      if (y < window.scrollY + 100 || y + this.rowHeight > window.scrollY + window.innerHeight) window.scrollTo(0, Math.max(0, y - window.innerHeight / 3));
    }
  }

  // --- the channel view --------------------------------------------------------------------------
  function step(delta) {
    const grid = page && page.grid;
    if (!grid || !grid.order.length) return;
    const here = state.channel == null ? -1 : grid.position.get(state.channel) ?? -1;
    const next = here < 0 ? (delta > 0 ? 0 : grid.order.length - 1) : here + delta;
    if (next >= 0 && next < grid.order.length) go({ channel: grid.order[next] }, false);
  }
  // Shows an image at the largest whole multiple of its size (pixels stay square) within width x height.
  function enlarge(image, width, height, then) {
    image.addEventListener("load", () => {
      const zoom = Math.max(1, Math.min(Math.floor(width / image.naturalWidth), Math.floor(height / image.naturalHeight)));
      image.style.width = `${image.naturalWidth * zoom}px`;
      if (then) then(zoom);
    });
  }
  function closeChannel() {
    if (!view.hidden) { view.hidden = true; view.replaceChildren(); document.body.style.overflow = ""; }
  }
  function openChannel(channel) {
    const { data, layer, grid } = page;
    const position = grid.position.get(channel);
    const rank = position == null ? "not in the filtered list" : `${position + 1} of ${grid.order.length} by ${SORT_LABELS[state.sort]}`;
    const body = el("div", { class: "body" });
    const shown = imageOf(data, channel);
    const stats = el("table", {}, el("tbody", {}, Object.entries(data.stats).map(([key, values]) =>
      el("tr", {}, el("th", { text: SORT_LABELS[key] || key }), el("td", { class: "num", text: fmt(values[channel]) })))));
    if (data.kind === "image") {
      const lo = data.scale ? data.scale[0][channel] : null, hi = data.scale ? data.scale[1][channel] : null;
      const bar = lo != null && hi != null ? vbar(data.cmap, lo, hi) : null;
      const size = el("p", { class: "note" });
      const room = Math.min(window.innerWidth - 140, 520, Math.max(200, window.innerHeight - 220));
      const image = fullImage(data.dir, shown, room, "channel-image", `channel ${channel}`, (zoom, width, height) => {
        size.textContent = `${width} × ${height} px${zoom > 1 ? `, shown ${zoom}×` : ""}; colour scale ${fmt(lo)} … ${fmt(hi)}`;
      });
      body.append(el("div", {}, el("div", { class: "full" }, image, bar), size),
        el("div", {}, el("h2", { text: "Statistics of the channel's map" }), stats));
    } else if (data.kind === "compare") {
      const lo = data.scale[0][channel], hi = data.scale[1][channel], limit = data.diffLimit[channel];
      const room = Math.max(64, Math.min((window.innerWidth - 400) / 3, 360, window.innerHeight - 260)); // A, B and A − B in a row
      const pane = (title, image, id) =>
        el("div", { class: "pane" }, fullImage(data.dir, image, room, id, `${title}, channel ${channel}`), el("span", { title, text: title }));
      const of = (which) => imageOf({ files: data["files" + which], atlas: data["atlas" + which] }, channel);
      body.append(
        el("div", {}, el("div", { class: "full", id: "channel-ab" },
          pane(`A: ${data.labels[0]}`, of("A"), "channel-a"), pane(`B: ${data.labels[1]}`, of("B"), "channel-b"),
          lo != null && hi != null ? vbar(data.cmap, lo, hi) : null),
        el("p", { class: "note", text: `A and B on one colour scale, ${fmt(lo)} … ${fmt(hi)}` })),
        el("div", {}, el("div", { class: "full", id: "channel-diff" }, pane("A − B", shown, "channel-image"),
          limit != null ? vbar(data.diffCmap, -limit, limit) : null),
        el("p", { class: "note", text: `difference, ${fmt(-limit)} … ${fmt(limit)} (white = 0, red where A is higher)` })),
        el("div", {}, el("h2", { text: "Statistics of the channel's raw maps" }), stats));
    } else {
      const tops = data.top[channel] || [];
      const strip = shown ? el("img", { src: data.dir + shown.src, alt: `top images of channel ${channel}`, id: "channel-image" }) : el("p", { class: "empty", text: "No strip file for this channel (yet)." });
      if (shown) enlarge(strip, Math.min(window.innerWidth - 60, 1060), Math.max(120, window.innerHeight / 3));
      body.append(el("div", { class: "strip" }, strip),
        el("div", {}, el("h2", { text: "Statistics over the dataset" }), stats),
        el("div", { class: "tops" }, el("h2", { text: `Top ${tops.length} images, best first (left to right in the strip)` }),
          el("table", {}, el("thead", {}, el("tr", {}, ["#", "image", "score", "max at (y, x)"].map((t) => el("th", { text: t })))),
            el("tbody", {}, tops.map(([image, score, [y, x]], rankInTop) => {
              const name = data.images[image] ?? String(image);
              return el("tr", {}, el("td", { class: "num", text: rankInTop + 1 }), el("td", { title: name, text: name.split("/").pop() }),
                el("td", { class: "num", text: fmt(score) }), el("td", { class: "num", text: `(${y}, ${x})` }));
            })))));
    }
    view.replaceChildren(el("div", { class: "panel" },
      el("header", {},
        el("h2", { id: "view-title", text: `${layer.label} · channel #${channel}` }),
        el("span", { class: "note", text: `rank ${rank}` }),
        el("button", { type: "button", title: "Previous (← or k)", onclick: () => step(-1), text: "‹ prev" }),
        el("button", { type: "button", title: "Next (→ or j)", onclick: () => step(1), text: "next ›" }),
        el("button", { type: "button", title: "Close (Esc)", onclick: () => go({ channel: null }, false), text: "✕", "aria-label": "Close" })),
      body));
    view.hidden = false;
    view.dataset.channel = channel;
    document.body.style.overflow = "hidden";
    grid.reveal(channel);
    grid.mark();
  }
  view.addEventListener("click", (event) => { if (event.target === view) go({ channel: null }, false); });

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest && event.target.closest("input, select, textarea") && event.key !== "Escape") return;
    if (event.key === "ArrowRight" || event.key === "j") step(1);
    else if (event.key === "ArrowLeft" || event.key === "k") step(-1);
    else if (event.key === "Escape" && state.channel != null) go({ channel: null }, false);
    else return;
    event.preventDefault();
  });

  buildNav();
  Object.assign(state, readHash());
  lastHash = location.hash;
  if (state.job == null && state.layer == null && INDEX.jobs.length === 1 && INDEX.jobs[0].layers.length === 1) {
    Object.assign(state, { job: INDEX.jobs[0].id, layer: INDEX.jobs[0].layers[0].id });
  }
  show().then(() => { document.body.dataset.ready = "1"; performance.mark("explorer-ready"); });
})();
