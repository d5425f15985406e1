// The organisation's branding ([ui] in the server's configuration): its name in the page title and
// header, its logo, and its privacy note, all shown as text or as an image, never parsed as HTML.
// The accent colour needs no code: the pages link /brand.css, custom properties made by the server.

import { h } from "./dom.js";

export const NO_BRAND = Object.freeze({ name: null, logo: null, privacyNote: null });

function text(value) {
  return typeof value === "string" && value.trim() ? value.trim() : null;
}

/** The branding from /brand.json; without it (an older server, a network error) the page's own. */
export async function loadBrand(fetchFn = globalThis.fetch) {
  try {
    const resp = await fetchFn("/brand.json", { credentials: "same-origin" });
    if (!resp.ok) return NO_BRAND;
    const data = await resp.json();
    const logo = text(data.logo);
    return Object.freeze({
      name: text(data.name),
      logo: logo && logo.startsWith("/") && !logo.startsWith("//") ? logo : null, // this server's only
      privacyNote: text(data.privacy_note),
    });
  } catch {
    return NO_BRAND;
  }
}

/** Puts the branding into the page's static parts: `.brand-name`, `.brand-mark`, `.privacy-note`.
 *  Their catalogue keys are dropped, so that switching the language leaves them as they are. */
export function applyBrand(doc, brand) {
  if (brand.name) {
    for (const el of doc.querySelectorAll(".brand-name")) {
      el.removeAttribute("data-i18n");
      el.textContent = brand.name;
      el.dir = "auto";
    }
  }
  if (brand.logo) {
    for (const mark of doc.querySelectorAll(".brand-mark")) {
      // Beside the name the logo is decoration; in the meeting's top bar it stands for the name.
      const alt = mark.closest(".brand") ? "" : brand.name || "";
      mark.replaceWith(h("img", { class: "brand-logo", src: brand.logo, alt, dataset: { testid: "brand-logo" } }));
    }
    const icon = doc.querySelector('link[rel="icon"]');
    if (icon) {
      icon.removeAttribute("type");
      icon.href = brand.logo;
    }
  }
  if (brand.privacyNote) {
    for (const el of doc.querySelectorAll(".privacy-note")) {
      el.removeAttribute("data-i18n");
      el.textContent = brand.privacyNote;
      el.dir = "auto";
      el.classList.add("privacy-note-custom");
    }
  }
}

/** A page's title followed by the organisation's name (today's titles when none is configured). */
export function pageTitle(i18n, brand, page) {
  return brand && brand.name ? i18n.t("app.page_title_branded", { page, brand: brand.name }) : page;
}
