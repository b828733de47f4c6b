// Starts Swagger UI on /schema/swagger (queue_api.openapi_pages): a file of the API's own, not
// an inline script, so that the page's policy allows no inline script.
(function () {
  "use strict";
  var container = document.getElementById("swagger-container");
  window.SwaggerUIBundle({
    url: container.getAttribute("data-spec-url"),
    domNode: container,
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [window.SwaggerUIBundle.presets.apis],
  });
})();
