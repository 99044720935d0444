//! What a worker knows of its client: `request.cf` (colo, protocol, TLS)
//! and the forwarded headers, whose client-sent values count only from a
//! trusted proxy.

use crate::support::{collect, empty, self_signed, Fixture, H1, H2};

const SHOW: &str = r#"
export default { fetch(req) {
  const h = (n) => req.headers.get(n);
  return Response.json({
    cf: req.cf,
    same: req.cf === req.cf,
    made: new Request("http://x.test/").cf === undefined,
    ip: h("cf-connecting-ip"), real: h("x-real-ip"), xff: h("x-forwarded-for"), proto: h("x-forwarded-proto"),
  });
} };
"#;

fn toml(server: &str) -> String {
  format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[server]\ncolo = \"TST\"\n{server}\n[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\n"
  )
}

async fn show(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> serde_json::Value {
  let mut req = http::Request::get("/").header("host", "w.test");
  for (k, v) in headers {
    req = req.header(*k, *v);
  }
  let got = collect(H1::connect(addr).await.send(req.body(empty()).unwrap()).await).await;
  assert_eq!(got.status, 200, "{}", got.body);
  serde_json::from_str(&got.body).unwrap()
}

#[tokio::test]
async fn request_cf_and_forwarded_headers_over_http() {
  let f = Fixture::new();
  f.file("w.js", SHOW);
  let e = f.start(&toml(""));
  let spoofed = [
    ("cf-connecting-ip", "1.2.3.4"),
    ("x-forwarded-for", "9.9.9.9"),
    ("x-real-ip", "1.2.3.4"),
    ("x-forwarded-proto", "https"),
    ("accept-encoding", "gzip, br"),
  ];
  let v = show(e.http_addr().unwrap(), &spoofed).await;
  assert_eq!(
    v["cf"],
    serde_json::json!({"colo": "TST", "httpProtocol": "HTTP/1.1", "edgeRequestKeepAliveStatus": 1, "clientAcceptEncoding": "gzip, br"})
  );
  assert_eq!((v["same"].as_bool(), v["made"].as_bool()), (Some(true), Some(true)));
  assert_eq!(v["ip"], "127.0.0.1", "a client's own CF-Connecting-IP is not believed");
  assert_eq!(v["real"], "127.0.0.1");
  assert_eq!(v["xff"], "9.9.9.9, 127.0.0.1", "the peer is added to the chain");
  assert_eq!(v["proto"], "http");
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client() {
  let f = Fixture::new();
  f.file("w.js", SHOW);
  let e = f.start(&toml("trusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]"));
  let addr = e.http_addr().unwrap();
  let v = show(addr, &[("cf-connecting-ip", "1.2.3.4"), ("x-forwarded-proto", "https")]).await;
  assert_eq!(
    (v["ip"].as_str(), v["proto"].as_str()),
    (Some("1.2.3.4"), Some("https"))
  );
  let v = show(addr, &[("x-forwarded-for", "6.6.6.6, 5.5.5.5, 10.1.1.1")]).await;
  assert_eq!(v["ip"], "5.5.5.5", "the rightmost address that is not a trusted proxy");
  assert_eq!(v["xff"], "6.6.6.6, 5.5.5.5, 10.1.1.1, 127.0.0.1");
  let bad = f.config(&toml("trusted_proxies = [\"10.0.0.0/40\"]"));
  assert!(bad
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default()
    .contains("server.trusted_proxies"));
  let bad = f.config(&toml("").replace("colo = \"TST\"", "colo = \"no spaces\""));
  assert!(bad.is_err());
}

#[tokio::test]
async fn request_cf_over_tls_and_http2() {
  let f = Fixture::new();
  f.file("w.js", SHOW);
  let (cert, key, _) = self_signed(&["w.test"]);
  f.file("w.pem", &cert).file("w.key", &key);
  let e = f.start(
    "[listen]\nhttps = \"127.0.0.1:0\"\n[[tls]]\nhosts = [\"w.test\"]\ncert = \"w.pem\"\nkey = \"w.key\"\n\
     [[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\n",
  );
  let got = H2::connect(e.https_addr().unwrap(), "w.test", &[cert])
    .await
    .get("https://w.test/")
    .await;
  let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
  assert_eq!(v["cf"]["httpProtocol"], "HTTP/2");
  assert_eq!(v["cf"]["tlsVersion"], "TLSv1.3");
  assert!(v["cf"]["tlsCipher"].as_str().unwrap().starts_with("AEAD-"), "{v}");
  assert_eq!(v["cf"].get("colo"), None, "no colo configured");
  assert_eq!(v["proto"], "https");
}

/// Geo fields from MaxMind-format databases (written here in the format's
/// own layout), for the peer or for the client a trusted proxy names, one
/// lookup per client in a row on a connection.
#[tokio::test]
async fn request_cf_geo_fields_come_from_maxmind_databases() {
  use crate::support::mmdb::{map, s, write, V};
  let f = Fixture::new();
  f.file("w.js", SHOW);
  let berlin = map(vec![
    ("city", map(vec![("names", map(vec![("en", s("Berlin"))]))])),
    ("continent", map(vec![("code", s("EU"))])),
    (
      "country",
      map(vec![("iso_code", s("DE")), ("is_in_european_union", V::Bool(true))]),
    ),
    (
      "location",
      map(vec![
        ("latitude", V::F64(52.5)),
        ("longitude", V::F64(13.4)),
        ("time_zone", s("Europe/Berlin")),
      ]),
    ),
    ("postal", map(vec![("code", s("10115"))])),
    (
      "subdivisions",
      V::Arr(vec![map(vec![
        ("iso_code", s("BE")),
        ("names", map(vec![("en", s("Land Berlin"))])),
      ])]),
    ),
  ]);
  let london = map(vec![
    ("country", map(vec![("iso_code", s("GB"))])),
    ("continent", map(vec![("code", s("EU"))])),
  ]);
  f.file(
    "city.mmdb",
    write(
      "GeoLite2-City",
      vec![([127, 0, 0, 0], 8, berlin), ([81, 2, 69, 0], 24, london)],
    ),
  );
  let asn = map(vec![
    ("autonomous_system_number", V::U32(3320)),
    ("autonomous_system_organization", s("Deutsche Telekom AG")),
  ]);
  f.file("asn.mmdb", write("GeoLite2-ASN", vec![([127, 0, 0, 0], 8, asn)]));
  let e = f.start(&toml(
    "geoip = \"city.mmdb\"\ngeoip_asn = \"asn.mmdb\"\ntrusted_proxies = [\"127.0.0.1/32\"]",
  ));
  let addr = e.http_addr().unwrap();
  let v = show(addr, &[]).await;
  assert_eq!(
    v["cf"],
    serde_json::json!({
      "colo": "TST", "httpProtocol": "HTTP/1.1", "edgeRequestKeepAliveStatus": 1,
      "country": "DE", "isEUCountry": "1", "continent": "EU", "city": "Berlin", "postalCode": "10115",
      "region": "Land Berlin", "regionCode": "BE", "latitude": "52.5", "longitude": "13.4",
      "timezone": "Europe/Berlin", "asn": 3320, "asOrganization": "Deutsche Telekom AG",
    })
  );
  // The client a trusted proxy names is looked up, not the proxy.
  let v = show(addr, &[("cf-connecting-ip", "81.2.69.142")]).await;
  assert_eq!(
    (v["cf"]["country"].as_str(), v["cf"].get("isEUCountry")),
    (Some("GB"), None)
  );
  assert!(
    v["cf"].get("asn").is_none() && v["cf"].get("city").is_none(),
    "{}",
    v["cf"]
  );
  // An address no network covers has no geo fields.
  let v = show(addr, &[("cf-connecting-ip", "192.0.2.1")]).await;
  assert!(v["cf"].get("country").is_none(), "{}", v["cf"]);
  // A file that is no database stops the start, naming the field.
  f.file("junk.mmdb", "not a database");
  let err = edge::Engine::start(f.config(&toml("geoip = \"junk.mmdb\"")).unwrap())
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
  assert!(
    err.contains("server.geoip") && err.contains("not a MaxMind database"),
    "{err}"
  );
}
