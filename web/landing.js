// The start page: explains how to join, in the user's language.

import { Translator } from "./i18n.js";
import { mountLanguagePickers } from "./langpicker.js";

const i18n = new Translator();
i18n
  .init()
  .then(() => {
    mountLanguagePickers(i18n);
    document.title = i18n.t("landing.title");
    i18n.addEventListener("change", () => (document.title = i18n.t("landing.title")));
  })
  .catch((err) => console.error(err));
