// ztcp console — progressive enhancement only: every page works without this file.
// Buttons with data-confirm ask before submitting (approve, publish, roll back).
"use strict";
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-confirm]");
  if (button && !window.confirm(button.getAttribute("data-confirm"))) {
    event.preventDefault();
  }
});
