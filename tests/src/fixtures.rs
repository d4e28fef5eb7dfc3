//! Generated datasets with known contents.

use std::collections::BTreeMap;

/// A deterministic pseudo-random sequence (no external crate, same on every machine).
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub const CATEGORIES: [&str; 7] = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"];

/// A CSV with mixed types and missing values:
/// `id` int, `category` string, `amount` float (7% missing), `quantity` int (5% missing),
/// `active` bool, `note` string (30% missing).
pub fn mixed_csv(rows: usize, seed: u64) -> String {
    let mut rng = Lcg::new(seed);
    let mut out = String::with_capacity(rows * 48);
    out.push_str("id,category,amount,quantity,active,note\n");
    for id in 0..rows {
        let category = CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize];
        let amount = if rng.below(100) < 7 {
            String::new()
        } else {
            format!("{}.{:02}", rng.below(10_000), rng.below(100))
        };
        let quantity = if rng.below(100) < 5 {
            String::new()
        } else {
            rng.below(500).to_string()
        };
        let active = if rng.below(2) == 0 { "true" } else { "false" };
        let note = if rng.below(100) < 30 {
            String::new()
        } else {
            format!("note {}", rng.below(1000))
        };
        out.push_str(&format!(
            "{id},{category},{amount},{quantity},{active},{note}\n"
        ));
    }
    out
}

/// The mean `amount` per `category` of a [`mixed_csv`], folded by hand: the
/// independent answer an aggregate analysis must match.
pub fn expected_means(csv: &str) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        if let Ok(amount) = fields[2].parse::<f64>() {
            let entry = sums.entry(fields[1].to_owned()).or_default();
            entry.0 += amount;
            entry.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(k, (sum, n))| (k, sum / n as f64))
        .collect()
}

/// The SHA-256 of `bytes` in hex, by coreutils' `sha256sum`.
pub fn sha256sum(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}
