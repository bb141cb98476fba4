//! How commands write for people: tables here, and times (`ago`, `until`) from `status`, which the daemon's page
//! shares.

pub use crate::status::{ago, until};

/// Rows as left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter().map(|row| line(&widths, row)).collect()
}

/// One row of a table whose column widths are known, with its newline: for a table too long to hold at once.
pub fn line(widths: &[usize], row: &[impl AsRef<str>]) -> String {
    let mut out = String::new();
    for (i, cell) in row.iter().map(AsRef::as_ref).enumerate() {
        if i > 0 {
            out.push_str("  ");
        }
        out.push_str(cell);
        if i + 1 < row.len() {
            // Padded by hand: a width past 65,535 panics in `format!`.
            let width = widths.get(i).copied().unwrap_or(0);
            out.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.chars().count())));
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        assert_eq!(table(&[vec!["a".into(), "bb".into()], vec!["ccc".into(), "d".into()]]), "a    bb\nccc  d\n");
    }

    #[test]
    fn a_cell_wider_than_65535_characters_is_padded_without_a_panic() {
        let wide = "x".repeat(70_000);
        let out = table(&[vec![wide.clone(), "a".into()], vec!["b".into(), "c".into()]]);
        assert_eq!(out.lines().nth(1).map(|l| l.len()), Some(70_000 + 3));
    }
}
