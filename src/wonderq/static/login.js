// WonderQ dashboard, the sign-in page (/dashboard/login): posts the token as JSON to the same URL, which answers
// with a session cookie (HttpOnly, SameSite=Strict), then goes back to the page that asked for it.
"use strict";

(() => {
  const form = document.getElementById("sign-in");
  const notice = document.getElementById("notice");

  /** Only a path of this server: never follow a `next` to another site. */
  function nextPage() {
    const next = new URLSearchParams(location.search).get("next") || "/";
    return next.startsWith("/") && !next.startsWith("//") ? next : "/";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    notice.hidden = true;
    const reply = await fetch("/dashboard/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: document.getElementById("token").value.trim() }),
    });
    if (reply.ok) {
      location.assign(nextPage());
      return;
    }
    const data = await reply.json().catch(() => null);
    notice.textContent = data && data.error ? data.error.message : `${reply.status} ${reply.statusText}`;
    notice.hidden = false;
  });
})();
