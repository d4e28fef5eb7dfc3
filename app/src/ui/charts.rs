//! Charts as SVG components: rendered on the server (readable without JavaScript),
//! hydrated in the browser, scaled by the viewBox to any screen width.

use leptos::prelude::*;

/// A number with at most 4 significant digits, compact for axis labels.
pub fn short_number(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.3}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.3}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Horizontal bars, one per label, largest value spanning the width.
#[component]
pub fn BarChart(
    labels: Vec<String>,
    values: Vec<f64>,
    #[prop(into)] title: String,
) -> impl IntoView {
    const ROW: f64 = 22.0;
    const LABEL_W: f64 = 160.0;
    const WIDTH: f64 = 640.0;
    let n = labels.len().min(values.len());
    let max = values
        .iter()
        .take(n)
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0_f64, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 {
        (WIDTH - LABEL_W - 70.0) / max
    } else {
        0.0
    };
    let height = ROW * n as f64 + 8.0;
    let bars = labels
        .into_iter()
        .zip(values)
        .enumerate()
        .map(|(i, (label, value))| {
            let y = 4.0 + ROW * i as f64;
            let w = if value.is_finite() { value.abs() * scale } else { 0.0 };
            let shown: String = label.chars().take(22).collect();
            view! {
                <g class="bar" data-label={label.clone()} data-value={value.to_string()}>
                    <title>{format!("{label}: {value}")}</title>
                    <text x={LABEL_W - 6.0} y={y + ROW * 0.68} text-anchor="end" class="axis">{shown}</text>
                    <rect x=LABEL_W y={y + 3.0} width={w.max(1.0)} height={ROW - 6.0}
                        class={if value < 0.0 { "neg" } else { "pos" }}/>
                    <text x={LABEL_W + w + 4.0} y={y + ROW * 0.68} class="value">{short_number(value)}</text>
                </g>
            }
        })
        .collect_view();
    view! {
        <figure class="chart" data-testid="bar-chart">
            <figcaption>{title}</figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {height}") role="img" preserveAspectRatio="xMinYMin meet">
                {bars}
            </svg>
        </figure>
    }
}

/// One line of a [`LineChart`]: (time in ms, value) points.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(i64, f64)>,
}

/// An event on a [`LineChart`]'s time axis (a deploy, say): a vertical line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    /// Time in ms.
    pub at: i64,
    /// What it is (`deploy`, `promotion`, `rollback`): its class and colour.
    pub kind: String,
    /// What the marker's tooltip says.
    pub label: String,
}

/// Lines over time sharing one y axis from zero; `from`/`to` bound the x axis (ms).
/// `markers` draw vertical lines at their times, so charts of one range line up.
#[component]
pub fn LineChart(
    #[prop(into)] title: String,
    #[prop(into)] unit: String,
    series: Vec<Series>,
    from: i64,
    to: i64,
    #[prop(optional)] markers: Vec<Marker>,
) -> impl IntoView {
    const W: f64 = 640.0;
    const H: f64 = 200.0;
    const LEFT: f64 = 48.0;
    const BOTTOM: f64 = 22.0;
    let span = (to - from).max(1) as f64;
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let x = move |t: i64| LEFT + (t - from) as f64 / span * (W - LEFT - 8.0);
    let y = move |v: f64| (H - BOTTOM) - v / top * (H - BOTTOM - 8.0);
    let total_points: usize = series.iter().map(|s| s.points.len()).sum();
    let marks = markers
        .iter()
        .filter(|m| (from..=to).contains(&m.at))
        .map(|m| {
            view! {
                <g class=format!("marker {}", m.kind) data-testid="marker" data-kind=m.kind.clone() data-at=m.at>
                    <title>{m.label.clone()}</title>
                    <line x1={x(m.at)} x2={x(m.at)} y1="4" y2={H - BOTTOM}/>
                    <text x={x(m.at) + 3.0} y="12" class="axis">{m.kind.chars().next().map(|c| c.to_ascii_uppercase().to_string())}</text>
                </g>
            }
        })
        .collect_view();
    let lines = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let d = s
                .points
                .iter()
                .enumerate()
                .map(|(k, (t, v))| {
                    format!("{}{:.1},{:.1}", if k == 0 { "M" } else { "L" }, x(*t), y(*v))
                })
                .collect::<Vec<_>>()
                .join(" ");
            let dots = s
                .points
                .iter()
                .map(|(t, v)| {
                    view! { <circle cx={x(*t)} cy={y(*v)} r="2" class=format!("s{i}") data-testid="point"/> }
                })
                .collect_view();
            view! { <path d=d class=format!("line s{i}")/>{dots} }
        })
        .collect_view();
    let legend = series
        .iter()
        .enumerate()
        .map(|(i, s)| view! { <span class=format!("key s{i}")>{s.name.clone()}</span> })
        .collect_view();
    let grid = [0.0, 0.5, 1.0]
        .into_iter()
        .map(|f| {
            let v = top / 1.1 * f;
            view! {
                <line x1=LEFT x2={W - 8.0} y1={y(v)} y2={y(v)} class="grid"/>
                <text x={LEFT - 4.0} y={y(v) + 4.0} text-anchor="end" class="axis">{short_number(v)}</text>
            }
        })
        .collect_view();
    view! {
        <figure class="chart line-chart" data-testid="line-chart" data-points=total_points>
            <figcaption>{title}" "<span class="unit">{unit}</span></figcaption>
            <div class="legend">{legend}</div>
            <svg viewBox=format!("0 0 {W} {H}") role="img" preserveAspectRatio="xMinYMin meet">
                {grid}
                <text x=LEFT y={H - 4.0} class="axis">{clock(from)}</text>
                <text x={W - 8.0} y={H - 4.0} text-anchor="end" class="axis">{clock(to)}</text>
                {marks}
                {lines}
                {(total_points == 0).then(|| view! {
                    <text x={W / 2.0} y={H / 2.0} text-anchor="middle" class="axis">"no data in this range"</text>
                })}
            </svg>
        </figure>
    }
}

