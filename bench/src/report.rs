//! The benchmark's figures, each beside its baseline and goal, printed as the table
//! the README carries.

/// What a figure must reach.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// The figure itself at least this.
    AtLeast(f64),
    /// The figure itself at most this.
    AtMost(f64),
    /// The ratio figure / baseline at least this.
    RatioAtLeast(f64),
    /// The ratio figure / baseline at most this.
    RatioAtMost(f64),
}

/// One line of the table.
#[derive(Debug)]
pub struct Figure {
    pub what: String,
    pub value: f64,
    pub unit: &'static str,
    pub baseline: Option<(String, f64)>,
    pub goal: Option<Goal>,
}

impl Figure {
    pub fn new(what: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            what: what.into(),
            value,
            unit,
            baseline: None,
            goal: None,
        }
    }

    pub fn against(mut self, baseline: impl Into<String>, value: f64) -> Self {
        self.baseline = Some((baseline.into(), value));
        self
    }

    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self
    }

    fn ratio(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .filter(|(_, b)| *b != 0.0)
            .map(|(_, b)| self.value / b)
    }

    /// `Some(true)` if the goal is met, `None` without a goal.
    pub fn met(&self) -> Option<bool> {
        let goal = self.goal?;
        Some(match goal {
            Goal::AtLeast(g) => self.value >= g,
            Goal::AtMost(g) => self.value <= g,
            Goal::RatioAtLeast(g) => self.ratio().is_some_and(|r| r >= g),
            Goal::RatioAtMost(g) => self.ratio().is_some_and(|r| r <= g),
        })
    }
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn goal_text(goal: Option<Goal>, unit: &str) -> String {
    match goal {
        None => String::new(),
        Some(Goal::AtLeast(g)) => format!("≥ {} {unit}", number(g)),
        Some(Goal::AtMost(g)) => format!("≤ {} {unit}", number(g)),
        Some(Goal::RatioAtLeast(g)) => format!("ratio ≥ {g}"),
        Some(Goal::RatioAtMost(g)) => format!("ratio ≤ {g}"),
    }
}

/// Every figure of a run.
#[derive(Debug, Default)]
pub struct Report {
    figures: Vec<Figure>,
}

impl Report {
    /// Records a figure and prints it at once (a long run shows its progress).
    pub fn add(&mut self, f: Figure) {
        let verdict = match f.met() {
            Some(true) => " [met]",
            Some(false) => " [MISSED]",
            None => "",
        };
        let baseline = f.baseline.as_ref().map_or(String::new(), |(what, v)| {
            format!(
                "; {what}: {} {}; ratio {}",
                number(*v),
                f.unit,
                number(f.ratio().unwrap_or(f64::NAN))
            )
        });
        println!(
            "  {}: {} {}{baseline}{verdict}",
            f.what,
            number(f.value),
            f.unit
        );
        self.figures.push(f);
    }

    /// The figures whose goal was missed.
    pub fn missed(&self) -> Vec<&Figure> {
        self.figures
            .iter()
            .filter(|f| f.met() == Some(false))
            .collect()
    }

    /// The whole run as a Markdown table (what the README shows).
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| what | figure | baseline in the same run | ratio | goal | met |\n|---|---|---|---|---|---|\n",
        );
        for f in &self.figures {
            let (baseline, ratio) = match (&f.baseline, f.ratio()) {
                (Some((what, v)), Some(r)) => {
                    (format!("{what}: {} {}", number(*v), f.unit), number(r))
                }
                _ => (String::new(), String::new()),
            };
            let met = match f.met() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            out.push_str(&format!(
                "| {} | {} {} | {baseline} | {ratio} | {} | {met} |\n",
                f.what,
                number(f.value),
                f.unit,
                goal_text(f.goal, f.unit)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_compare_the_figure_or_its_ratio() {
        let f = Figure::new("x", 10.0, "ms").against("b", 40.0);
        assert_eq!(f.goal(Goal::RatioAtMost(0.3)).met(), Some(true));
        let f = Figure::new("x", 10.0, "ms").against("b", 20.0);
        assert_eq!(f.goal(Goal::RatioAtMost(0.3)).met(), Some(false));
        assert_eq!(
            Figure::new("x", 5.0, "ms").goal(Goal::AtMost(5.0)).met(),
            Some(true)
        );
        assert_eq!(
            Figure::new("x", 5.1, "ms").goal(Goal::AtMost(5.0)).met(),
            Some(false)
        );
        assert_eq!(Figure::new("x", 1.0, "/s").met(), None);
    }
}
