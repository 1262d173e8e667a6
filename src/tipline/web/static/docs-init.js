/* Starts Swagger UI on the API docs page. A file of its own rather than an inline script,
   so that the page works under a Content-Security-Policy with script-src 'self'. The
   OpenAPI URL comes from the page (data-openapi-url), which knows the app's root path. */
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // Never send the document to the public validator at validator.swagger.io.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis]
  });
})();
