// Submit the company filter as soon as a company is picked in the autocomplete.
window.addEventListener("load", function () {
  var $ = window.django && window.django.jQuery;
  if (!$) { return; }
  $("#company-filter").on("change", function () { this.form.submit(); });
});
