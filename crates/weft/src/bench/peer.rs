//! weft beside its peer in the same run: rounds interleave the two (A B A B …) so the drift of a shared machine
//! falls on both, and the ratio is taken per round before its median and range are printed. Only that ratio
//! carries from one machine to another.

use super::quantile;

/// Which way a figure is better; it decides the ratio printed, so that a ratio above 1 always means weft ahead.
#[derive(Clone, Copy)]
pub enum Better {
    /// Throughput: the ratio is weft / peer.
    Higher,
    /// Times: the ratio is peer / weft (how many times faster weft is).
    Lower,
}

/// The samples of one figure, one per round of each side.
pub struct Paired {
    pub weft: Vec<f64>,
    pub peer: Vec<f64>,
}

impl Paired {
    pub fn new() -> Self {
        Paired {
            weft: Vec::new(),
            peer: Vec::new(),
        }
    }

    pub fn push(&mut self, weft: f64, peer: f64) {
        self.weft.push(weft);
        self.peer.push(peer);
    }

    /// The per-round ratios (weft ahead above 1).
    pub fn ratios(&self, better: Better) -> Vec<f64> {
        self.weft
            .iter()
            .zip(&self.peer)
            .map(|(w, p)| match better {
                Better::Higher => w / p,
                Better::Lower => p / w,
            })
            .collect()
    }

    /// `label  weft MED (MIN–MAX) UNIT  peer MED (MIN–MAX)  ratio MED (MIN–MAX)`.
    pub fn print(&self, label: &str, unit: &str, better: Better) {
        println!(
            "{label:<50} {:>26} {:>26} {:>22}",
            spread(&self.weft, unit),
            spread(&self.peer, unit),
            spread(&self.ratios(better), "")
        );
    }
}

/// The header for `Paired::print` lines, naming the peer and the ratio's direction.
pub fn header(peer: &str, better: Better) {
    let ratio = match better {
        Better::Higher => format!("weft/{peer}"),
        Better::Lower => format!("{peer}/weft"),
    };
    println!("{:<50} {:>26} {:>26} {:>22}", "median (min–max)", "weft", peer, ratio);
}

/// A summary of repeated runs of a bench without a peer: each figure's median and range beside the figure
/// docs/benchmarks.md publishes (`anchors`: label, unit, published), which `published` dates and places.
pub fn print_runs<const N: usize>(published: &str, anchors: &[(&str, &str, &str); N], runs: &[[f64; N]]) {
    println!("{} runs, median (min–max); {published}", runs.len());
    println!("{:<40} {:>32} {:>20}", "", "this machine now", "published");
    for (i, (label, unit, anchor)) in anchors.iter().enumerate() {
        let xs: Vec<f64> = runs.iter().map(|r| r[i]).collect();
        println!("{label:<40} {:>32} {anchor:>20}", spread(&xs, unit));
    }
}

/// The 1-minute load average, which every figure is quoted beside.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| Some(l.split_whitespace().next()?.to_string()))
        .unwrap_or_else(|| "?".into())
}

/// `MEDIAN (MIN–MAX)` of unsorted samples, three significant figures.
pub fn spread(xs: &[f64], unit: &str) -> String {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    match s.as_slice() {
        [] => "-".into(),
        [one] => format!("{}{unit}", sig(*one)),
        _ => format!(
            "{}{unit} ({}–{})",
            sig(quantile(&s, 0.5)),
            sig(s[0]),
            sig(s[s.len() - 1])
        ),
    }
}

/// Three significant figures without exponent notation.
fn sig(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return format!("{x}");
    }
    let digits = 2 - x.abs().log10().floor() as i32;
    let rounded = (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    format!("{rounded:.*}", digits.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_put_weft_ahead_above_one() {
        let mut p = Paired::new();
        p.push(200.0, 100.0);
        p.push(300.0, 100.0);
        assert_eq!(p.ratios(Better::Higher), vec![2.0, 3.0]);
        assert_eq!(p.ratios(Better::Lower), vec![0.5, 1.0 / 3.0]);
    }

    #[test]
    fn spread_is_median_and_range_to_three_figures() {
        assert_eq!(spread(&[3.0, 1.0, 2.0], " ms"), "2.00 ms (1.00–3.00)");
        assert_eq!(spread(&[123_456.0], "/s"), "123000/s");
        assert_eq!(spread(&[0.934, 0.87, 1.081], ""), "0.934 (0.870–1.08)");
        assert_eq!(spread(&[], ""), "-");
    }
}
