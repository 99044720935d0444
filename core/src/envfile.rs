//! Env files (`.dev.vars`, `--env-file`, a worker's `secrets_file`), as
//! wrangler and dotenv read them: `NAME=value` a line, `#` comments and
//! blank lines skipped, an optional `export `, values in double quotes
//! (with `\n`, `\t`, `\"` and `\\` escapes, over several lines) or single
//! quotes (as written), unquoted values trimmed and cut at ` #`.

/// The pairs of `text` in order, or the first bad line (1-based) and why.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
  let mut out = Vec::new();
  let mut lines = text.lines().enumerate();
  while let Some((i, line)) = lines.next() {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
      continue;
    }
    let line = line.strip_prefix("export ").unwrap_or(line);
    let Some((name, rest)) = line.split_once('=') else {
      return Err((i + 1, "expected NAME=value".into()));
    };
    let name = name.trim();
    if name.is_empty()
      || !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
    {
      return Err((i + 1, format!("{name:?} is not a name")));
    }
    let rest = rest.trim_start();
    let value = if let Some(q) = rest.strip_prefix('"') {
      let mut raw = q.to_string();
      // Until the closing quote, which may be lines on.
      while !closes(&raw) {
        let Some((_, more)) = lines.next() else {
          return Err((i + 1, "a double quote is not closed".into()));
        };
        raw.push('\n');
        raw.push_str(more);
      }
      unescape(&raw)
    } else if let Some(q) = rest.strip_prefix('\'') {
      let Some(end) = q.find('\'') else {
        return Err((i + 1, "a single quote is not closed".into()));
      };
      q[..end].to_string()
    } else {
      let v = match rest.find(" #") {
        Some(at) => &rest[..at],
        None => rest,
      };
      v.trim_end().to_string()
    };
    out.push((name.to_string(), value));
  }
  Ok(out)
}

/// Whether `raw` (after an opening double quote) has its closing one.
fn closes(raw: &str) -> bool {
  let mut escaped = false;
  for c in raw.chars() {
    match (escaped, c) {
      (true, _) => escaped = false,
      (false, '\\') => escaped = true,
      (false, '"') => return true,
      _ => {}
    }
  }
  false
}

/// The value up to the closing quote, escapes applied.
fn unescape(raw: &str) -> String {
  let mut out = String::new();
  let mut chars = raw.chars();
  while let Some(c) = chars.next() {
    match c {
      '"' => break,
      '\\' => match chars.next() {
        Some('n') => out.push('\n'),
        Some('t') => out.push('\t'),
        Some('r') => out.push('\r'),
        Some(other) => out.push(other),
        None => {}
      },
      c => out.push(c),
    }
  }
  out
}

#[cfg(test)]
mod tests {
  use super::parse;

  fn pairs(text: &str) -> Vec<(String, String)> {
    parse(text).unwrap()
  }

  #[test]
  fn lines_as_dotenv_reads_them() {
    let got = pairs(
      "# a comment\n\nAPI_KEY=abc123\nexport TOKEN = spaced out  # trailing\nEMPTY=\nURL=https://x.test/#frag\n\
       QUOTED=\"a \\\"b\\\"\\nc\"\nSINGLE='raw \\n # kept'\nMULTI=\"one\ntwo\"\nEQ=a=b\n",
    );
    let want = [
      ("API_KEY", "abc123"),
      ("TOKEN", "spaced out"),
      ("EMPTY", ""),
      ("URL", "https://x.test/#frag"),
      ("QUOTED", "a \"b\"\nc"),
      ("SINGLE", "raw \\n # kept"),
      ("MULTI", "one\ntwo"),
      ("EQ", "a=b"),
    ];
    assert_eq!(
      got,
      want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>()
    );
  }

  #[test]
  fn bad_lines_are_named() {
    assert_eq!(parse("A=1\nnot a pair\n").unwrap_err().0, 2);
    assert_eq!(parse("=x").unwrap_err().0, 1);
    assert!(parse("A=\"open\nstill open").unwrap_err().1.contains("double quote"));
    assert!(parse("A='open").unwrap_err().1.contains("single quote"));
    assert!(parse("A B=1").is_err());
  }
}
