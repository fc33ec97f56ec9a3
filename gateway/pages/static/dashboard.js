// Confirmation of the dashboard's destructive buttons (revoke a key, disable a user): a form
// with data-confirm="question" asks first and, when the operator agrees, tells the server so
// (confirm=yes). Without this script the server answers such a post with a confirm page of
// its own, so the question is asked either way. Served from /static: no inline script, the
// pages' Content-Security-Policy stays strict.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
  if (!window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  let field = form.querySelector('input[name="confirm"]');
  if (!field) {
    field = document.createElement("input");
    field.type = "hidden";
    field.name = "confirm";
    form.appendChild(field);
  }
  field.value = "yes";
});
