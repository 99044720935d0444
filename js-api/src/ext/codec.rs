//! CompressionStream and DecompressionStream in bounded pieces: each op call
//! reads some of its input and writes at most one output buffer made by JS
//! (so counted in the isolate's memory budget), and a codec's own state is
//! charged to the budget too; a CPU or memory limit stops a bomb between
//! pieces. (deno_web's ops inflate a whole chunk into one Rust `Vec` in one
//! call that no limit can interrupt: an 809-byte brotli body is 1 GiB.)

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use brotli::enc::encode::{BrotliEncoderOperation, BrotliEncoderParameter, BrotliEncoderStateStruct};
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState, SliceWrapper, SliceWrapperMut};
use deno_core::{op2, GarbageCollected, OpState};
use deno_error::JsErrorBox;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Where memory Rust holds for an isolate is counted (its memory budget).
/// Charging may pass the budget: the script is then stopped, as the work
/// in progress cannot be refused half-way.
pub trait NativeMemory {
  fn charge(&self, bytes: usize);
  fn uncharge(&self, bytes: usize);
}

type Budget = Arc<dyn NativeMemory>;

/// What the state of a zlib inflater holds outside any allocator we see
/// (miniz_oxide's, boxed): charged to the budget when it is made.
const INFLATE_STATE: usize = 48 << 10;
/// The same for a deflater (its dictionary and hash chains).
const DEFLATE_STATE: usize = 352 << 10;
/// Gzip header fields (name, comment, extra) kept while they are parsed.
const MAX_GZIP_HEADER: usize = 64 << 10;
/// Brotli quality and window of `CompressionStream("brotli")` (deno's and
/// nginx's on-the-fly defaults).
const BROTLI_QUALITY: u32 = 6;
const BROTLI_LGWIN: u32 = 22;

fn invalid(what: &str) -> JsErrorBox {
  JsErrorBox::type_error(format!("The compressed data is not valid: {what}"))
}

/// A compressor or decompressor, owned by its JS stream.
pub struct Codec {
  inner: RefCell<Option<Inner>>,
  budget: Option<Budget>,
  /// Charged for the codec's state outside [`BudgetAlloc`].
  charged: Cell<usize>,
}

impl Codec {
  /// Drops the codec's state and what it was charged.
  fn close(&self) {
    self.inner.borrow_mut().take();
    if let Some(b) = &self.budget {
      b.uncharge(self.charged.replace(0));
    }
  }
}

// SAFETY: Codec holds no V8 handles; cppgc only needs a name for it.
unsafe impl GarbageCollected for Codec {
  fn trace(&self, _visitor: &mut deno_core::v8::cppgc::Visitor) {}
  fn get_name(&self) -> &'static std::ffi::CStr {
    c"Codec"
  }
}

impl Drop for Codec {
  fn drop(&mut self) {
    self.close();
  }
}

/// Brotli's allocations, charged to the isolate's budget as they are made.
#[derive(Clone)]
struct BudgetAlloc(Option<Budget>);

/// One allocation of [`BudgetAlloc`].
#[derive(Default)]
struct Budgeted<T>(Box<[T]>, Option<Budget>);

impl<T> SliceWrapper<T> for Budgeted<T> {
  fn slice(&self) -> &[T] {
    &self.0
  }
}
impl<T> SliceWrapperMut<T> for Budgeted<T> {
  fn slice_mut(&mut self) -> &mut [T] {
    &mut self.0
  }
}
impl<T> Drop for Budgeted<T> {
  fn drop(&mut self) {
    if let Some(b) = &self.1 {
      b.uncharge(std::mem::size_of_val::<[T]>(&self.0));
    }
  }
}

impl<T: Clone + Default> brotli::Allocator<T> for BudgetAlloc {
  type AllocatedMemory = Budgeted<T>;
  fn alloc_cell(&mut self, len: usize) -> Budgeted<T> {
    if let Some(b) = &self.0 {
      b.charge(len.saturating_mul(std::mem::size_of::<T>()));
    }
    Budgeted(vec![T::default(); len].into_boxed_slice(), self.0.clone())
  }
  fn free_cell(&mut self, data: Budgeted<T>) {
    drop(data);
  }
}
impl brotli::enc::BrotliAlloc for BudgetAlloc {}

