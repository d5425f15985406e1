// Message catalogues (web/i18n/<lang>.json): Bahasa Indonesia and English.
//
// The language is the user's choice when they made one (kept in localStorage), otherwise the
// first of the browser's languages we have, otherwise English. Static page text carries
// data-i18n attributes; dynamic text calls t().

export const LANGUAGES = Object.freeze([
  { code: "en", label: "English" },
  { code: "id", label: "Bahasa Indonesia" },
]);
const SUPPORTED = new Set(LANGUAGES.map((l) => l.code));
const STORAGE_KEY = "conf.lang";

/** The language to use: a stored choice, else the first supported browser language, else "en". */
export function pickLanguage(stored, browserLanguages) {
  if (stored && SUPPORTED.has(stored)) return stored;
  for (const tag of browserLanguages || []) {
    const primary = String(tag).toLowerCase().split("-")[0];
    if (SUPPORTED.has(primary)) return primary;
  }
  return "en";
}

function storage() {
  try {
    return globalThis.localStorage || null;
  } catch {
    return null; // storage disabled by policy
  }
}

export class Translator extends EventTarget {
  constructor() {
    super();
    this.lang = "en";
    this._catalog = {};
    this._fallback = {};
    this._plural = new Intl.PluralRules("en");
  }

  async init() {
    const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
    this._fallback = await fetchCatalog("en");
    const lang = pickLanguage(storage() && storage().getItem(STORAGE_KEY), langs);
    await this._use(lang);
  }

  async setLanguage(lang, { remember = true } = {}) {
    if (!SUPPORTED.has(lang) || lang === this.lang) return;
    await this._use(lang);
    if (remember && storage()) storage().setItem(STORAGE_KEY, lang);
    this.dispatchEvent(new CustomEvent("change", { detail: { lang } }));
  }

  async _use(lang) {
    this._catalog = lang === "en" ? this._fallback : await fetchCatalog(lang);
    this.lang = lang;
    this._plural = new Intl.PluralRules(lang);
    document.documentElement.lang = lang;
    this.translate(document);
  }

  /** The message `key` with {placeholders} filled from `params`. */
  t(key, params = {}) {
    let s = this._catalog[key] ?? this._fallback[key];
    if (typeof s !== "string") {
      console.warn("missing message", key);
      return key;
    }
    return s.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
  }

  /** `key_one` / `key_other` chosen by the language's plural rules for `count`. */
  plural(key, count, params = {}) {
    const form = `${key}_${this._plural.select(count)}`;
    const chosen = form in this._catalog || form in this._fallback ? form : `${key}_other`;
    return this.t(chosen, { count, ...params });
  }

  /** Fills elements marked data-i18n (text), data-i18n-label (aria-label and title),
   *  data-i18n-placeholder and data-i18n-title below `root`. */
  translate(root) {
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = this.t(el.dataset.i18n);
    for (const el of root.querySelectorAll("[data-i18n-label]")) {
      const text = this.t(el.dataset.i18nLabel);
      el.setAttribute("aria-label", text);
      el.title = text;
    }
    for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = this.t(el.dataset.i18nPlaceholder);
    for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = this.t(el.dataset.i18nTitle);
  }

  formatTime(ms) {
    return new Intl.DateTimeFormat(this.lang === "id" ? "id-ID" : "en-GB", { hour: "2-digit", minute: "2-digit" }).format(ms);
  }
}

async function fetchCatalog(lang) {
  const resp = await fetch(`/static/i18n/${lang}.json`, { credentials: "same-origin" });
  if (!resp.ok) throw new Error(`cannot load the ${lang} messages (${resp.status})`);
  return resp.json();
}