/// HH:MM (UTC) of a time in ms.
fn clock(ms: i64) -> String {
    let minutes = ms.div_euclid(60_000);
    format!(
        "{:02}:{:02} UTC",
        minutes.div_euclid(60).rem_euclid(24),
        minutes.rem_euclid(60)
    )
}

/// A square matrix of values in [-1, 1] (correlations) as coloured cells.
#[component]
pub fn Heatmap(
    labels: Vec<String>,
    matrix: Vec<Vec<f64>>,
    #[prop(into)] title: String,
) -> impl IntoView {
    const CELL: f64 = 44.0;
    const LABEL: f64 = 120.0;
    let n = labels.len();
    let size = LABEL + CELL * n as f64;
    let colour = |v: f64| {
        if !v.is_finite() {
            return "#ddd".to_owned();
        }
        let v = v.clamp(-1.0, 1.0);
        // Blue for positive, red for negative, white at zero.
        let (r, g, b) = if v >= 0.0 {
            (255.0 * (1.0 - v), 255.0 * (1.0 - 0.6 * v), 255.0)
        } else {
            (255.0, 255.0 * (1.0 + 0.6 * v), 255.0 * (1.0 + v))
        };
        format!("rgb({r:.0},{g:.0},{b:.0})")
    };
    let cells = matrix
        .iter()
        .enumerate()
        .flat_map(|(i, row)| {
            row.iter().enumerate().map(move |(j, v)| (i, j, *v))
        })
        .map(|(i, j, v)| {
            let (cx, cy) = (LABEL + CELL * j as f64, LABEL + CELL * i as f64);
            view! {
                <g class="cell" data-value=v.to_string()>
                    <rect x=cx y=cy width=CELL height=CELL fill={colour(v)}/>
                    <text x={cx + CELL / 2.0} y={cy + CELL / 2.0 + 4.0} text-anchor="middle" class="value">{format!("{v:.2}")}</text>
                </g>
            }
        })
        .collect_view();
    let axis = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let shown: String = l.chars().take(16).collect();
            let c = LABEL + CELL * i as f64 + CELL / 2.0;
            view! {
                <text x={LABEL - 6.0} y={c + 4.0} text-anchor="end" class="axis">{shown.clone()}</text>
                <text x=c y={LABEL - 6.0} text-anchor="start" class="axis"
                    transform={format!("rotate(-45 {c} {})", LABEL - 6.0)}>{shown}</text>
            }
        })
        .collect_view();
    view! {
        <figure class="chart" data-testid="heatmap">
            <figcaption>{title}</figcaption>
            <svg viewBox=format!("0 0 {size} {size}") role="img" class="heatmap">{axis}{cells}</svg>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_readable() {
        assert_eq!(short_number(3.0), "3");
        assert_eq!(short_number(0.12345), "0.123");
        assert_eq!(short_number(12.345), "12.35");
        assert_eq!(short_number(123_456.0), "123.5k");
        assert_eq!(short_number(2_500_000.0), "2.500M");
        assert_eq!(short_number(f64::NAN), "–");
    }

    #[test]
    fn clock_is_utc_hours_and_minutes() {
        assert_eq!(clock(0), "00:00 UTC");
        assert_eq!(clock((13 * 60 + 7) * 60_000 + 59_999), "13:07 UTC");
    }
}
