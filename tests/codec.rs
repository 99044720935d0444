//! CompressionStream and DecompressionStream: every format round-trips and
//! interoperates with the reference Rust codecs, bad data is a TypeError,
//! and a decompression bomb ends at its request's CPU or memory limit while
//! a bystander worker on the same thread answers throughout.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::{body, resident_memory_lock, rss_bytes, Fixture, Got, H1};

const CODEC_WORKER: &str = r#"
export default {
  async fetch(req) {
    const u = new URL(req.url);
    const f = u.searchParams.get("f");
    if (u.pathname === "/bystander") return new Response("here");
    try {
      const s = u.pathname === "/compress" ? new CompressionStream(f) : new DecompressionStream(f);
      const out = (req.body ?? new Blob([]).stream()).pipeThrough(s);
      if (u.pathname === "/count") {
        let n = 0;
        for await (const c of out) n += c.byteLength;
        return new Response(String(n));
      }
      return new Response(await new Response(out).arrayBuffer());
    } catch (e) {
      return new Response(String(e), { status: 422 });
    }
  },
};
"#;

/// The codec workers have 64 MB (per worker: the process's first engine
/// sets V8's Wasm page cap from its largest budget, and other tests need
/// the default's 128 MB).
fn engine(f: &Fixture) -> edge::Engine {
  f.file("codec.js", CODEC_WORKER);
  f.start(
    r#"
[listen]
http = "127.0.0.1:0"
[runtime]
threads = 1
[limits]
cpu_ms = 50
wall_ms = 20000
request_body_mb = 8
[[worker]]
name = "codec"
main = "codec.js"
routes = ["codec.test"]
[worker.limits]
memory_mb = 64
[[worker]]
name = "hoard"
main = "codec.js"
routes = ["hoard.test"]
[worker.limits]
cpu_ms = 20000
memory_mb = 64
[[worker]]
name = "bystander"
main = "codec.js"
routes = ["bystander.test"]
"#,
  )
}

/// POSTs `data` to codec.test (CPU limit 50 ms): the response, and its
/// body as bytes.
async fn post(addr: std::net::SocketAddr, path: &str, data: Vec<u8>) -> (Got, Vec<u8>) {
  post_to(addr, "codec.test", path, data).await
}

async fn post_to(addr: std::net::SocketAddr, host: &str, path: &str, data: Vec<u8>) -> (Got, Vec<u8>) {
  let mut c = H1::connect(addr).await;
  let req = hyper::Request::post(path)
    .header("host", host)
    .body(body(data))
    .unwrap();
  let (parts, b) = c.send(req).await.into_parts();
  let bytes = http_body_util::BodyExt::collect(b).await.unwrap().to_bytes().to_vec();
  let got = Got {
    status: parts.status.as_u16(),
    headers: parts.headers,
    body: String::from_utf8_lossy(&bytes).into_owned(),
    version: parts.version,
  };
  (got, bytes)
}

fn sample() -> Vec<u8> {
  // Compressible but not trivial: words with a counter.
  let mut v = Vec::new();
  let mut i = 0u64;
  while v.len() < 300_000 {
    write!(v, "line {i} of the sample, {} ", i.wrapping_mul(2654435761) % 1000).unwrap();
    i += 1;
  }
  v
}

fn compress(format: &str, data: &[u8]) -> Vec<u8> {
  use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
  use flate2::Compression;
  match format {
    "gzip" => {
      let mut e = GzEncoder::new(Vec::new(), Compression::fast());
      e.write_all(data).unwrap();
      e.finish().unwrap()
    }
    "deflate" => {
      let mut e = ZlibEncoder::new(Vec::new(), Compression::fast());
      e.write_all(data).unwrap();
      e.finish().unwrap()
    }
    "deflate-raw" => {
      let mut e = DeflateEncoder::new(Vec::new(), Compression::fast());
      e.write_all(data).unwrap();
      e.finish().unwrap()
    }
    "brotli" => {
      let mut out = Vec::new();
      {
        let mut w = brotli::CompressorWriter::new(&mut out, 1 << 16, 5, 22);
        w.write_all(data).unwrap();
      }
      out
    }
    _ => unreachable!(),
  }
}

fn decompress(format: &str, data: &[u8]) -> Vec<u8> {
  let mut out = Vec::new();
  match format {
    "gzip" => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
    "deflate" => flate2::read::ZlibDecoder::new(data).read_to_end(&mut out),
    "deflate-raw" => flate2::read::DeflateDecoder::new(data).read_to_end(&mut out),
    "brotli" => brotli::Decompressor::new(data, 4096).read_to_end(&mut out),
    _ => unreachable!(),
  }
  .unwrap();
  out
}

/// `n` zero bytes, compressed in `format` (a bomb: ~200:1 for fast
/// deflate, far more for brotli), made a megabyte at a time.
fn bomb(format: &str, n: usize) -> Vec<u8> {
  let chunk = vec![0u8; 1 << 20];
  let mut out = Vec::new();
  match format {
    "gzip" => {
      let mut e = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
      for _ in 0..n >> 20 {
        e.write_all(&chunk).unwrap();
      }
      e.finish().unwrap();
    }
    "brotli" => {
      let mut w = brotli::CompressorWriter::new(&mut out, 1 << 16, 1, 22);
      for _ in 0..n >> 20 {
        w.write_all(&chunk).unwrap();
      }
    }
    _ => unreachable!(),
  }
  out
}

