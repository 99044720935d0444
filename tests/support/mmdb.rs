//! A MaxMind DB (format 2.0) writer for the geo tests: an IPv4 search tree
//! of 24-bit records and a data section, from networks and their values.

/// A value of the data section.
pub enum V {
  Str(String),
  F64(f64),
  U16(u16),
  U32(u32),
  U64(u64),
  Bool(bool),
  Map(Vec<(String, V)>),
  Arr(Vec<V>),
}

pub fn s(v: &str) -> V {
  V::Str(v.to_string())
}

pub fn map(entries: Vec<(&str, V)>) -> V {
  V::Map(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn control(out: &mut Vec<u8>, ty: u8, size: usize) {
  let (first, ext) = if ty <= 7 { (ty, None) } else { (0, Some(ty - 7)) };
  let (bits, extra): (u8, Vec<u8>) = if size < 29 {
    (size as u8, vec![])
  } else if size < 285 {
    (29, vec![(size - 29) as u8])
  } else if size < 65821 {
    (30, ((size - 285) as u16).to_be_bytes().to_vec())
  } else {
    (31, ((size - 65821) as u32).to_be_bytes()[1..].to_vec())
  };
  out.push((first << 5) | bits);
  if let Some(e) = ext {
    out.push(e);
  }
  out.extend(extra);
}

fn uint(out: &mut Vec<u8>, ty: u8, n: u64) {
  let bytes = n.to_be_bytes();
  let skip = bytes.iter().take_while(|b| **b == 0).count();
  control(out, ty, 8 - skip);
  out.extend_from_slice(&bytes[skip..]);
}

fn encode(out: &mut Vec<u8>, v: &V) {
  match v {
    V::Str(t) => {
      control(out, 2, t.len());
      out.extend_from_slice(t.as_bytes());
    }
    V::F64(f) => {
      control(out, 3, 8);
      out.extend_from_slice(&f.to_be_bytes());
    }
    V::U16(n) => uint(out, 5, *n as u64),
    V::U32(n) => uint(out, 6, *n as u64),
    V::U64(n) => uint(out, 9, *n),
    V::Bool(b) => control(out, 14, *b as usize),
    V::Map(entries) => {
      control(out, 7, entries.len());
      for (k, v) in entries {
        encode(out, &V::Str(k.clone()));
        encode(out, v);
      }
    }
    V::Arr(items) => {
      control(out, 11, items.len());
      for v in items {
        encode(out, v);
      }
    }
  }
}

#[derive(Clone, Copy)]
enum Record {
  Empty,
  Node(usize),
  Data(usize),
}

/// A database of `kind` (its `database_type`) mapping each IPv4 network
/// (address, prefix length) to its value.
pub fn write(kind: &str, networks: Vec<([u8; 4], u8, V)>) -> Vec<u8> {
  let mut data = Vec::new();
  let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
  for (addr, prefix, value) in networks {
    let offset = data.len();
    encode(&mut data, &value);
    let ip = u32::from_be_bytes(addr);
    let mut node = 0;
    for bit in 0..prefix {
      let side = ((ip >> (31 - bit)) & 1) as usize;
      if bit == prefix - 1 {
        nodes[node][side] = Record::Data(offset);
        break;
      }
      node = match nodes[node][side] {
        Record::Node(n) => n,
        _ => {
          nodes.push([Record::Empty; 2]);
          let n = nodes.len() - 1;
          nodes[node][side] = Record::Node(n);
          n
        }
      };
    }
  }
  let count = nodes.len();
  let mut out = Vec::new();
  for n in &nodes {
    for r in n {
      let v = match *r {
        Record::Empty => count,
        Record::Node(i) => i,
        Record::Data(off) => count + 16 + off,
      } as u32;
      out.extend_from_slice(&v.to_be_bytes()[1..]);
    }
  }
  out.extend_from_slice(&[0u8; 16]);
  out.extend_from_slice(&data);
  out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
  let meta = map(vec![
    ("binary_format_major_version", V::U16(2)),
    ("binary_format_minor_version", V::U16(0)),
    ("build_epoch", V::U64(1_700_000_000)),
    ("database_type", s(kind)),
    ("description", map(vec![("en", s("edge test database"))])),
    ("ip_version", V::U16(4)),
    ("languages", V::Arr(vec![s("en")])),
    ("node_count", V::U32(count as u32)),
    ("record_size", V::U16(24)),
  ]);
  encode(&mut out, &meta);
  out
}
