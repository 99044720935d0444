// `deno serve` has no TLS flags: the same worker behind Deno.serve with a
// certificate (HTTP/1.1 and HTTP/2 by ALPN).
import worker from "./index.js";

const [port, cert, key] = Deno.args;
Deno.serve(
  { port: Number(port), hostname: "127.0.0.1", cert: Deno.readTextFileSync(cert), key: Deno.readTextFileSync(key) },
  (req) => worker.fetch(req),
);