const FORMATS: [&str; 4] = ["gzip", "deflate", "deflate-raw", "brotli"];

/// The same worker with a CPU limit of 20 s.
const ROOMY: &str = "hoard.test";

#[tokio::test]
async fn every_format_round_trips_and_matches_the_reference_codecs() {
  let f = Fixture::new();
  let e = engine(&f);
  let addr = e.http_addr().unwrap();
  let data = sample();
  // Correctness, not CPU: a 300 KB brotli round trip took 53 ms of a
  // debug build's CPU on a slow day; the hoard worker has 20 s.
  for format in FORMATS {
    // Ours decompresses the reference's output.
    let (got, out) = post_to(addr, ROOMY, &format!("/decompress?f={format}"), compress(format, &data)).await;
    assert_eq!(got.status, 200, "{format}: {}", got.body);
    assert!(
      out == data,
      "{format}: decompressed {} bytes, want {}",
      out.len(),
      data.len()
    );
    // The reference decompresses ours.
    let (got, packed) = post_to(addr, ROOMY, &format!("/compress?f={format}"), data.clone()).await;
    assert_eq!(got.status, 200, "{format}: {}", got.body);
    assert!(packed.len() < data.len() / 3, "{format}: {} bytes", packed.len());
    assert!(decompress(format, &packed) == data, "{format}: ours does not decode");
    // Empty input is a valid, empty stream.
    let (got, packed) = post_to(addr, ROOMY, &format!("/compress?f={format}"), Vec::new()).await;
    assert_eq!(got.status, 200, "{format}");
    assert!(decompress(format, &packed).is_empty(), "{format}");
  }
}

#[tokio::test]
async fn bad_compressed_data_is_a_type_error() {
  let f = Fixture::new();
  let e = engine(&f);
  let addr = e.http_addr().unwrap();
  let data = sample();
  for format in FORMATS {
    let good = compress(format, &data);
    let mut junk_after = good.clone();
    junk_after.extend_from_slice(b"junk");
    let truncated = good[..good.len() / 2].to_vec();
    let mut flipped = good.clone();
    let at = flipped.len() - 6;
    flipped[at] ^= 0x55;
    for (what, input) in [
      ("junk after", junk_after),
      ("truncated", truncated),
      ("corrupted", flipped),
    ] {
      let (got, _) = post(addr, &format!("/decompress?f={format}"), input).await;
      assert_eq!(got.status, 422, "{format}, {what}: {}", got.body);
      assert!(got.body.starts_with("TypeError"), "{format}, {what}: {}", got.body);
    }
  }
  let (got, _) = post(addr, "/compress?f=zip", b"x".to_vec()).await;
  assert_eq!(got.status, 422);
  assert!(got.body.starts_with("TypeError"), "{}", got.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bombs_stop_at_a_limit_and_the_bystander_answers() {
  let _measures = resident_memory_lock().await;
  let f = Fixture::new();
  let e = engine(&f);
  let addr = e.http_addr().unwrap();
  let bombs: Vec<(&str, Vec<u8>)> = ["gzip", "brotli"].iter().map(|f| (*f, bomb(f, 512 << 20))).collect();
  for (f, b) in &bombs {
    assert!(b.len() < 4 << 20, "{f} bomb of {} bytes", b.len());
  }
  // A bystander asks all the while, on its own connection.
  let stop = Arc::new(AtomicBool::new(false));
  let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
  let bystander = {
    let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
    tokio::spawn(async move {
      let mut c = H1::connect(addr).await;
      while !stop.load(Ordering::SeqCst) {
        let got = c.get("bystander.test", "/bystander").await;
        if (got.status, got.body.as_str()) == (200, "here") {
          answered.fetch_add(1, Ordering::SeqCst);
        } else {
          failed.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
      }
    })
  };
  let rss_before = rss_bytes();
  let mut peak = rss_before;
  for (format, b) in &bombs {
    // Kept whole, with CPU to spare: the memory limit (64 MB) ends it.
    let (got, _) = post_to(addr, "hoard.test", &format!("/decompress?f={format}"), b.clone()).await;
    assert_eq!(
      (got.status, got.limit()),
      (503, Some("memory")),
      "{format} kept: {}",
      got.body
    );
    peak = peak.max(rss_bytes());
    // Counted and dropped: the CPU limit (50 ms) ends it.
    let (got, _) = post(addr, &format!("/count?f={format}"), b.clone()).await;
    assert_eq!(
      (got.status, got.limit()),
      (503, Some("cpu")),
      "{format} counted: {}",
      got.body
    );
    peak = peak.max(rss_bytes());
  }
  stop.store(true, Ordering::SeqCst);
  bystander.await.unwrap();
  assert_eq!(failed.load(Ordering::SeqCst), 0, "bystander requests failed");
  assert!(answered.load(Ordering::SeqCst) > 0);
  // 512 MB of output each: what the process holds grew by about one
  // isolate's budget, not by the output.
  let grew = peak.saturating_sub(rss_before);
  assert!(grew < 256 << 20, "resident memory grew by {} MB", grew >> 20);
}
