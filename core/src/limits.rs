//! A worker's limits, how a config spells them, and the typed outcome of
//! hitting one ([`LimitHit`]): which limit, its value and the figure
//! reached as numbers, and when in the request it happened.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The limits of a worker's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
  pub cpu: Duration,
  pub memory_bytes: usize,
  pub wall: Duration,
  pub request_body_bytes: u64,
  pub subrequests: u32,
}

impl Default for Limits {
  fn default() -> Self {
    Self {
      cpu: Duration::from_millis(50),
      memory_bytes: 128 << 20,
      wall: Duration::from_millis(30_000),
      request_body_bytes: 100 << 20,
      subrequests: 50,
    }
  }
}

/// `[limits]` and `[worker.limits]`: every field optional; a worker's
/// fields override the server's, which override the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
  pub cpu_ms: Option<u64>,
  pub memory_mb: Option<u64>,
  pub wall_ms: Option<u64>,
  pub request_body_mb: Option<u64>,
  pub subrequests: Option<u32>,
}

impl Limits {
  /// These limits with the fields `c` sets replaced.
  pub fn with(self, c: &LimitsConfig) -> Self {
    Self {
      cpu: c.cpu_ms.map_or(self.cpu, Duration::from_millis),
      memory_bytes: c.memory_mb.map_or(self.memory_bytes, |m| (m as usize) << 20),
      wall: c.wall_ms.map_or(self.wall, Duration::from_millis),
      request_body_bytes: c.request_body_mb.map_or(self.request_body_bytes, |m| m << 20),
      subrequests: c.subrequests.unwrap_or(self.subrequests),
    }
  }
}

impl LimitsConfig {
  /// These settings with the fields `over` sets replaced.
  pub fn with_overrides(self, over: &LimitsConfig) -> Self {
    Self {
      cpu_ms: over.cpu_ms.or(self.cpu_ms),
      memory_mb: over.memory_mb.or(self.memory_mb),
      wall_ms: over.wall_ms.or(self.wall_ms),
      request_body_mb: over.request_body_mb.or(self.request_body_mb),
      subrequests: over.subrequests.or(self.subrequests),
    }
  }

  /// The first field outside its range (no operator means a day of CPU or
  /// a terabyte of memory): its name and why.
  pub fn check(&self) -> Result<(), (&'static str, String)> {
    let checks = [
      ("cpu_ms", self.cpu_ms, 1, 3_600_000),
      ("memory_mb", self.memory_mb, 16, 1 << 20),
      ("wall_ms", self.wall_ms, 1, 86_400_000),
      ("request_body_mb", self.request_body_mb, 0, 1 << 20),
      ("subrequests", self.subrequests.map(u64::from), 0, 1 << 20),
    ];
    for (name, v, min, max) in checks {
      if v.is_some_and(|v| !(min..=max).contains(&v)) {
        return Err((name, format!("must be {min}-{max}")));
      }
    }
    Ok(())
  }

  /// The first field set above `ceiling`: its name, its value and the
  /// ceiling's, in the config's units.
  pub fn over(&self, ceiling: &Limits) -> Option<(&'static str, u64, u64)> {
    let fields = [
      ("cpu_ms", self.cpu_ms, ceiling.cpu.as_millis() as u64),
      ("memory_mb", self.memory_mb, (ceiling.memory_bytes >> 20) as u64),
      ("wall_ms", self.wall_ms, ceiling.wall.as_millis() as u64),
      (
        "request_body_mb",
        self.request_body_mb,
        ceiling.request_body_bytes >> 20,
      ),
      (
        "subrequests",
        self.subrequests.map(u64::from),
        ceiling.subrequests.into(),
      ),
    ];
    fields
      .into_iter()
      .find_map(|(name, v, max)| v.filter(|v| *v > max).map(|v| (name, v, max)))
  }
}

/// Which limit a request hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
  Cpu,
  Memory,
  Wall,
  Body,
  Subrequests,
}

impl LimitKind {
  pub const ALL: [LimitKind; 5] = [Self::Cpu, Self::Memory, Self::Wall, Self::Body, Self::Subrequests];

  /// The `edge-limit` header value.
  pub fn as_str(self) -> &'static str {
    match self {
      Self::Cpu => "cpu",
      Self::Memory => "memory",
      Self::Wall => "wall",
      Self::Body => "body",
      Self::Subrequests => "subrequests",
    }
  }
}

/// When in a request's life a limit was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
  /// Evaluating the worker's modules (a cold start or a deploy check).
  Startup,
  /// Before the response head.
  Handler,
  /// After the response head: a streamed body or `waitUntil` work.
  AfterResponse,
  /// The request body's declared length, before the worker ran.
  DeclaredBody,
}

/// A limit hit: which one, the limit, what was reached, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitHit {
  pub kind: LimitKind,
  pub phase: Phase,
  /// The limit: CPU or wall time for those kinds; bytes for memory and
  /// body; a count for subrequests.
  pub limit: Amount,
  /// What the request had used when it was stopped, where it is known.
  pub reached: Option<Amount>,
}

/// A figure of a limit, typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
  Time(Duration),
  Bytes(u64),
  Count(u64),
}

impl LimitHit {
  /// The request's JS and Wasm used `used` of CPU, past `limit`.
  pub fn cpu(limit: Duration, used: Duration, phase: Phase) -> Self {
    Self {
      kind: LimitKind::Cpu,
      phase,
      limit: Amount::Time(limit),
      reached: Some(Amount::Time(used)),
    }
  }