/// Where a gzip stream is.
enum Gzip {
  /// Header bytes so far.
  Header(Vec<u8>),
  /// In the deflate data; CRC and length of what came out.
  Body(crc32fast::Hasher, u32),
  /// Trailer bytes so far, with the CRC and length they must match.
  Trailer(Vec<u8>, u32, u32),
  Done,
}

enum Inner {
  Inflate {
    z: Box<Decompress>,
    gzip: Option<Gzip>,
    ended: bool,
  },
  Deflate {
    z: Box<Compress>,
    gzip: Option<(crc32fast::Hasher, u32)>,
    header: usize,
    trailer: Option<[u8; 8]>,
    trailer_at: usize,
    ended: bool,
  },
  Unbrotli {
    s: Box<BrotliState<BudgetAlloc, BudgetAlloc, BudgetAlloc>>,
    ended: bool,
  },
  Brotli {
    s: Box<BrotliEncoderStateStruct<BudgetAlloc>>,
    ended: bool,
  },
}

const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The length of a complete gzip header at the start of `h`, `None` if more
/// bytes are needed.
fn gzip_header_len(h: &[u8]) -> Result<Option<usize>, JsErrorBox> {
  if h.len() < 10 {
    return Ok(None);
  }
  if h[0] != 0x1f || h[1] != 0x8b {
    return Err(invalid("not gzip (bad magic bytes)"));
  }
  if h[2] != 8 {
    return Err(invalid("gzip with a method other than deflate"));
  }
  let flags = h[3];
  let mut at = 10;
  if flags & 4 != 0 {
    let Some(x) = h.get(at..at + 2) else { return Ok(None) };
    at += 2 + u16::from_le_bytes([x[0], x[1]]) as usize;
  }
  for bit in [8, 16] {
    if flags & bit != 0 {
      match h.get(at..).and_then(|r| r.iter().position(|b| *b == 0)) {
        Some(n) => at += n + 1,
        None => return Ok(None),
      }
    }
  }
  if flags & 2 != 0 {
    at += 2;
  }
  Ok((h.len() >= at).then_some(at))
}

/// What one pump did.
#[derive(Default, Clone, Copy)]
struct Pumped {
  consumed: usize,
  produced: usize,
  /// The stream is complete (decoder: its end was read; encoder: finished).
  done: bool,
}

