// Create account: POST /auth/register (the authorization server's self-registration, which
// creates the Patient and the login), then sign in as that patient.
import { problemText } from "./smart.js";

const $ = (id) => document.getElementById(id);

$("register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("problem").hidden = true;
  const body = Object.fromEntries(new FormData(event.target).entries());
  $("status").textContent = "Creating your account…";
  const response = await fetch("/auth/register", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (response.status !== 201) {
    const text = await response.text();
    $("status").textContent = "";
    $("problem").textContent = `Your account could not be created: ${problemText({ message: text })}`;
    $("problem").hidden = false;
    const field = ((JSON.parse(text || "{}").issue || [])[0] || {}).expression;
    if (field && $(field[0])) $(field[0]).focus();
    return;
  }
  $("status").textContent = "Your account is ready. Signing you in…";
  sessionStorage.setItem("portal-username", body.username);
  location.href = "./?signin";
});
