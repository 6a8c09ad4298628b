// Light or dark: the system's choice unless the reader picks one, which localStorage remembers.

const KEY = "trdbot.theme";

export function applyTheme(choice) {
  if (choice === "light" || choice === "dark") document.documentElement.dataset.theme = choice;
  else delete document.documentElement.dataset.theme;
}

export function bindTheme(onChange) {
  const select = document.getElementById("theme-choice");
  const saved = localStorage.getItem(KEY) || "system";
  select.value = saved;
  applyTheme(saved);
  select.addEventListener("change", () => {
    localStorage.setItem(KEY, select.value);
    applyTheme(select.value);
    onChange();
  });
  matchMedia("(prefers-color-scheme: light)").addEventListener("change", onChange);
}
