//! RSA key generation on aws-lc (already in the tree: deno_crypto and
//! rustls use it), for `crypto.subtle.generateKey`: deno_crypto makes RSA
//! keys with the `rsa` crate, 10-20x slower (BENCHMARKS.md, WebCrypto). The
//! bootstrap's `generateKey` (js/webcrypto.js) takes this path for what
//! aws-lc makes (2048, 3072 and 4096 bits, exponent 65537) and imports the
//! pair through deno_crypto, so the keys are deno_crypto's own.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use deno_core::op2;
use deno_error::JsErrorBox;

/// A new key pair of `bits` bits: the PKCS#8 private key after its length
/// (4 bytes, big-endian), then the SPKI public key. Made on the blocking
/// pool, whose CPU the off-thread meter charges to the request.
#[op2]
#[buffer]
pub async fn op_edge_rsa_generate(bits: u32) -> Result<Vec<u8>, JsErrorBox> {
  let size = match bits {
    2048 => KeySize::Rsa2048,
    3072 => KeySize::Rsa3072,
    4096 => KeySize::Rsa4096,
    _ => return Err(JsErrorBox::type_error(format!("no fast RSA key of {bits} bits"))),
  };
  deno_core::unsync::spawn_blocking(move || generate(size))
    .await
    .map_err(|e| JsErrorBox::new("DOMExceptionOperationError", e.to_string()))?
}

fn generate(size: KeySize) -> Result<Vec<u8>, JsErrorBox> {
  let failed =
    |_: aws_lc_rs::error::Unspecified| JsErrorBox::new("DOMExceptionOperationError", "RSA key generation failed");
  let pair = KeyPair::generate(size).map_err(failed)?;
  let private: Pkcs8V1Der = pair.as_der().map_err(failed)?;
  let public: PublicKeyX509Der = pair.public_key().as_der().map_err(failed)?;
  let (private, public) = (private.as_ref(), public.as_ref());
  let mut out = Vec::with_capacity(4 + private.len() + public.len());
  // (A PKCS#8 key of at most 4096 bits is a few KiB.)
  out.extend_from_slice(&(private.len() as u32).to_be_bytes());
  out.extend_from_slice(private);
  out.extend_from_slice(public);
  Ok(out)
}
