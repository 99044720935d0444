// The WebCrypto benchmark's worker (benches/webcrypto.sh): the same file
// on edge, deno serve and workerd. `GET /?op=NAME&n=N` runs N operations
// one after another and answers "ok"; the script times whole requests from
// the client (workerd's clock does not move during a request) and takes
// n=0 as the baseline. The keys are made by openssl and filled in below.
const RSA_PKCS8 = "@RSA_PKCS8@";
const RSA_SPKI = "@RSA_SPKI@";
const EC_PKCS8 = "@EC_PKCS8@";
const EC_SPKI = "@EC_SPKI@";

const subtle = crypto.subtle;
const der = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const kib = new Uint8Array(1024).fill(7);
const mib = new Uint8Array(1 << 20).fill(7);
let keys = null;

async function setup() {
  const rs = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  const es = { name: "ECDSA", namedCurve: "P-256" };
  const k = {
    rsaPriv: await subtle.importKey("pkcs8", der(RSA_PKCS8), rs, false, ["sign"]),
    rsaPub: await subtle.importKey("spki", der(RSA_SPKI), rs, false, ["verify"]),
    ecPriv: await subtle.importKey("pkcs8", der(EC_PKCS8), es, false, ["sign"]),
    ecPub: await subtle.importKey("spki", der(EC_SPKI), es, false, ["verify"]),
    hmac: await subtle.importKey("raw", new Uint8Array(32).fill(1), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]),
    aes: await subtle.importKey("raw", new Uint8Array(16).fill(2), "AES-GCM", false, ["encrypt"]),
  };
  k.rsaSig = await subtle.sign("RSASSA-PKCS1-v1_5", k.rsaPriv, kib);
  k.ecSig = await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, k.ecPriv, kib);
  return k;
}

const OPS = {
  "rsa2048-keygen": () => subtle.generateKey(
    { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
    true, ["sign", "verify"]),
  "rs256-sign": (k) => subtle.sign("RSASSA-PKCS1-v1_5", k.rsaPriv, kib),
  "rs256-verify": (k) => subtle.verify("RSASSA-PKCS1-v1_5", k.rsaPub, k.rsaSig, kib),
  "es256-sign": (k) => subtle.sign({ name: "ECDSA", hash: "SHA-256" }, k.ecPriv, kib),
  "es256-verify": (k) => subtle.verify({ name: "ECDSA", hash: "SHA-256" }, k.ecPub, k.ecSig, kib),
  "hmac-sha256-1k": (k) => subtle.sign("HMAC", k.hmac, kib),
  "aes-gcm-1k": (k) => subtle.encrypt({ name: "AES-GCM", iv: new Uint8Array(12) }, k.aes, kib),
  "sha256-1m": () => subtle.digest("SHA-256", mib),
};

export default {
  async fetch(req) {
    const url = new URL(req.url);
    const op = OPS[url.searchParams.get("op")];
    if (!op) return new Response("no such op\n", { status: 404 });
    keys ??= await setup();
    const n = Number(url.searchParams.get("n") ?? 1);
    for (let i = 0; i < n; i++) await op(keys);
    return new Response("ok");
  },
};