impl Inner {
  fn new(format: &str, decoder: bool, alloc: &BudgetAlloc) -> Result<(Self, usize), JsErrorBox> {
    Ok(match (format, decoder) {
      ("deflate" | "deflate-raw" | "gzip", true) => (
        Inner::Inflate {
          z: Box::new(Decompress::new(format == "deflate")),
          gzip: (format == "gzip").then(|| Gzip::Header(Vec::new())),
          ended: false,
        },
        INFLATE_STATE,
      ),
      ("deflate" | "deflate-raw" | "gzip", false) => (
        Inner::Deflate {
          z: Box::new(Compress::new(Compression::default(), format == "deflate")),
          gzip: (format == "gzip").then(|| (crc32fast::Hasher::new(), 0)),
          header: if format == "gzip" { 0 } else { GZIP_HEADER.len() },
          trailer: None,
          trailer_at: 0,
          ended: false,
        },
        DEFLATE_STATE,
      ),
      ("brotli", true) => (
        Inner::Unbrotli {
          s: Box::new(BrotliState::new(alloc.clone(), alloc.clone(), alloc.clone())),
          ended: false,
        },
        0,
      ),
      ("brotli", false) => {
        let mut s = BrotliEncoderStateStruct::new(alloc.clone());
        s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_QUALITY, BROTLI_QUALITY);
        s.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LGWIN, BROTLI_LGWIN);
        (
          Inner::Brotli {
            s: Box::new(s),
            ended: false,
          },
          0,
        )
      }
      _ => {
        return Err(JsErrorBox::type_error(format!(
          "Unsupported compression format: '{format}'"
        )))
      }
    })
  }

  /// Reads from `input`, writes at most `out.len()` bytes; `finish`: the
  /// input has ended (`input` is empty then).
  fn pump(&mut self, input: &[u8], out: &mut [u8], finish: bool) -> Result<Pumped, JsErrorBox> {
    match self {
      Inner::Inflate { z, gzip, ended } => inflate(z, gzip, ended, input, out, finish),
      Inner::Deflate {
        z,
        gzip,
        header,
        trailer,
        trailer_at,
        ended,
      } => {
        let mut p = Pumped::default();
        // The gzip header first, then deflate data, then the trailer.
        if *header < GZIP_HEADER.len() {
          let n = (GZIP_HEADER.len() - *header).min(out.len());
          out[..n].copy_from_slice(&GZIP_HEADER[*header..*header + n]);
          *header += n;
          p.produced = n;
        }
        if !*ended {
          let (before_in, before_out) = (z.total_in(), z.total_out());
          let flush = if finish {
            FlushCompress::Finish
          } else {
            FlushCompress::None
          };
          let st = z
            .compress(input, &mut out[p.produced..], flush)
            .map_err(|e| JsErrorBox::type_error(format!("Compression failed: {e}")))?;
          p.consumed = (z.total_in() - before_in) as usize;
          p.produced += (z.total_out() - before_out) as usize;
          if let Some((crc, len)) = gzip {
            crc.update(&input[..p.consumed]);
            *len = len.wrapping_add(p.consumed as u32);
          }
          if st == Status::StreamEnd {
            *ended = true;
            if let Some((crc, len)) = gzip.take() {
              let mut t = [0; 8];
              t[..4].copy_from_slice(&crc.finalize().to_le_bytes());
              t[4..].copy_from_slice(&len.to_le_bytes());
              *trailer = Some(t);
            }
          }
        }
        if *ended {
          if let Some(t) = trailer {
            let n = (t.len() - *trailer_at).min(out.len() - p.produced);
            out[p.produced..p.produced + n].copy_from_slice(&t[*trailer_at..*trailer_at + n]);
            *trailer_at += n;
            p.produced += n;
          }
          p.done = trailer.is_none_or(|t| *trailer_at == t.len());
        }
        Ok(p)
      }
      Inner::Unbrotli { s, ended } => {
        if *ended {
          if !input.is_empty() {
            return Err(invalid("data after the end of the brotli stream"));
          }
          return Ok(Pumped {
            done: true,
            ..Default::default()
          });
        }
        let (mut avail_in, mut in_off) = (input.len(), 0);
        let (mut avail_out, mut out_off, mut total) = (out.len(), 0, 0);
        let r = BrotliDecompressStream(
          &mut avail_in,
          &mut in_off,
          input,
          &mut avail_out,
          &mut out_off,
          out,
          &mut total,
          s,
        );
        let mut p = Pumped {
          consumed: in_off,
          produced: out_off,
          done: false,
        };
        match r {
          BrotliResult::ResultFailure => return Err(invalid("bad brotli data")),
          BrotliResult::ResultSuccess => {
            *ended = true;
            if in_off < input.len() {
              return Err(invalid("data after the end of the brotli stream"));
            }
            p.done = true;
          }
          BrotliResult::NeedsMoreInput if finish => return Err(invalid("the brotli stream ended early")),
          BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => {}
        }
        Ok(p)
      }
      Inner::Brotli { s, ended } => {
        if *ended {
          return Ok(Pumped {
            done: true,
            ..Default::default()
          });
        }
        let op = if finish {
          BrotliEncoderOperation::BROTLI_OPERATION_FINISH
        } else {
          BrotliEncoderOperation::BROTLI_OPERATION_PROCESS
        };
        let (mut avail_in, mut in_off) = (input.len(), 0);
        let (mut avail_out, mut out_off) = (out.len(), 0);
        let mut total = None;
        let ok = s.compress_stream(
          op,
          &mut avail_in,
          input,
          &mut in_off,
          &mut avail_out,
          out,
          &mut out_off,
          &mut total,
          &mut |_, _, _, _| (),
        );
        if !ok {
          return Err(JsErrorBox::type_error("Brotli compression failed"));
        }
        let done = finish && s.is_finished();
        *ended = done;
        Ok(Pumped {
          consumed: in_off,
          produced: out_off,
          done,
        })
      }
    }
  }
}

