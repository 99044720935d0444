//! WebCrypto where edge goes past deno_crypto: RSA keys made on aws-lc
//! (`js-api/src/ext/rsa.rs`) are deno_crypto keys in every other way, and
//! what aws-lc does not make (other sizes, exponents, bad usages) still
//! goes to deno_crypto with the errors the spec names.

use crate::support::{Fixture, H1};

const RSA: &str = r#"
const subtle = crypto.subtle;
const e = new Uint8Array([1, 0, 1]);
const enc = (t) => new TextEncoder().encode(t);
const err = async (f) => { try { await f(); return "no error"; } catch (x) { return `${x instanceof DOMException ? "DOMException" : x.constructor.name} ${x.name}`; } };
const describe = (k) => [k.type, k.extractable, k.usages.join("+"), k.algorithm.name, k.algorithm.modulusLength,
  Array.from(k.algorithm.publicExponent).join("."), k.algorithm.hash.name].join(" ");
export default { async fetch(req) {
  const bits = Number(new URL(req.url).searchParams.get("bits") ?? 2048);
  const out = [];
  const gen = (name, hash, ext, usages) => subtle.generateKey({ name, modulusLength: bits, publicExponent: e, hash }, ext, usages);
  // Names and hashes in any case; the usages split by key.
  const sig = await gen("rsassa-pkcs1-v1_5", "sha-256", false, ["verify", "sign"]);
  out.push(describe(sig.privateKey), describe(sig.publicKey));
  const s = await subtle.sign("RSASSA-PKCS1-v1_5", sig.privateKey, enc("hello"));
  out.push(`rs256 ${s.byteLength} ${await subtle.verify("RSASSA-PKCS1-v1_5", sig.publicKey, s, enc("hello"))} ${await subtle.verify("RSASSA-PKCS1-v1_5", sig.publicKey, s, enc("hellO"))}`);
  out.push("export " + await err(() => subtle.exportKey("pkcs8", sig.privateKey)));
  const pss = await gen("RSA-PSS", { name: "SHA-384" }, true, ["sign", "verify"]);
  const ps = await subtle.sign({ name: "RSA-PSS", saltLength: 48 }, pss.privateKey, enc("x"));
  out.push(`pss ${await subtle.verify({ name: "RSA-PSS", saltLength: 48 }, pss.publicKey, ps, enc("x"))}`);
  const jwk = await subtle.exportKey("jwk", pss.privateKey);
  out.push(`jwk ${jwk.kty} ${jwk.alg} ${atob(jwk.n.replace(/-/g, "+").replace(/_/g, "/")).length * 8} ${typeof jwk.d}`);
  const oaep = await gen("RSA-OAEP", "SHA-256", false, ["encrypt", "decrypt", "wrapKey", "unwrapKey"]);
  out.push(describe(oaep.privateKey), describe(oaep.publicKey));
  const c = await subtle.encrypt({ name: "RSA-OAEP" }, oaep.publicKey, enc("secret"));
  out.push("oaep " + new TextDecoder().decode(await subtle.decrypt({ name: "RSA-OAEP" }, oaep.privateKey, c)));
  // Two keys are two keys.
  const again = await gen("RSASSA-PKCS1-v1_5", "SHA-256", true, ["sign"]);
  const other = await gen("RSASSA-PKCS1-v1_5", "SHA-256", true, ["sign"]);
  const n1 = (await subtle.exportKey("jwk", again.privateKey)).n, n2 = (await subtle.exportKey("jwk", other.privateKey)).n;
  out.push(`distinct ${n1 !== n2}`);
  // Errors the spec names, from deno_crypto.
  out.push("no private usage " + await err(() => gen("RSASSA-PKCS1-v1_5", "SHA-256", true, ["verify"])));
  out.push("bad usage " + await err(() => gen("RSASSA-PKCS1-v1_5", "SHA-256", true, ["sign", "encrypt"])));
  out.push("bad hash " + await err(() => gen("RSASSA-PKCS1-v1_5", "SHA-999", true, ["sign"])));
  out.push("not subtle " + await err(() => subtle.generateKey.call({}, { name: "RSA-PSS", modulusLength: bits, publicExponent: e, hash: "SHA-256" }, true, ["sign"])));
  return new Response(out.join("\n"));
} };
"#;

async fn run(bits: u32) -> String {
  let f = Fixture::new();
  f.file("w.js", RSA);
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[limits]\ncpu_ms = 60000\nwall_ms = 120000\n[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\n",
  );
  let got = H1::connect(e.http_addr().unwrap())
    .await
    .get("w.test", &format!("/?bits={bits}"))
    .await;
  assert_eq!(got.status, 200, "{}", got.body);
  got.body
}

