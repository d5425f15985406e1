// The start page: explains how to join, in the user's language, with the organisation's branding.

import { applyBrand, loadBrand } from "./brand.js";
import { Translator } from "./i18n.js";
import { mountLanguagePickers } from "./langpicker.js";

const i18n = new Translator();
Promise.all([loadBrand(), i18n.init()])
  .then(([brand]) => {
    applyBrand(document, brand);
    mountLanguagePickers(i18n);
    const title = () => (document.title = brand.name || i18n.t("landing.title"));
    title();
    i18n.addEventListener("change", title);
  })
  .catch((err) => console.error(err));
