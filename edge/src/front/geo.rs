//! `request.cf`'s geo fields (`country`, `city`, `asn`, ...) from
//! MaxMind-format databases the operator configures (`server.geoip`: a
//! GeoLite2/GeoIP2 City or Country file; `server.geoip_asn`: an ASN file),
//! looked up for the client's address as the forwarded headers name it.
//! Fields and their types are Cloudflare's (`latitude` is a string there).

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{geoip2, Reader};
use serde_json::{Map, Value};

/// The opened databases.
pub struct Geo {
  city: Option<Reader<Vec<u8>>>,
  asn: Option<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for Geo {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Geo")
      .field("city", &self.city.as_ref().map(|r| r.metadata().database_type.clone()))
      .field("asn", &self.asn.as_ref().map(|r| r.metadata().database_type.clone()))
      .finish()
  }
}

/// EU member states, for `isEUCountry` when a database does not say.
const EU: &[&str] = &[
  "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV",
  "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

fn open(path: &Path) -> Result<Reader<Vec<u8>>, String> {
  Reader::open_readfile(path).map_err(|e| format!("{}: not a MaxMind database: {e}", path.display()))
}

impl Geo {
  /// Opens the files given; `Ok(None)` when none is.
  pub fn open(city: Option<&Path>, asn: Option<&Path>) -> Result<Option<Self>, String> {
    if city.is_none() && asn.is_none() {
      return Ok(None);
    }
    Ok(Some(Self {
      city: city.map(open).transpose()?,
      asn: asn.map(open).transpose()?,
    }))
  }

  /// Adds what the databases know of `ip` to `cf`.
  pub fn fill(&self, ip: IpAddr, cf: &mut Map<String, Value>) {
    let mut put = |k: &str, v: Value| {
      cf.insert(k.into(), v);
    };
    if let Some(Ok(Some(c))) = self
      .city
      .as_ref()
      .map(|r| r.lookup(ip).and_then(|l| l.decode::<geoip2::City>()))
    {
      if let Some(code) = c.country.iso_code {
        put("country", code.into());
        // "1" in the EU, absent elsewhere (as on Workers).
        if c.country.is_in_european_union.unwrap_or(EU.contains(&code)) {
          put("isEUCountry", "1".into());
        }
      }
      if let Some(code) = c.continent.code {
        put("continent", code.into());
      }
      if let Some(name) = c.city.names.english {
        put("city", name.into());
      }
      if let Some(code) = c.postal.code {
        put("postalCode", code.into());
      }
      if let Some(s) = c.subdivisions.first() {
        if let Some(name) = s.names.english {
          put("region", name.into());
        }
        if let Some(code) = s.iso_code {
          put("regionCode", code.into());
        }
      }
      if let Some(lat) = c.location.latitude {
        put("latitude", format!("{lat}").into());
      }
      if let Some(lon) = c.location.longitude {
        put("longitude", format!("{lon}").into());
      }
      if let Some(tz) = c.location.time_zone {
        put("timezone", tz.into());
      }
      if let Some(m) = c.location.metro_code {
        put("metroCode", m.to_string().into());
      }
    }
    if let Some(Ok(Some(a))) = self
      .asn
      .as_ref()
      .map(|r| r.lookup(ip).and_then(|l| l.decode::<geoip2::Asn>()))
    {
      if let Some(n) = a.autonomous_system_number {
        put("asn", n.into());
      }
      if let Some(org) = a.autonomous_system_organization {
        put("asOrganization", org.into());
      }
    }
  }
}
