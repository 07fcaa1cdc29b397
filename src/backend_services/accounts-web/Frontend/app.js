// accounts-web: the page's script (a plain ES module, no build step). It calls
// its API under the page's own path (/accounts-web/api/), which NGINX proxies
// to the `accounts-web` container.
const api = new URL("api/", document.baseURI);

const status = document.getElementById("status");
const list = document.getElementById("items");

function show(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}

function render(items) {
  list.replaceChildren(
    ...items.map((item) => {
      const li = document.createElement("li");
      li.dataset.id = item.id;
      li.textContent = item.name;
      return li;
    }),
  );
}

async function call(path, init) {
  const res = await fetch(new URL(path, api), init);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || `${res.status}`);
  return body;
}

async function refresh() {
  const [health, { items }] = await Promise.all([call("healthz"), call("items")]);
  show("ok", `${health.service}: ${health.status}, ${items.length} item(s)`);
  render(items);
}

document.getElementById("add").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  try {
    await call("items", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: form.elements.name.value }),
    });
    form.reset();
    await refresh();
  } catch (e) {
    show("error", `could not add: ${e.message}`);
  }
});

refresh().catch((e) => show("error", `the API did not answer: ${e.message}`));