fn expected(bits: u32) -> String {
  format!(
    "private false sign RSASSA-PKCS1-v1_5 {bits} 1.0.1 SHA-256\n\
     public true verify RSASSA-PKCS1-v1_5 {bits} 1.0.1 SHA-256\n\
     rs256 {} true false\n\
     export DOMException InvalidAccessError\n\
     pss true\n\
     jwk RSA PS384 {bits} string\n\
     private false decrypt+unwrapKey RSA-OAEP {bits} 1.0.1 SHA-256\n\
     public true encrypt+wrapKey RSA-OAEP {bits} 1.0.1 SHA-256\n\
     oaep secret\n\
     distinct true\n\
     no private usage DOMException SyntaxError\n\
     bad usage DOMException SyntaxError\n\
     bad hash DOMException NotSupportedError\n\
     not subtle TypeError TypeError",
    bits / 8
  )
}

// 2048 bits: aws-lc's keys, imported into deno_crypto.
#[tokio::test]
async fn rsa_keys_made_on_aws_lc_are_whole_webcrypto_keys() {
  assert_eq!(run(2048).await, expected(2048));
}

// 1024 bits: not a size aws-lc makes; deno_crypto's own path, same answers.
#[tokio::test]
async fn other_rsa_sizes_go_to_deno_crypto_alike() {
  assert_eq!(run(1024).await, expected(1024));
}

// Hash names in any case, as the spec's algorithm names are: deno_crypto
// kept "sha-256" as given in importKey (HMAC and RSA keys then failed to
// sign) and refused it in PBKDF2 and HKDF params.
#[tokio::test]
async fn hash_names_are_taken_in_any_case() {
  let f = Fixture::new();
  f.file(
    "w.js",
    r#"
const s = crypto.subtle;
const e = new Uint8Array([1, 0, 1]);
const run = async (name, f) => { try { return `${name}: ${await f()}`; } catch (x) { return `${name}: ${x.name} ${x.message}`; } };
export default { async fetch() {
  const data = new Uint8Array(3);
  const g = await s.generateKey({ name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: e, hash: "SHA-256" }, true, ["sign"]);
  const pk8 = await s.exportKey("pkcs8", g.privateKey);
  const out = [
    await run("hmac raw", async () => {
      const k = await s.importKey("raw", new Uint8Array(32), { name: "hmac", hash: "sha-256" }, false, ["sign"]);
      return `${k.algorithm.hash.name} ${(await s.sign("HMAC", k, data)).byteLength}`;
    }),
    await run("rsa pkcs8", async () => {
      const k = await s.importKey("pkcs8", pk8, { name: "RSASSA-PKCS1-v1_5", hash: { name: "Sha-384" } }, false, ["sign"]);
      return `${k.algorithm.hash.name} ${(await s.sign("RSASSA-PKCS1-v1_5", k, data)).byteLength}`;
    }),
    await run("pbkdf2", async () => {
      const k = await s.importKey("raw", new Uint8Array(8), "PBKDF2", false, ["deriveBits", "deriveKey"]);
      const bits = await s.deriveBits({ name: "PBKDF2", hash: "sha-256", salt: new Uint8Array(8), iterations: 10 }, k, 256);
      const dk = await s.deriveKey({ name: "PBKDF2", hash: "sha-512", salt: new Uint8Array(8), iterations: 10 }, k,
        { name: "HMAC", hash: "sha-384", length: 256 }, false, ["sign"]);
      return `${bits.byteLength} ${dk.algorithm.hash.name}`;
    }),
    await run("hkdf", async () => {
      const k = await s.importKey("raw", new Uint8Array(8), "HKDF", false, ["deriveBits"]);
      return (await s.deriveBits({ name: "HKDF", hash: "sha-1", salt: new Uint8Array(8), info: new Uint8Array(0) }, k, 128)).byteLength;
    }),
  ];
  return new Response(out.join("\n"));
} };
"#,
  );
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[limits]\ncpu_ms = 60000\nwall_ms = 120000\n[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\n",
  );
  let got = H1::connect(e.http_addr().unwrap()).await.get("w.test", "/").await;
  assert_eq!(
    got.body,
    "hmac raw: SHA-256 32\n\
     rsa pkcs8: SHA-384 256\n\
     pbkdf2: 32 SHA-384\n\
     hkdf: 16"
  );
}
