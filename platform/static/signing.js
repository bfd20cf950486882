// The signing page's conveniences. The page works without this script (every change is a
// normal form post); with it, each tick is saved at once and the counts stay live.
// It never talks to the signing agent (that is agent-client.js, in the signing issue).

const form = document.getElementById("selection-form");
const countEl = document.getElementById("selection-count");
const messageEl = document.getElementById("selection-message");
const clearButton = document.getElementById("clear-selection");

function show(message, ok) {
  if (!messageEl) return;
  messageEl.textContent = message || "";
  messageEl.hidden = !message;
  messageEl.classList.toggle("error", !ok);
  messageEl.classList.toggle("success", ok);
}

function doseBoxes(scope) {
  return Array.from(scope.querySelectorAll("input.dose-box:not(:disabled)"));
}

// A person's box is ticked when all their selectable doses are, "mixed" when some are.
function syncPerson(tbody) {
  const box = tbody.querySelector("input.person-box:not(:disabled)");
  if (!box) return;
  const doses = doseBoxes(tbody);
  const ticked = doses.filter((d) => d.checked).length;
  box.checked = doses.length > 0 && ticked === doses.length;
  box.indeterminate = ticked > 0 && ticked < doses.length;
}

// Requests go one after the other, so that the server sees the ticks in the order made.
let queue = Promise.resolve();

function post(boxes) {
  const data = new FormData();
  data.append("csrf_token", form.querySelector("input[name=csrf_token]").value);
  for (const box of boxes) {
    data.append("shown", box.dataset.shown);
    if (box.checked) data.append("dose", box.value);
  }
  const wanted = boxes.map((b) => b.checked);
  boxes.forEach((b) => { b.disabled = true; });
  queue = queue.then(async () => {
    let ok = false;
    try {
      // (form.action would be the buttons named "action", not the URL.)
      const response = await fetch(form.getAttribute("action"), {
        method: "POST",
        body: data,
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const payload = await response.json();
      ok = Boolean(payload.ok);
      show(payload.message, ok);
      if (countEl && payload.text) {
        countEl.textContent = payload.text;
        countEl.dataset.people = payload.people;
        countEl.dataset.doses = payload.doses;
      }
      if (clearButton) clearButton.disabled = !payload.doses;
    } catch (error) {
      show(form.dataset.networkError || String(error), false);
    }
    boxes.forEach((b, i) => {
      b.disabled = false;
      if (!ok) b.checked = !wanted[i]; // refused: back to what the server has
    });
    new Set(boxes.map((b) => b.closest("tbody"))).forEach(syncPerson);
  });
}

if (form) {
  form.classList.add("live");
  const save = document.getElementById("save-page");
  if (save) save.hidden = true; // every tick is saved at once

  form.querySelectorAll("tbody.person").forEach(syncPerson);

  form.addEventListener("change", (event) => {
    const target = event.target;
    if (!(target instanceof HTMLInputElement)) return;
    if (target.classList.contains("dose-box")) {
      syncPerson(target.closest("tbody"));
      post([target]);
    } else if (target.classList.contains("person-box")) {
      const boxes = doseBoxes(target.closest("tbody"));
      const changed = boxes.filter((b) => b.checked !== target.checked);
      changed.forEach((b) => { b.checked = target.checked; });
      if (changed.length) post(changed);
    }
  });

  const selectPage = document.getElementById("select-page");
  if (selectPage) {
    selectPage.addEventListener("click", (event) => {
      event.preventDefault();
      const changed = doseBoxes(form).filter((b) => !b.checked);
      changed.forEach((b) => { b.checked = true; });
      form.querySelectorAll("tbody.person").forEach(syncPerson);
      if (changed.length) post(changed);
    });
  }
}
