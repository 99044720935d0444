//! Host names as requests, routes and certificates spell them.

use std::fmt;

/// `host:port` or `[v6]:port` without the port (a bare IPv6 address in
/// brackets loses its brackets).
pub fn strip_port(host: &str) -> &str {
  if let Some(rest) = host.strip_prefix('[') {
    return rest.split_once(']').map_or(host, |(h, _)| h);
  }
  match host.rsplit_once(':') {
    Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
    _ => host,
  }
}

/// A request's authority (`Host`, HTTP/2's `:authority`), checked: a host
/// of name characters, an IPv4 address or a bracketed IPv6 address, and an
/// optional port in 1-65535. No user info, path, query or fragment
/// characters, no percent escapes, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
  /// Lowercase, without a trailing dot; an IPv6 address in brackets.
  pub host: String,
  pub port: Option<u16>,
}

/// Why an authority was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadAuthority {
  Empty,
  TooLong,
  /// A character no host name has (`/`, `@`, `?`, `#`, `%`, a space...).
  Character(char),
  /// An empty label (`a..b`, `.a`), a label over 63 bytes.
  Label,
  BadIpv6,
  Port,
}

impl fmt::Display for BadAuthority {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Self::Empty => f.write_str("the host is empty"),
      Self::TooLong => f.write_str("the host is longer than 253 bytes"),
      Self::Character(c) => write!(f, "the host has the character {c:?}"),
      Self::Label => f.write_str("the host has an empty label or one over 63 bytes"),
      Self::BadIpv6 => f.write_str("the bracketed host is not an IPv6 address"),
      Self::Port => f.write_str("the port is not a number in 1-65535"),
    }
  }
}

/// The longest authority looked at: a name of 253 bytes, its trailing
/// dot, `:` and a port.
const MAX_AUTHORITY: usize = 253 + 1 + 1 + 5;

impl Authority {
  /// Checks and normalizes `s` (`host`, `host:port`, `[v6]:port`; a
  /// trailing dot and an empty port are dropped).
  pub fn parse(s: &str) -> Result<Self, BadAuthority> {
    if s.is_empty() {
      return Err(BadAuthority::Empty);
    }
    if s.len() > MAX_AUTHORITY {
      return Err(BadAuthority::TooLong);
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
      let (v6, after) = rest.split_once(']').ok_or(BadAuthority::BadIpv6)?;
      let addr: std::net::Ipv6Addr = v6.parse().map_err(|_| BadAuthority::BadIpv6)?;
      let port = match after {
        "" => None,
        p => Some(p.strip_prefix(':').ok_or(BadAuthority::Port)?),
      };
      (format!("[{addr}]"), port)
    } else {
      let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
      };
      (check_name(host)?, port)
    };
    let port = match port {
      None | Some("") => None,
      Some(p) => Some(parse_port(p)?),
    };
    Ok(Self { host, port })
  }

  /// `host` or `host:port`, as a URL spells it.
  pub fn url_host(&self) -> String {
    let mut s = String::with_capacity(self.host.len() + 6);
    self.write_url_host(&mut s);
    s
  }

  /// [`Self::url_host`], appended to `out`.
  pub fn write_url_host(&self, out: &mut String) {
    out.push_str(&self.host);
    if let Some(p) = self.port {
      use std::fmt::Write;
      let _ = write!(out, ":{p}");
    }
  }
}

fn parse_port(p: &str) -> Result<u16, BadAuthority> {
  if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
    return Err(BadAuthority::Port);
  }
  match p.parse::<u16>() {
    Ok(n) if n > 0 => Ok(n),
    _ => Err(BadAuthority::Port),
  }
}

/// A host name (or IPv4 address) of letters, digits, `-`, `_` and dots,
/// lowercased, without its trailing dot.
fn check_name(host: &str) -> Result<String, BadAuthority> {
  if let Some(c) = host
    .chars()
    .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
  {
    return Err(BadAuthority::Character(c));
  }
  let name = host.strip_suffix('.').unwrap_or(host);
  if name.is_empty() {
    return Err(BadAuthority::Empty);
  }
  if name.len() > 253 {
    return Err(BadAuthority::TooLong);
  }
  if name.split('.').any(|l| l.is_empty() || l.len() > 63) {
    return Err(BadAuthority::Label);
  }
  Ok(name.to_ascii_lowercase())
}

/// A host name, `*.` followed by one, or (for routes, `allow_catch_all`)
/// a lone `*`.
pub fn check_host_pattern(p: &str, allow_catch_all: bool) -> Result<(), String> {
  if p == "*" {
    return if allow_catch_all {
      Ok(())
    } else {
      Err("\"*\" is not a host name".into())
    };
  }
  let name = p.strip_prefix("*.").unwrap_or(p);
  let ok = !name.is_empty()
    && name.len() <= 253
    && name.split('.').all(|l| {
      !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !l.starts_with('-')
    });
  if ok {
    Ok(())
  } else {
    Err(format!("{p:?} is not a host name (nor *.name)"))
  }
}

