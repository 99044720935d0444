//! The networks a worker's `fetch()` may not reach unless its config says
//! so: this node's own (loopback, private, link-local, unique-local, CGNAT,
//! unspecified, broadcast, "this network", its interfaces' addresses) and
//! the special-use ranges no public server is on (documentation,
//! benchmarking, reserved, multicast, IETF protocol assignments), also
//! when an IPv6 address carries an IPv4 one (mapped, compatible, NAT64,
//! 6to4).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether an address belongs to a network a worker must not reach.
pub fn is_private(ip: IpAddr) -> bool {
  match ip {
    IpAddr::V4(v4) => private_v4(v4),
    IpAddr::V6(v6) => private_v6(v6),
  }
}

/// [`is_private`], or one of `own` (the node's interface addresses).
pub fn is_refused(ip: IpAddr, own: &[IpAddr]) -> bool {
  let ip = match ip {
    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
    v4 => v4,
  };
  is_private(ip) || own.contains(&ip)
}

fn private_v4(v4: Ipv4Addr) -> bool {
  let o = v4.octets();
  let in_net = |net: [u8; 4], bits: u32| {
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(v4) & mask == u32::from_be_bytes(net) & mask
  };
  v4.is_private()
    || v4.is_loopback()
    || v4.is_link_local()
    || v4.is_unspecified()
    || o[0] == 0
    || in_net([100, 64, 0, 0], 10)
    || in_net([192, 0, 0, 0], 24)
    || in_net([192, 0, 2, 0], 24)
    || in_net([192, 88, 99, 0], 24)
    || in_net([198, 18, 0, 0], 15)
    || in_net([198, 51, 100, 0], 24)
    || in_net([203, 0, 113, 0], 24)
    // Multicast, and the reserved 240/4 (with the broadcast address).
    || o[0] >= 224
}

fn private_v6(v6: Ipv6Addr) -> bool {
  let s = v6.segments();
  if let Some(v4) = v6.to_ipv4_mapped() {
    return private_v4(v4);
  }
  let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
  // IPv4-compatible (::a.b.c.d, deprecated), NAT64 (64:ff9b::/96) and
  // 6to4 (2002:a.b.c.d::/48) reach the IPv4 address they carry.
  if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
    return v6.is_loopback() || v6.is_unspecified() || private_v4(embedded(s[6], s[7]));
  }
  if s[0] == 0x2002 {
    return private_v4(embedded(s[1], s[2]));
  }
  v6.is_loopback()
    || v6.is_unspecified()
    || (s[0] & 0xfe00) == 0xfc00 // unique local
    || (s[0] & 0xffc0) == 0xfe80 // link local
    || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
    || (s[0] & 0xff00) == 0xff00 // multicast
    || (s[0] == 0x64 && s[1] == 0xff9b) // local-use NAT64 (64:ff9b:1::/48)
    || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only
    || (s[0] == 0x2001 && s[1] < 0x200) // IETF protocol assignments, Teredo
    || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
    || (s[0] == 0x3fff && s[1] < 0x1000) // documentation (3fff::/20)
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
      // Special-use.
      "192.0.2.2",
      "198.51.100.7",
      "203.0.113.9",
      "198.18.0.1",
      "198.19.255.255",
      "192.0.0.8",
      "192.88.99.1",
      "240.0.0.1",
      "224.0.0.1",
      "239.255.255.250",
      "fec0::1",
      "ff02::1",
      "2001:db8::1",
      "3fff::1",
      "2001::1",
      "100::1",
      "64:ff9b:1::1",
      // IPv4 inside IPv6.
      "64:ff9b::10.0.0.1",
      "64:ff9b::127.0.0.1",
      "::127.0.0.1",
      "::10.1.1.1",
      "2002:0a00:0001::1",
      "2002:7f00:0001::1",
    ] {
      assert!(private(p), "{p} is private");
    }
  }

  #[test]
  fn the_nodes_own_addresses() {
    let own: Vec<IpAddr> = vec!["8.8.4.4".parse().unwrap(), "2606:4700::6810:1".parse().unwrap()];
    assert!(is_refused("8.8.4.4".parse().unwrap(), &own));
    assert!(is_refused("::ffff:8.8.4.4".parse().unwrap(), &own));
    assert!(is_refused("2606:4700::6810:1".parse().unwrap(), &own));
    assert!(is_refused("10.0.0.1".parse().unwrap(), &own));
    assert!(!is_refused("8.8.8.8".parse().unwrap(), &own));
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
      "64:ff9b::1.1.1.1",
      "2002:0101:0101::1",
      "192.0.3.1",
      "198.20.0.1",
      "223.255.255.255",
      "2001:4860::8888",
    ] {
      assert!(!private(p), "{p} is public");
    }
  }
}