fn inflate(
  z: &mut Decompress,
  gzip: &mut Option<Gzip>,
  ended: &mut bool,
  input: &[u8],
  out: &mut [u8],
  finish: bool,
) -> Result<Pumped, JsErrorBox> {
  let mut p = Pumped::default();
  let mut rest = input;
  if let Some(Gzip::Header(h)) = gzip {
    let take = rest.len().min(MAX_GZIP_HEADER + 16 - h.len());
    let had = h.len();
    h.extend_from_slice(&rest[..take]);
    match gzip_header_len(h)? {
      Some(n) => {
        p.consumed = n - had;
        rest = &rest[p.consumed..];
        *gzip = Some(Gzip::Body(crc32fast::Hasher::new(), 0));
      }
      None if h.len() > MAX_GZIP_HEADER => return Err(invalid("gzip header too long")),
      None if finish => return Err(invalid("the gzip stream ended in its header")),
      None => {
        p.consumed = take;
        return Ok(p);
      }
    }
  }
  if !*ended {
    let (before_in, before_out) = (z.total_in(), z.total_out());
    let st = z
      .decompress(rest, out, FlushDecompress::None)
      .map_err(|e| invalid(&e.to_string()))?;
    let used = (z.total_in() - before_in) as usize;
    p.produced = (z.total_out() - before_out) as usize;
    p.consumed += used;
    rest = &rest[used..];
    if let Some(Gzip::Body(crc, len)) = gzip {
      crc.update(&out[..p.produced]);
      *len = len.wrapping_add(p.produced as u32);
    }
    if st == Status::StreamEnd {
      *ended = true;
      if let Some(Gzip::Body(crc, len)) = gzip.take() {
        *gzip = Some(Gzip::Trailer(Vec::with_capacity(8), crc.finalize(), len));
      }
    } else if finish && p.produced < out.len() {
      // No more input, and the inflater stopped short of the stream's end
      // with room left to write.
      return Err(invalid("the stream ended early"));
    }
  }
  if *ended {
    if let Some(Gzip::Trailer(t, crc, len)) = gzip {
      let n = rest.len().min(8 - t.len());
      t.extend_from_slice(&rest[..n]);
      p.consumed += n;
      rest = &rest[n..];
      if t.len() == 8 {
        if t[..4] != crc.to_le_bytes() || t[4..] != len.to_le_bytes() {
          return Err(invalid("gzip checksum or length mismatch"));
        }
        *gzip = Some(Gzip::Done);
      } else if finish {
        return Err(invalid("the gzip stream ended in its trailer"));
      }
    }
    if !rest.is_empty() {
      return Err(invalid("data after the end of the stream"));
    }
    p.done = !matches!(gzip, Some(Gzip::Trailer(..)));
  }
  Ok(p)
}

#[op2]
#[cppgc]
pub fn op_edge_codec_new(state: &mut OpState, #[string] format: &str, decoder: bool) -> Result<Codec, JsErrorBox> {
  let budget = state.try_borrow::<Budget>().cloned();
  let alloc = BudgetAlloc(budget.clone());
  let (inner, charged) = Inner::new(format, decoder, &alloc)?;
  if let Some(b) = &budget {
    b.charge(charged);
  }
  Ok(Codec {
    inner: RefCell::new(Some(inner)),
    budget,
    charged: Cell::new(charged),
  })
}

/// Pumps `input` through the codec into `out`; `counts` gets the bytes
/// consumed, the bytes produced and 1 when the stream is complete.
/// `finish`: the input has ended.
#[op2]
pub fn op_edge_codec_pump(
  #[cppgc] codec: &Codec,
  #[anybuffer] input: &[u8],
  #[buffer] out: &mut [u8],
  finish: bool,
  #[buffer] counts: &mut [u32],
) -> Result<(), JsErrorBox> {
  let r = match codec.inner.borrow_mut().as_mut() {
    Some(c) => c.pump(input, out, finish),
    None => return Err(JsErrorBox::type_error("The stream is closed")),
  };
  let p = r.inspect_err(|_| codec.close())?;
  if let [a, b, d, ..] = counts {
    *a = p.consumed as u32;
    *b = p.produced as u32;
    *d = p.done as u32;
  }
  Ok(())
}

/// Drops the codec's state (the stream ended or was cancelled).
#[op2(fast)]
pub fn op_edge_codec_close(#[cppgc] codec: &Codec) {
  codec.close();
}
