// Copy buttons: <button data-copy="#element-id"> copies that element's text. Served from
// /static (no inline script, so the pages' Content-Security-Policy stays strict).
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  const text = source.textContent.trim();
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (an http page not on localhost): select the text for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "Press Ctrl+C";
    setTimeout(() => { button.textContent = label; }, 2000);
    return;
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 2000);
});
