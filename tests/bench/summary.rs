//! The summary table printed at the end (medians, ratios, the design's targets and whether
//! each is met), and the small formatting helpers of every measurement's output.

use std::fmt::Write as _;
use std::time::Duration;

use crate::MIB;

/// A duration in seconds.
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The median of `values` (NaN for none).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `bytes` in MiB, one decimal.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Lines of the summary table.
#[derive(Default)]
pub(crate) struct Summary {
    rows: Vec<[String; 6]>,
}

impl Summary {
    /// A row; `met` is whether the target is met (`None`: no target).
    pub(crate) fn row(
        &mut self,
        what: &str,
        alba: String,
        peer: String,
        ratio: String,
        target: &str,
        met: Option<bool>,
    ) {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        self.rows
            .push([what.into(), alba, peer, ratio, target.into(), met.into()]);
    }

    /// A timing row: medians of both, their ratio, met if the ratio is at most `target`.
    pub(crate) fn times(&mut self, what: &str, alba: &[f64], peer: &[f64], target: Option<f64>) {
        let (a, p) = (median(alba), median(peer));
        let ratio = a / p;
        let label = target.map_or("-".to_string(), |t| format!("≤ {t:.2}×"));
        self.row(
            what,
            format!("{a:.2} s"),
            format!("{p:.2} s"),
            format!("{ratio:.3}×"),
            &label,
            target.map(|t| ratio <= t),
        );
    }

    /// Prints the table, columns aligned.
    pub(crate) fn print(&self) {
        let header = ["measurement", "alba", "peer", "ratio", "target", "met"].map(String::from);
        let mut widths = [0usize; 6];
        for row in std::iter::once(&header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for (i, row) in std::iter::once(&header).chain(&self.rows).enumerate() {
            for (n, (w, cell)) in widths.iter().zip(row).enumerate() {
                let pad = w - cell.chars().count();
                if n == 0 {
                    let _ = write!(out, "{cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(out, "  {}{cell}", " ".repeat(pad));
                }
            }
            out.push('\n');
            if i == 0 {
                out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * 5));
                out.push('\n');
            }
        }
        print!("{out}");
    }
}
