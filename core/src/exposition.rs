//! Prometheus text expositions of several processes merged into one: each
//! series (a name and its labels) summed over the processes, families
//! kept together under their `# HELP` and `# TYPE` lines, in the order
//! they were first seen. Counters, gauges of things (connections,
//! isolates) and histogram buckets, sums and counts all add up; a family
//! that says the same in every process (`edge_up`, a count of configured
//! workers) takes the largest value instead.

use std::collections::HashMap;

struct Family {
  comments: Vec<String>,
  /// Series in the order first seen, and where each one is.
  series: Vec<(String, f64)>,
  index: HashMap<String, usize>,
  largest: bool,
}

/// Merges `texts`; families named in `largest` take the largest value.
pub fn merge(texts: &[&str], largest: &[&str]) -> String {
  let mut families: Vec<Family> = Vec::new();
  let mut by_name: HashMap<String, usize> = HashMap::new();
  for text in texts {
    let mut current: Option<usize> = None;
    for line in text.lines() {
      let line = line.trim_end();
      if line.is_empty() {
        continue;
      }
      if let Some(rest) = line.strip_prefix("# ") {
        let mut words = rest.splitn(3, ' ');
        let (kind, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if kind != "HELP" && kind != "TYPE" {
          continue;
        }
        let i = family(&mut families, &mut by_name, name, largest);
        let f = &mut families[i];
        if !f.comments.iter().any(|c| c == line)
          && f.comments.iter().all(|c| !c.starts_with(&format!("# {kind} {name} ")))
        {
          f.comments.push(line.to_string());
        }
        current = Some(i);
        continue;
      }
      let Some((key, value)) = line.rsplit_once(' ') else {
        continue;
      };
      let Ok(value) = value.parse::<f64>() else { continue };
      let name = key.split('{').next().unwrap_or(key);
      // A sample belongs to the family above it when its name extends the
      // family's (histograms: `_bucket`, `_sum`, `_count`).
      let i = match current {
        Some(i) if name.starts_with(family_name(&families[i])) => i,
        _ => family(&mut families, &mut by_name, name, largest),
      };
      let f = &mut families[i];
      match f.index.get(key) {
        Some(&at) => {
          let v = &mut f.series[at].1;
          *v = if f.largest { v.max(value) } else { *v + value };
        }
        None => {
          f.index.insert(key.to_string(), f.series.len());
          f.series.push((key.to_string(), value));
        }
      }
    }
  }
  let mut out = String::new();
  for f in &families {
    for c in &f.comments {
      out.push_str(c);
      out.push('\n');
    }
    for (key, value) in &f.series {
      out.push_str(key);
      out.push(' ');
      if value.fract() == 0.0 && value.abs() < 1e15 {
        out.push_str(&format!("{}", *value as i64));
      } else {
        out.push_str(&format!("{value}"));
      }
      out.push('\n');
    }
  }
  out
}

fn family_name(f: &Family) -> &str {
  f.comments
    .first()
    .and_then(|c| c.split(' ').nth(2))
    .unwrap_or_else(|| f.series.first().map_or("", |s| s.0.split('{').next().unwrap_or("")))
}

fn family(families: &mut Vec<Family>, by_name: &mut HashMap<String, usize>, name: &str, largest: &[&str]) -> usize {
  if let Some(&i) = by_name.get(name) {
    return i;
  }
  families.push(Family {
    comments: Vec::new(),
    series: Vec::new(),
    index: HashMap::new(),
    largest: largest.contains(&name),
  });
  by_name.insert(name.to_string(), families.len() - 1);
  families.len() - 1
}

#[cfg(test)]
mod tests {
  use super::*;

  const A: &str = "# HELP edge_up 1 while the server runs.\n# TYPE edge_up gauge\nedge_up 1\n\
# HELP edge_worker_requests_total Requests.\n# TYPE edge_worker_requests_total counter\n\
edge_worker_requests_total{worker=\"a\",status=\"200\"} 5\n\
# HELP edge_cpu_seconds CPU.\n# TYPE edge_cpu_seconds histogram\n\
edge_cpu_seconds_bucket{le=\"0.001\"} 2\nedge_cpu_seconds_bucket{le=\"+Inf\"} 3\n\
edge_cpu_seconds_sum 0.25\nedge_cpu_seconds_count 3\n";

  const B: &str = "# HELP edge_up 1 while the server runs.\n# TYPE edge_up gauge\nedge_up 1\n\
# HELP edge_worker_requests_total Requests.\n# TYPE edge_worker_requests_total counter\n\
edge_worker_requests_total{worker=\"a\",status=\"200\"} 7\n\
edge_worker_requests_total{worker=\"b\",status=\"503\"} 1\n\
# HELP edge_cpu_seconds CPU.\n# TYPE edge_cpu_seconds histogram\n\
edge_cpu_seconds_bucket{le=\"0.001\"} 1\nedge_cpu_seconds_bucket{le=\"+Inf\"} 1\n\
edge_cpu_seconds_sum 0.5\nedge_cpu_seconds_count 1\n";

  #[test]
  fn series_add_up_and_families_stay_together() {
    let m = merge(&[A, B], &["edge_up"]);
    assert_eq!(
      m,
      "# HELP edge_up 1 while the server runs.\n# TYPE edge_up gauge\nedge_up 1\n\
# HELP edge_worker_requests_total Requests.\n# TYPE edge_worker_requests_total counter\n\
edge_worker_requests_total{worker=\"a\",status=\"200\"} 12\n\
edge_worker_requests_total{worker=\"b\",status=\"503\"} 1\n\
# HELP edge_cpu_seconds CPU.\n# TYPE edge_cpu_seconds histogram\n\
edge_cpu_seconds_bucket{le=\"0.001\"} 3\nedge_cpu_seconds_bucket{le=\"+Inf\"} 4\n\
edge_cpu_seconds_sum 0.75\nedge_cpu_seconds_count 4\n"
    );
    assert_eq!(merge(&[A], &["edge_up"]), A);
    assert_eq!(merge(&[], &[]), "");
    // Garbage lines are skipped, not summed.
    assert_eq!(
      merge(&["x y z\nedge_a 1\nedge_a nope\n", "edge_a 2\n"], &[]),
      "edge_a 3\n"
    );
  }
}
