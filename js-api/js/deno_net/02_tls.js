// Stand-in for deno_net's TLS helpers: deno_fetch's 22_http_client.js loads
// this file for Deno.createHttpClient(), which workers do not have.
(function () {
function loadTlsKeyPair() {
  throw new TypeError("Custom TLS client certificates are not supported");
}
return { loadTlsKeyPair };
})();
