// The stage: the grid (25 tiles a page), the speaker view (one large tile and a filmstrip) and
// the presentation view (a screen share large, cameras in the filmstrip).
//
// Tiles are kept across renders so video keeps playing; after every layout the stage reports the
// tiles on screen with their size, which becomes the client's video subscription.

import { h, svgIcon } from "./dom.js";
import { ICONS } from "./icons.js";
import { Tile } from "./tile.js";

export const PAGE_SIZE = 25;
const GAP = 8;
const ASPECT = 16 / 9;
const STRIP_TILE_W = 192;

/** Columns and tile size that make `n` 16:9 tiles as large as possible in width x height. */
export function gridFit(n, width, height, gap = GAP) {
  let best = { cols: 1, rows: 1, tileW: 0, tileH: 0 };
  for (let cols = 1; cols <= Math.max(1, n); cols++) {
    const rows = Math.ceil(n / cols);
    const w = Math.min((width - gap * (cols - 1)) / cols, ((height - gap * (rows - 1)) / rows) * ASPECT);
    if (w > best.tileW) best = { cols, rows, tileW: Math.floor(w), tileH: Math.floor(w / ASPECT) };
  }
  return best;
}

export class Stage {
  constructor({ i18n, root, onPin, onVisible }) {
    this.i18n = i18n;
    this.root = root;
    this.onPin = onPin;
    this.onVisible = onVisible;
    this.tiles = new Map(); // "sid:source" -> Tile
    this.page = 0;
    this.stripPage = 0;
    this.model = null;
    this.layout = "grid";
    this.main = h("div", { class: "stage-main" });
    this.stripTiles = h("div", { class: "strip-tiles" });
    this.stripPrev = this._navButton("stage.strip_prev", ICONS.prev, () => this._turnStrip(-1), "strip-prev");
    this.stripNext = this._navButton("stage.strip_next", ICONS.next, () => this._turnStrip(1), "strip-next");
    this.strip = h("div", { class: "stage-strip" }, this.stripPrev, this.stripTiles, this.stripNext);
    this.pageLabel = h("span", { class: "pager-label", "aria-live": "polite" });
    this.pagePrev = this._navButton("stage.page_prev", ICONS.prev, () => this.turnPage(-1), "page-prev");
    this.pageNext = this._navButton("stage.page_next", ICONS.next, () => this.turnPage(1), "page-next");
    this.pager = h("nav", { class: "pager", "aria-label": "" }, this.pagePrev, this.pageLabel, this.pageNext);
    root.replaceChildren(this.main, this.strip, this.pager);
    this._resizeObserver = new ResizeObserver(() => this._fit());
    this._resizeObserver.observe(root);
    i18n.addEventListener("change", () => this.model && this.render(this.model));
  }

  _navButton(labelKey, icon, onclick, testid) {
    const b = h("button", { type: "button", class: "icon-btn nav-btn", dataset: { testid, label: labelKey }, onclick }, svgIcon(icon));
    return b;
  }

  /**
   * model: {people (self first), selfSid, pinned, speaker, speaking (Set of sids), screens
   * ([{sid}] newest last), presenting (show the newest screen large), mode ("grid" | "speaker"),
   * videoFor(sid, source)}
   */
  render(model) {
    this.model = model;
    const { people, pinned, speaker, screens, mode, selfSid, presenting } = model;
    const bySid = new Map(people.map((p) => [p.sid, p]));
    let mainKeys = [];
    let stripPeople = [];
    const shared = screens.filter((s) => bySid.has(s.sid));
    const screen = presenting ? shared[shared.length - 1] : null;
    if (screen) {
      this.layout = "presentation";
      mainKeys = [[bySid.get(screen.sid), "screen"]];
      stripPeople = orderForStrip(people, pinned, speaker, screen.sid);
    } else if ((pinned && bySid.has(pinned)) || (mode === "speaker" && people.length > 1)) {
      this.layout = "speaker";
      const others = people.filter((p) => p.sid !== selfSid);
      const focus = bySid.get(pinned) || bySid.get(speaker !== selfSid ? speaker : null) || others[0] || people[0];
      mainKeys = [[focus, "camera"]];
      stripPeople = orderForStrip(people.filter((p) => p.sid !== focus.sid), pinned, speaker, null);
    } else {
      this.layout = "grid";
      const pages = Math.max(1, Math.ceil(people.length / PAGE_SIZE));
      this.page = Math.min(this.page, pages - 1);
      mainKeys = people.slice(this.page * PAGE_SIZE, (this.page + 1) * PAGE_SIZE).map((p) => [p, "camera"]);
      if (this.page === 0) mainKeys.unshift(...shared.map((s) => [bySid.get(s.sid), "screen"]));
    }
    this.root.dataset.layout = this.layout;
    this.root.setAttribute("aria-label", this.i18n.t("stage.label"));
    this._stripPeople = stripPeople;
    this._place(this.main, mainKeys);
    this._renderPager(people.length);
    this._fit();
  }

