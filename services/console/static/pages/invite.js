// Accept an invitation: the token is in the URL's fragment (never sent to a server in a
// Referer or a log); a new person chooses a password, an existing one confirms theirs.
import { api } from "../api.js";
import { signedIn } from "../app.js";
import { clear, errorBox, field, formatTime, h, showFieldErrors } from "../ui.js";

export async function render(ctx) {
  const token = decodeURIComponent(location.hash.replace(/^#/, ""));
  if (!token) {
    clear(ctx.root, h("div", { class: "centered card" }, h("h1", {}, "Invitation link incomplete"),
      h("p", {}, "Open the whole link you were sent; it ends with a long code after a #.")));
    return;
  }
  let invitation;
  try {
    invitation = await api.get("/api/v1/invitations/lookup", { token }, { quiet: true, signal: ctx.signal });
  } catch (err) {
    clear(ctx.root, h("div", { class: "centered" }, errorBox(err.status === 404
      ? { message: "This invitation is unknown, was already used or has expired. Ask for a new one.", requestId: err.requestId }
      : err, "Invitation not usable")));
    return;
  }
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password",
    required: true, minlength: 12 });
  const status = h("div", { "aria-live": "assertive" });
  const form = h("form", { class: "card signin" },
    h("h1", {}, `Join ${invitation.projectName}`),
    h("p", {}, `Invited as `, h("strong", {}, invitation.email), ` with the role `,
      h("strong", {}, invitation.role), `. The link expires `, formatTime(invitation.expiresAt), "."),
    field("Password", password, "At least 12 characters. If you already have an account, your current password."),
    status, h("button", { type: "submit", class: "button primary wide" }, "Accept invitation"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(status);
    try {
      const session = await api.send("POST", "/api/v1/invitations/accept",
        { token, password: password.value }, { quiet: true });
      history.replaceState(null, "", "/invite");
      signedIn(session);
      ctx.navigate("/", { replace: true });
    } catch (err) {
      showFieldErrors(form, err);
      clear(status, errorBox(err, "Could not accept the invitation"));
    }
  });
  clear(ctx.root, h("div", { class: "centered" }, form));
  password.focus();
}
