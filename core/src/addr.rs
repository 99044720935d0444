//! The networks a worker's `fetch()` may not reach unless its config says
//! so: this node's own (loopback, private, link-local, unique-local, CGNAT,
//! unspecified, broadcast, "this network").

use std::net::IpAddr;

/// Whether an address belongs to a network a worker must not reach.
pub fn is_private(ip: IpAddr) -> bool {
  match ip {
    IpAddr::V4(v4) => {
      let o = v4.octets();
      v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
    }
    IpAddr::V6(v6) => {
      if let Some(v4) = v6.to_ipv4_mapped() {
        return is_private(IpAddr::V4(v4));
      }
      let s = v6.segments();
      v6.is_loopback() || v6.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn private(s: &str) -> bool {
    is_private(s.parse().unwrap())
  }

  #[test]
  fn private_ranges() {
    for p in [
      "127.0.0.1",
      "127.255.0.9",
      "10.1.2.3",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "169.254.169.254",
      "0.0.0.0",
      "0.1.2.3",
      "255.255.255.255",
      "100.64.0.1",
      "100.127.255.255",
      "::1",
      "::",
      "fc00::1",
      "fd12::1",
      "fe80::1",
      "::ffff:127.0.0.1",
      "::ffff:10.0.0.1",
    ] {
      assert!(private(p), "{p} is private");
    }
  }

  #[test]
  fn public_addresses() {
    for p in [
      "1.1.1.1",
      "8.8.8.8",
      "172.32.0.1",
      "100.128.0.1",
      "100.63.255.255",
      "192.169.0.1",
      "2606:4700::1111",
      "::ffff:1.1.1.1",
      "fec0::1",
    ] {
      assert!(!private(p), "{p} is public");
    }
  }
}
