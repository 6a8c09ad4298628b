// Log in and register: the login answer's token plus /auth/me are kept in sessionStorage.

import { ApiError, session } from "./api.js";

const REGISTER_FIELDS = ["username", "email", "password"];

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

function showRegisterErrors(form, errors) {
  for (const field of REGISTER_FIELDS) {
    const input = form.elements[field];
    const message = errors[field] || "";
    input.setAttribute("aria-invalid", message ? "true" : "false");
    document.getElementById(`register-${field}-error`).textContent = message;
  }
  document.getElementById("register-error").textContent = errors._form || "";
}

export function bindAuth(api, onLoggedIn) {
  const loginForm = document.getElementById("login-form");
  const registerForm = document.getElementById("register-form");
  const message = document.getElementById("auth-message");

  loginForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("login-error");
    error.textContent = "";
    try {
      const answer = await api.post("/auth/login", formValues(loginForm));
      session.save({ token: answer.access_token });
      const me = await api.get("/auth/me");
      session.save({ token: answer.access_token, user: me });
      loginForm.reset();
      message.textContent = "";
      onLoggedIn(me);
    } catch (e) {
      session.clear();
      error.textContent = e.status === 401 ? "Wrong username or password." : e.message;
    }
  });

  registerForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = formValues(registerForm);
    try {
      // the answer carries a token: the new user is logged in at once
      const answer = await api.post("/auth/register", values);
      session.save({ token: answer.access_token });
      const me = await api.get("/auth/me");
      session.save({ token: answer.access_token, user: me });
      showRegisterErrors(registerForm, {});
      registerForm.reset();
      message.textContent = "";
      onLoggedIn(me, `Welcome, ${me.username}: your account is ready. Trading is off until you start it.`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      showRegisterErrors(registerForm, e.status === 422 ? e.fieldErrors(REGISTER_FIELDS) : { _form: e.message });
    }
  });
}

export function showAuthMessage(text) {
  document.getElementById("auth-message").textContent = text;
}
