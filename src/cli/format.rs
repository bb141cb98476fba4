//! How commands write times and durations for people.

use chrono::{DateTime, Utc};

/// `3m ago`, `2h ago`, `5d ago`.
pub fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match now.signed_duration_since(then).to_std() {
        Ok(elapsed) => format!("{} ago", span(elapsed)),
        Err(_) => "just now".into(),
    }
}

/// `in 2h 15m`.
pub fn until(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match then.signed_duration_since(now).to_std() {
        Ok(left) => format!("in {}", span(left)),
        Err(_) => "now".into(),
    }
}

/// The two largest units of a duration: `45s`, `3m 20s`, `2h 15m`, `3d 4h`.
fn span(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Rows as left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| if i + 1 == row.len() { cell.clone() } else { format!("{cell:<w$}", w = widths[i]) })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").expect("valid").with_timezone(&Utc);
        let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("valid").with_timezone(&Utc);
        assert_eq!(ago(at("2026-11-24T11:59:15Z"), now), "45s ago");
        assert_eq!(ago(at("2026-11-24T09:45:00Z"), now), "2h 15m ago");
        assert_eq!(until(at("2026-11-27T16:00:00Z"), now), "in 3d 4h");
        assert_eq!(until(at("2026-11-24T11:00:00Z"), now), "now");
        assert_eq!(table(&[vec!["a".into(), "bb".into()], vec!["ccc".into(), "d".into()]]), "a    bb\nccc  d\n");
    }
}
