//! Host names as requests, routes and certificates spell them.

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
