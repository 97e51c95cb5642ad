// Postroom dashboard behaviour that plain HTML cannot express. Loaded from /static so the CSP allows no inline script.
(function () {
  "use strict";

  function copy(text, button) {
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target], [data-copy-text]");
    if (button) {
      var target = button.getAttribute("data-copy-target");
      var field = target ? document.querySelector(target) : null;
      if (field) { field.select(); }
      copy(field ? field.value : button.getAttribute("data-copy-text"), button);
      return;
    }
    var confirming = event.target.closest("[data-confirm]");
    if (confirming && !window.confirm(confirming.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });
})();
