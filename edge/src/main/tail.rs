//! `edge tail NAME`: a worker's live requests and `console.*` lines from a
//! node's admin API (`GET /workers/{name}/tail`), as `wrangler tail` shows
//! them: a line each, or the node's JSON lines with `--format json`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// Follows the tail until the node or the user ends it.
pub fn run(name: &str, admin: &str, token_file: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
  let token = super::deploy::token(token_file.as_deref())?;
  let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
  rt.block_on(async {
    let (mut send, host) = super::deploy::connect(admin).await?;
    let req = http::Request::get(format!("/workers/{name}/tail"))
      .header(http::header::HOST, host)
      .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
      .body(Full::new(Bytes::new()))?;
    let res = send.send_request(req).await?;
    if !res.status().is_success() {
      let status = res.status();
      let body = res.into_body().collect().await?.to_bytes();
      bail!("{status}: {}", String::from_utf8_lossy(&body).trim());
    }
    eprintln!("tailing {name} (Ctrl-C to stop)");
    let mut body = res.into_body();
    let mut pending = Vec::new();
    let stdout = std::io::stdout();
    while let Some(frame) = body.frame().await {
      let Ok(data) = frame?.into_data() else { continue };
      pending.extend_from_slice(&data);
      while let Some(at) = pending.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = pending.drain(..=at).collect();
        let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        let mut out = stdout.lock();
        if json {
          writeln!(out, "{line}")?;
        } else {
          writeln!(out, "{}", pretty(&line))?;
        }
        out.flush()?;
      }
    }
    Ok(())
  })
}

/// One tail line for people: `GET https://a.example/x 200 1.2 ms cpu` or
/// `  log: the message`.
fn pretty(line: &str) -> String {
  let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
    return line.to_string();
  };
  let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
  let n = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
  match s("type").as_str() {
    "request" => {
      let limit = match s("limit").as_str() {
        "" => String::new(),
        l => format!(" (limit: {l})"),
      };
      let what = match (s("method").as_str(), s("url").as_str()) {
        ("", _) => "request".to_string(),
        (m, u) => format!("{m} {u}"),
      };
      format!(
        "{what} {} {:.1} ms cpu {:.1} ms wall {}{limit} [{}]",
        v.get("status").and_then(|x| x.as_u64()).unwrap_or(0),
        n("cpu_ms"),
        n("wall_ms"),
        s("start"),
        s("request_id")
      )
    }
    "console" => format!("  {}: {} [{}]", s("level"), s("message"), s("request_id")),
    "lagged" => format!("  ({} lines missed: this tail fell behind)", n("missed")),
    _ => line.to_string(),
  }
}