  /** Puts the tiles for [participant, source] pairs into `container`, in order. */
  _place(container, pairs) {
    const wanted = new Set(pairs.map(([p, source]) => `${p.sid}:${source}`));
    for (const [key, tile] of this.tiles) {
      if (tile.el.parentElement === container && !wanted.has(key)) tile.el.remove();
    }
    const nodes = pairs.map(([p, source]) => this._tile(p, source).el);
    nodes.forEach((node, i) => {
      if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null);
    });
    this._dropDetached();
  }

  _tile(participant, source) {
    const key = `${participant.sid}:${source}`;
    let tile = this.tiles.get(key);
    if (!tile) {
      tile = new Tile({ i18n: this.i18n, participant, source, isSelf: participant.sid === this.model.selfSid, onPin: this.onPin });
      this.tiles.set(key, tile);
    }
    const { speaking, pinned, videoFor, keysMissing } = this.model;
    tile.update({ participant, track: videoFor(participant.sid, source), speaking: speaking.has(participant.sid), pinned: pinned === participant.sid, keysMissing: keysMissing ? keysMissing(participant.sid) : null });
    return tile;
  }

  _dropDetached() {
    for (const [key, tile] of this.tiles) {
      if (!tile.el.isConnected) {
        tile.remove();
        this.tiles.delete(key);
      }
    }
  }

  _renderPager(count) {
    const pages = Math.max(1, Math.ceil(count / PAGE_SIZE));
    const show = this.layout === "grid" && pages > 1;
    this.pager.hidden = !show;
    const t = (k, p) => this.i18n.t(k, p);
    this.pager.setAttribute("aria-label", t("stage.pages"));
    this.pageLabel.textContent = t("stage.page_of", { page: this.page + 1, pages });
    this.pagePrev.disabled = this.page === 0;
    this.pageNext.disabled = this.page >= pages - 1;
    for (const b of [this.pagePrev, this.pageNext, this.stripPrev, this.stripNext]) {
      b.setAttribute("aria-label", t(b.dataset.label));
      b.title = t(b.dataset.label);
    }
  }

  turnPage(delta) {
    if (!this.model) return;
    const pages = Math.max(1, Math.ceil(this.model.people.length / PAGE_SIZE));
    const page = Math.min(pages - 1, Math.max(0, this.page + delta));
    if (page === this.page) return;
    this.page = page;
    this.render(this.model);
  }

  _turnStrip(delta) {
    this.stripPage = Math.max(0, this.stripPage + delta);
    this._fit();
  }

  /** Sizes tiles to the space there is, fills the filmstrip and reports what is visible. */
  _fit() {
    if (!this.model) return;
    const inStrip = this.layout !== "grid";
    this.strip.hidden = !inStrip || this._stripPeople.length === 0;
    if (inStrip && !this.strip.hidden) {
      const width = this.strip.clientWidth - 2 * 44;
      const perPage = Math.max(1, Math.floor((width + GAP) / (STRIP_TILE_W + GAP)));
      const pages = Math.max(1, Math.ceil(this._stripPeople.length / perPage));
      this.stripPage = Math.min(this.stripPage, pages - 1);
      const shown = this._stripPeople.slice(this.stripPage * perPage, (this.stripPage + 1) * perPage);
      this._place(this.stripTiles, shown.map((p) => [p, "camera"]));
      this.stripPrev.hidden = pages <= 1;
      this.stripNext.hidden = pages <= 1;
      this.stripPrev.disabled = this.stripPage === 0;
      this.stripNext.disabled = this.stripPage >= pages - 1;
    } else {
      this._place(this.stripTiles, []);
    }
    const n = this.main.children.length;
    const fit = gridFit(n, this.main.clientWidth, this.main.clientHeight);
    this.main.style.setProperty("--tile-w", `${fit.tileW}px`);
    this.main.style.setProperty("--tile-h", `${fit.tileH}px`);
    this._reportVisible();
  }

  _reportVisible() {
    const visible = [];
    for (const tile of this.tiles.values()) {
      if (tile.isSelf || !tile.el.isConnected) continue;
      visible.push({ sid: tile.participant.sid, source: tile.source, ...tile.size() });
    }
    this.onVisible(visible);
  }

  /** Re-binds video after tracks changed, without a new layout. */
  refreshVideo() {
    if (!this.model) return;
    for (const tile of this.tiles.values()) {
      const { speaking, pinned, videoFor, keysMissing } = this.model;
      tile.update({
        participant: tile.participant,
        track: videoFor(tile.participant.sid, tile.source),
        speaking: speaking.has(tile.participant.sid),
        pinned: pinned === tile.participant.sid,
        keysMissing: keysMissing ? keysMissing(tile.participant.sid) : null,
      });
    }
  }
}

/** Filmstrip order: the pinned participant, the speaker, the presenter, then the rest. */
function orderForStrip(people, pinned, speaker, presenter) {
  const rank = (p) => (p.sid === pinned ? 0 : p.sid === speaker ? 1 : p.sid === presenter ? 2 : 3);
  return [...people].sort((a, b) => rank(a) - rank(b));
}