  /// The isolate's heap, buffers and Wasm memory passed `limit` bytes
  /// (`held`: what it held when last looked at).
  pub fn memory(limit: usize, held: Option<usize>, phase: Phase) -> Self {
    Self {
      kind: LimitKind::Memory,
      phase,
      limit: Amount::Bytes(limit as u64),
      reached: held.map(|h| Amount::Bytes(h as u64)),
    }
  }

  /// The work did not finish within `limit` of wall time.
  pub fn wall(limit: Duration, phase: Phase) -> Self {
    Self {
      kind: LimitKind::Wall,
      phase,
      limit: Amount::Time(limit),
      reached: None,
    }
  }

  /// The request body passed `limit` bytes (or declared it would).
  pub fn body(limit: u64, phase: Phase) -> Self {
    Self {
      kind: LimitKind::Body,
      phase,
      limit: Amount::Bytes(limit),
      reached: None,
    }
  }
}

impl fmt::Display for Amount {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match *self {
      Self::Time(d) if d.subsec_nanos() % 1_000_000 == 0 => write!(f, "{} ms", d.as_millis()),
      Self::Time(d) => write!(f, "{:.1} ms", d.as_secs_f64() * 1e3),
      Self::Bytes(b) => write!(f, "{} MB", b >> 20),
      Self::Count(n) => write!(f, "{n}"),
    }
  }
}

impl fmt::Display for LimitHit {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{} limit of {} exceeded (", self.kind.as_str(), self.limit)?;
    match (self.kind, self.reached, self.phase) {
      (LimitKind::Cpu, Some(r), _) => write!(f, "{r} of CPU")?,
      (LimitKind::Memory, Some(r), _) => write!(f, "{r} of heap, ArrayBuffers and Wasm memory")?,
      (LimitKind::Memory, None, Phase::Startup) => f.write_str("while evaluating the worker's modules")?,
      (LimitKind::Wall, _, Phase::Startup) => f.write_str("the worker's modules did not finish evaluating")?,
      (LimitKind::Wall, _, Phase::Handler) => f.write_str("the response did not start in time")?,
      (LimitKind::Body, _, Phase::DeclaredBody) => f.write_str("the declared length is larger")?,
      (LimitKind::Body, _, _) => f.write_str("the request body is larger")?,
      (_, Some(r), _) => write!(f, "{r} reached")?,
      (_, None, _) => f.write_str(match self.phase {
        Phase::Startup => "while starting",
        Phase::Handler => "before the response",
        Phase::AfterResponse => "after the response",
        Phase::DeclaredBody => "before the worker ran",
      })?,
    }
    f.write_str(")")
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn ranges_and_ceilings() {
    let c = |memory_mb| LimitsConfig {
      memory_mb: Some(memory_mb),
      ..Default::default()
    };
    assert!(c(16).check().is_ok());
    assert_eq!(c(8).check().unwrap_err().0, "memory_mb");
    assert_eq!(c(1_000_000_000).check().unwrap_err().0, "memory_mb");
    let sub = LimitsConfig {
      subrequests: Some(u32::MAX),
      ..Default::default()
    };
    assert_eq!(sub.check().unwrap_err().0, "subrequests");
    let ceiling = Limits::default();
    assert_eq!(c(128).over(&ceiling), None);
    assert_eq!(c(129).over(&ceiling), Some(("memory_mb", 129, 128)));
    let cpu = LimitsConfig {
      cpu_ms: Some(51),
      ..Default::default()
    };
    assert_eq!(cpu.over(&ceiling), Some(("cpu_ms", 51, 50)));
    assert_eq!(LimitsConfig::default().over(&ceiling), None);
  }

  #[test]
  fn config_overrides_defaults() {
    let c = LimitsConfig {
      cpu_ms: Some(10),
      memory_mb: Some(64),
      ..Default::default()
    };
    let l = Limits::default().with(&c);
    assert_eq!(l.cpu, Duration::from_millis(10));
    assert_eq!(l.memory_bytes, 64 << 20);
    assert_eq!(l.wall, Limits::default().wall);
    assert_eq!(l.subrequests, 50);
  }

  #[test]
  fn minimums() {
    assert!(LimitsConfig::default().check().is_ok());
    let low = LimitsConfig {
      memory_mb: Some(15),
      ..Default::default()
    };
    assert_eq!(low.check().unwrap_err().0, "memory_mb");
    let zero_cpu = LimitsConfig {
      cpu_ms: Some(0),
      ..Default::default()
    };
    assert_eq!(zero_cpu.check().unwrap_err().0, "cpu_ms");
    let zero_body = LimitsConfig {
      request_body_mb: Some(0),
      ..Default::default()
    };
    assert!(zero_body.check().is_ok());
  }

  #[test]
  fn hits_carry_numbers_and_read_well() {
    let h = LimitHit::cpu(Duration::from_millis(50), Duration::from_micros(57_340), Phase::Handler);
    assert_eq!(h.limit, Amount::Time(Duration::from_millis(50)));
    assert_eq!(h.to_string(), "cpu limit of 50 ms exceeded (57.3 ms of CPU)");
    let m = LimitHit::memory(64 << 20, Some(70 << 20), Phase::Handler);
    assert_eq!(m.reached, Some(Amount::Bytes(70 << 20)));
    assert_eq!(
      m.to_string(),
      "memory limit of 64 MB exceeded (70 MB of heap, ArrayBuffers and Wasm memory)"
    );
    assert_eq!(
      LimitHit::wall(Duration::from_secs(1), Phase::Startup).to_string(),
      "wall limit of 1000 ms exceeded (the worker's modules did not finish evaluating)"
    );
    assert_eq!(
      LimitHit::body(1 << 20, Phase::DeclaredBody).to_string(),
      "body limit of 1 MB exceeded (the declared length is larger)"
    );
  }
}
