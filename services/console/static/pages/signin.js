// Sign in with email and password; on success go where the person was heading.
import { api } from "../api.js";
import { signedIn } from "../app.js";
import { clear, errorBox, field, h } from "../ui.js";

export async function render(ctx) {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password",
    required: true });
  const status = h("div", { "aria-live": "assertive" });
  const submit = h("button", { type: "submit", class: "button primary wide" }, "Sign in");
  const form = h("form", { class: "card signin", novalidate: false },
    h("h1", {}, "Sign in to CodeCourier"),
    field("Email", email), field("Password", password), status, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    clear(status);
    try {
      const session = await api.send("POST", "/api/v1/session",
        { email: email.value, password: password.value }, { quiet: true });
      signedIn(session);
      const next = ctx.query.next && ctx.query.next.startsWith("/") && !ctx.query.next.startsWith("//")
        ? ctx.query.next : "/";
      ctx.navigate(next, { replace: true });
    } catch (err) {
      clear(status, errorBox(err, "Could not sign in"));
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  clear(ctx.root, h("div", { class: "centered" },
    h("div", { class: "brand large" }, h("img", { src: "/assets/favicon.svg", alt: "" }), "CodeCourier"),
    form,
    h("p", { class: "muted small" }, "Running locally? ", h("code", {}, "codecourier up"),
      " printed the sign-in; it is also in ", h("code", {}, "local.json"), ".")));
  email.focus();
}
