// The language switch: a labelled <select> placed in every element with class "lang-slot".

import { h, svgIcon } from "./dom.js";
import { ICONS } from "./icons.js";
import { LANGUAGES } from "./i18n.js";

export function mountLanguagePickers(i18n) {
  const selects = [];
  document.querySelectorAll(".lang-slot").forEach((slot, i) => {
    const id = `lang-${i}`;
    const label = h("label", { for: id, class: "visually-hidden" });
    const select = h(
      "select",
      { id, class: "lang-select", dataset: { testid: "language" }, lang: "" },
      ...LANGUAGES.map((l) => h("option", { value: l.code, lang: l.code }, l.label)),
    );
    select.value = i18n.lang;
    select.addEventListener("change", () => i18n.setLanguage(select.value));
    slot.replaceChildren(h("span", { class: "lang-picker" }, svgIcon(ICONS.language, "icon"), label, select));
    selects.push({ select, label });
  });
  const sync = () => {
    for (const { select, label } of selects) {
      select.value = i18n.lang;
      label.textContent = i18n.t("common.language");
      select.title = i18n.t("common.language");
    }
  };
  i18n.addEventListener("change", sync);
  sync();
}
