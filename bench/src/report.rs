//! The table at the end, in markdown, to paste into README's Performance section: one row per measure, a column per
//! scheduler, each peer's figure with its ratio to pipecron's (the headline, unpinned).

use crate::subject::Who;

struct Cell {
    text: String,
    /// The figure ratios are taken of, where it makes sense (lower is better), and what it is.
    key: Option<(f64, &'static str)>,
}

struct Row {
    measure: String,
    goal: String,
    cells: [Option<Cell>; 4],
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// Sets `who`'s figure of `measure`, and prints a peer's ratio to pipecron's where both are known.
    pub fn set(&mut self, measure: &str, goal: &str, who: Who, text: String, key: Option<(f64, &'static str)>) {
        let row = match self.rows.iter().position(|r| r.measure == measure) {
            Some(i) => &mut self.rows[i],
            None => {
                let cells = [None, None, None, None];
                self.rows.push(Row { measure: measure.to_string(), goal: goal.to_string(), cells });
                self.rows.last_mut().expect("just pushed")
            }
        };
        row.cells[who.column()] = Some(Cell { text, key });
        if who.is_peer()
            && let Some(ratio) = ratio(row, who)
            && let Some((_, what)) = row.cells[who.column()].as_ref().and_then(|c| c.key)
        {
            println!("    {ratio} pipecron's {what}");
        }
    }

    pub fn markdown(&self) -> String {
        let mut text = String::from("| measure | goal |");
        for who in Who::ALL {
            text.push_str(&format!(" {} |", who.label()));
        }
        text.push_str("\n|---|---|---|---|---|---|\n");
        for row in &self.rows {
            text.push_str(&format!("| {} | {} |", row.measure, row.goal));
            for who in Who::ALL {
                let cell = row.cells[who.column()].as_ref();
                let figure = cell.map_or("–".to_string(), |c| c.text.clone());
                match ratio(row, who) {
                    Some(ratio) if who.is_peer() => text.push_str(&format!(" {figure} ({ratio}) |")),
                    _ => text.push_str(&format!(" {figure} |")),
                }
            }
            text.push('\n');
        }
        text
    }
}

/// `who`'s key figure over pipecron's, as `12×`.
fn ratio(row: &Row, who: Who) -> Option<String> {
    let peer = row.cells[who.column()].as_ref()?.key?.0;
    let ours = row.cells[Who::Pipecron.column()].as_ref()?.key?.0;
    (ours > 0.0 && peer.is_finite()).then(|| {
        let r = peer / ours;
        if r >= 10.0 { format!("{r:.0}×") } else { format!("{r:.1}×") }
    })
}
