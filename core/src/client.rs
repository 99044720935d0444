//! Who the client is when proxies stand in front of the node: lists of
//! trusted proxies (CIDRs), and the client's address taken from
//! `CF-Connecting-IP` or `X-Forwarded-For` only as far as those headers come
//! from a trusted proxy.

use std::net::IpAddr;

/// An address range, `10.0.0.0/8` or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
  net: IpAddr,
  bits: u8,
}

impl Cidr {
  pub fn parse(s: &str) -> Result<Self, String> {
    let (addr, bits) = match s.split_once('/') {
      Some((a, b)) => (a, Some(b)),
      None => (s, None),
    };
    let net: IpAddr = addr
      .trim()
      .parse()
      .map_err(|_| format!("{s:?}: not an address or CIDR range"))?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
      None => max,
      Some(b) => b
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|b| *b <= max)
        .ok_or_else(|| format!("{s:?}: a prefix length is 0 to {max}"))?,
    };
    Ok(Self { net, bits })
  }

  pub fn contains(&self, ip: IpAddr) -> bool {
    let ip = match (self.net, ip) {
      (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => return false,
      },
      (_, ip) => ip,
    };
    match (self.net, ip) {
      (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
      (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
      _ => false,
    }
  }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
  let (whole, rest) = ((bits / 8) as usize, bits % 8);
  if a[..whole] != b[..whole] {
    return false;
  }
  rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// Whether `ip` is in one of `ranges`.
pub fn is_trusted(ip: IpAddr, ranges: &[Cidr]) -> bool {
  ranges.iter().any(|c| c.contains(ip))
}

/// The client's address: the peer's, unless the peer is a trusted proxy;
/// then its `CF-Connecting-IP`, else the last address of its
/// `X-Forwarded-For` chain (read from the right) that is not a trusted
/// proxy itself.
pub fn client_ip(peer: IpAddr, connecting_ip: Option<&str>, forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
  if !is_trusted(peer, trusted) {
    return peer;
  }
  if let Some(ip) = connecting_ip.and_then(|v| v.trim().parse().ok()) {
    return ip;
  }
  let mut client = peer;
  for part in forwarded_for.unwrap_or("").rsplit(',') {
    let Ok(ip) = part.trim().parse::<IpAddr>() else { break };
    client = ip;
    if !is_trusted(ip, trusted) {
      break;
    }
  }
  client
}

#[cfg(test)]
mod tests {
  use super::*;

  fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
  }

  #[test]
  fn ranges() {
    let c = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(c.contains(ip("10.1.2.3")) && !c.contains(ip("11.0.0.1")));
    assert!(c.contains(ip("::ffff:10.0.0.1")), "v4-mapped");
    let one = Cidr::parse("192.168.1.7").unwrap();
    assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
    let v6 = Cidr::parse("2001:db8::/33").unwrap();
    assert!(v6.contains(ip("2001:db8:7fff::1")) && !v6.contains(ip("2001:db8:8000::1")));
    assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    for bad in ["", "10.0.0.0/33", "x/8", "::/129", "10.0.0.0/-1"] {
      assert!(Cidr::parse(bad).is_err(), "{bad}");
    }
  }

  #[test]
  fn the_client_is_the_peer_unless_a_trusted_proxy_says_otherwise() {
    let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
    let spoof = Some("1.2.3.4");
    assert_eq!(
      client_ip(ip("8.8.8.8"), spoof, spoof, &trusted),
      ip("8.8.8.8"),
      "untrusted peer"
    );
    assert_eq!(client_ip(ip("10.0.0.2"), spoof, None, &trusted), ip("1.2.3.4"));
    assert_eq!(
      client_ip(ip("10.0.0.2"), None, Some("6.6.6.6, 5.5.5.5, 10.0.0.9"), &trusted),
      ip("5.5.5.5"),
      "the rightmost address no trusted proxy stands for"
    );
    assert_eq!(
      client_ip(ip("10.0.0.2"), None, Some("garbage"), &trusted),
      ip("10.0.0.2")
    );
    assert_eq!(client_ip(ip("10.0.0.2"), None, None, &[]), ip("10.0.0.2"));
  }
}