/// Whether a certificate name (`a.example` or `*.a.example`) covers
/// `host`, by the rule TLS clients apply: exact, or `*.` over exactly one
/// label; case ignored.
pub fn cert_name_matches(pattern: &str, host: &str) -> bool {
  match pattern.strip_prefix("*.") {
    Some(suffix) => host
      .split_once('.')
      .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
    None => pattern.eq_ignore_ascii_case(host),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn ports_are_stripped() {
    assert_eq!(strip_port("a.example:8443"), "a.example");
    assert_eq!(strip_port("a.example"), "a.example");
    assert_eq!(strip_port("[::1]:80"), "::1");
    assert_eq!(strip_port("[::1]"), "::1");
    assert_eq!(strip_port("a.example:http"), "a.example:http");
    assert_eq!(strip_port("[broken"), "[broken");
  }

  #[test]
  fn authorities() {
    let ok = |s: &str, host: &str, port: Option<u16>| {
      assert_eq!(
        Authority::parse(s),
        Ok(Authority {
          host: host.into(),
          port
        }),
        "{s:?}"
      )
    };
    ok("hello.test", "hello.test", None);
    ok("Hello.TEST:8443", "hello.test", Some(8443));
    ok("hello.test.", "hello.test", None);
    ok("hello.test.:443", "hello.test", Some(443));
    ok("hello.test:", "hello.test", None);
    ok("127.0.0.1:80", "127.0.0.1", Some(80));
    ok("[::1]:8080", "[::1]", Some(8080));
    ok("[0:0:0:0:0:0:0:1]", "[::1]", None);
    ok("my_host.example", "my_host.example", None);
    assert_eq!(Authority::parse("a.test:65535").unwrap().url_host(), "a.test:65535");
    assert_eq!(Authority::parse("A.test.").unwrap().url_host(), "a.test");
    for (bad, why) in [
      ("", BadAuthority::Empty),
      (".", BadAuthority::Empty),
      (":80", BadAuthority::Empty),
      ("evil.example/@x.hello.test", BadAuthority::Character('/')),
      ("evil.example?@x.hello.test", BadAuthority::Character('?')),
      ("evil.example#@x.hello.test", BadAuthority::Character('#')),
      ("user@hello.test", BadAuthority::Character('@')),
      ("hello%2etest", BadAuthority::Character('%')),
      ("hello.test ", BadAuthority::Character(' ')),
      ("a\\b.test", BadAuthority::Character('\\')),
      ("hello.test:99999", BadAuthority::Port),
      ("hello.test:0", BadAuthority::Port),
      ("hello.test:+80", BadAuthority::Port),
      ("hello.test:080808", BadAuthority::Port),
      ("hello.test:80:80", BadAuthority::Character(':')),
      ("a..b", BadAuthority::Label),
      (".a.b", BadAuthority::Label),
      ("[::1", BadAuthority::BadIpv6),
      ("[::g]", BadAuthority::BadIpv6),
      ("[::1]x", BadAuthority::Port),
      ("[::1]:99999", BadAuthority::Port),
      ("::1", BadAuthority::Character(':')),
    ] {
      assert_eq!(Authority::parse(bad), Err(why), "{bad:?}");
    }
    assert_eq!(Authority::parse(&"a".repeat(64)), Err(BadAuthority::Label));
    assert_eq!(Authority::parse(&["a"; 130].join(".")), Err(BadAuthority::TooLong));
  }

  #[test]
  fn host_patterns() {
    for ok in ["a.example", "*.a.example", "localhost", "x-1.y"] {
      assert!(check_host_pattern(ok, false).is_ok(), "{ok}");
    }
    assert!(check_host_pattern("*", true).is_ok());
    for bad in [
      "*",
      "",
      "a..b",
      "-a.b",
      "a_b.c",
      "*.",
      "a.*.b",
      &"a".repeat(64),
      "*.*.a",
    ] {
      assert!(check_host_pattern(bad, false).is_err(), "{bad:?}");
    }
    let long = ["a"; 130].join(".");
    assert!(check_host_pattern(&long, false).is_err());
  }

  #[test]
  fn certificate_names() {
    assert!(cert_name_matches("a.example", "A.Example"));
    assert!(cert_name_matches("*.a.example", "x.a.example"));
    assert!(!cert_name_matches("*.a.example", "a.example"));
    assert!(!cert_name_matches("*.a.example", "y.x.a.example"));
    assert!(!cert_name_matches("*.a.example", ".a.example"));
    assert!(!cert_name_matches("a.example", "b.example"));
  }
}
