// Logging in to a cluster that requires authentication, and who is logged in (in the header).

import { useState } from 'preact/hooks';
import { logIn, logOut } from './api.js';
import { html } from './ui.js';

export function Login() {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const form = event.target;
    setBusy(true);
    setError(null);
    try {
      await logIn(form.user.value, form.password.value);
    } catch (e) {
      setError(e.status === 401 ? 'Wrong user name or password.' : e.message);
    }
    setBusy(false);
  };
  return html`
    <form class="inline login" onSubmit=${submit} data-testid="login">
      <h2>Log in</h2>
      <p class="muted">This cluster requires authentication. What you see depends on your user's ACLs.</p>
      <label>User <input name="user" autocomplete="username" required /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required /></label>
      <button type="submit" disabled=${busy}>Log in</button>
      ${error ? html`<div class="error" role="alert">${error}</div>` : null}
    </form>`;
}

export function WhoAmI({ principal }) {
  if (!principal) return null;
  return html`<span class="who" data-testid="who">${principal}
    <button type="button" class="link" onClick=${logOut}>log out</button></span>`;
}
