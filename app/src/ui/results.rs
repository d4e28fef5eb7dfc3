//! A job's result on its page: a chart where a picture says more, a paged sortable
//! table, and downloads.

use super::charts::{BarChart, Heatmap, short_number};
use super::error_text;
use super::server_fns::job_result;
use leptos::prelude::*;
use quarry_domain::{Analysis, ResultPage};
use serde_json::Value;

/// Rows per table page.
const PAGE: u64 = 50;
/// Rows read for a chart.
const CHART_ROWS: u64 = 200;

/// What to draw for a result.
#[derive(Debug, Clone, PartialEq)]
pub enum ChartData {
    Bars {
        title: String,
        labels: Vec<String>,
        values: Vec<f64>,
    },
    Heat {
        labels: Vec<String>,
        matrix: Vec<Vec<f64>>,
    },
    Profile(Vec<ProfileCard>),
}

/// One column of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileCard {
    pub column: String,
    pub r#type: String,
    pub stats: Vec<(String, String)>,
    /// q05, q25, q50, q75, q95 and min/max, for numeric columns.
    pub spread: Option<[f64; 7]>,
}

/// A cell as the table shows it: numbers in full (the shortest text that reads back
/// as the same value), text as is, missing values as a dash.
pub(super) fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => "–".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn index_of(page: &ResultPage, name: &str) -> Option<usize> {
    page.columns.iter().position(|c| c.name == name)
}

/// The chart for a result of `analysis`, if its kind has one.
pub fn chart_for(analysis: &Analysis, page: &ResultPage) -> Option<ChartData> {
    let num = |row: &[Value], i: usize| row.get(i).and_then(Value::as_f64);
    match analysis {
        Analysis::Histogram { column, .. } => {
            let (lo, hi, n) = (
                index_of(page, "lower")?,
                index_of(page, "upper")?,
                index_of(page, "count")?,
            );
            let labels = page
                .rows
                .iter()
                .map(|r| {
                    format!(
                        "{} – {}",
                        short_number(num(r, lo).unwrap_or(f64::NAN)),
                        short_number(num(r, hi).unwrap_or(f64::NAN))
                    )
                })
                .collect();
            let values = page.rows.iter().map(|r| num(r, n).unwrap_or(0.0)).collect();
            Some(ChartData::Bars {
                title: format!("Distribution of {column}"),
                labels,
                values,
            })
        }
        Analysis::Aggregate { group_by, .. } => {
            let keys = group_by.len();
            if keys == 0 || page.columns.len() <= keys {
                return None;
            }
            let value_col = &page.columns[keys];
            let numeric = page
                .rows
                .iter()
                .all(|r| r[keys].is_number() || r[keys].is_null());
            if !numeric {
                return None;
            }
            let labels = page
                .rows
                .iter()
                .map(|r| {
                    r[..keys]
                        .iter()
                        .map(cell_text)
                        .collect::<Vec<_>>()
                        .join(" · ")
                })
                .collect();
            let values = page
                .rows
                .iter()
                .map(|r| num(r, keys).unwrap_or(f64::NAN))
                .collect();
            Some(ChartData::Bars {
                title: format!(
                    "{} by {}",
                    value_col.name,
                    page.columns[..keys]
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                labels,
                values,
            })
        }
        Analysis::Correlation { .. } => {
            let labels: Vec<String> = page
                .columns
                .iter()
                .skip(1)
                .map(|c| c.name.clone())
                .collect();
            let matrix = page
                .rows
                .iter()
                .map(|r| {
                    (1..=labels.len())
                        .map(|i| num(r, i).unwrap_or(f64::NAN))
                        .collect()
                })
                .collect();
            Some(ChartData::Heat { labels, matrix })
        }
        Analysis::Profile => {
            let at = |name: &str| index_of(page, name);
            let (column, ty) = (at("column")?, at("type")?);
            let stat_names = ["count", "nulls", "distinct", "min", "max", "mean", "std"];
            let cards = page
                .rows
                .iter()
                .map(|r| {
                    let stats = stat_names
                        .iter()
                        .filter_map(|s| {
                            at(s).map(|i| {
                                let text =
                                    r[i].as_f64().map_or_else(|| cell_text(&r[i]), short_number);
                                ((*s).to_owned(), text)
                            })
                        })
                        .collect();
                    let q = |name: &str| at(name).and_then(|i| num(r, i));
                    let spread = (|| {
                        let min = r.get(at("min")?)?.as_str()?.parse().ok()?;
                        let max = r.get(at("max")?)?.as_str()?.parse().ok()?;
                        Some([
                            min,
                            q("q05")?,
                            q("q25")?,
                            q("q50")?,
                            q("q75")?,
                            q("q95")?,
                            max,
                        ])
                    })();
                    ProfileCard {
                        column: cell_text(&r[column]),
                        r#type: cell_text(&r[ty]),
                        stats,
                        spread,
                    }
                })
                .collect();
            Some(ChartData::Profile(cards))
        }
        Analysis::Sql { .. } | Analysis::Spin { .. } => None,
    }
}

/// A numeric column's spread: whiskers from the 5th to the 95th percentile, a box for
/// the middle half, a line at the median, ticks at min and max.
#[component]
fn Spread(s: [f64; 7]) -> impl IntoView {
    let [min, q05, q25, q50, q75, q95, max] = s;
    let span = (max - min).abs().max(f64::EPSILON);
    let x = move |v: f64| 4.0 + (v - min) / span * 192.0;
    view! {
        <svg viewBox="0 0 200 24" class="spread" role="img">
            <title>{format!("5%: {q05} · 25%: {q25} · median: {q50} · 75%: {q75} · 95%: {q95}")}</title>
            <line x1={x(min)} x2={x(max)} y1="12" y2="12" class="range"/>
            <line x1={x(q05)} x2={x(q95)} y1="12" y2="12" class="whisker"/>
            <rect x={x(q25)} y="5" width={(x(q75) - x(q25)).max(1.0)} height="14" class="box"/>
            <line x1={x(q50)} x2={x(q50)} y1="3" y2="21" class="median"/>
        </svg>
    }
}

#[component]
fn Chart(data: ChartData) -> impl IntoView {
    match data {
        ChartData::Bars { title, labels, values } => view! { <BarChart title labels values/> }.into_any(),
        ChartData::Heat { labels, matrix } => {
            view! { <Heatmap title="Pearson correlation" labels matrix/> }.into_any()
        }
        ChartData::Profile(cards) => view! {
            <div class="cards" data-testid="profile-cards">
                {cards.into_iter().map(|c| view! {
                    <article class="card">
                        <h3><code>{c.column}</code>" "<span class="type">{c.r#type}</span></h3>
                        {c.spread.map(|s| view! { <Spread s/> })}
                        <dl>
                            {c.stats.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}
                        </dl>
                    </article>
                }).collect_view()}
            </div>
        }
        .into_any(),
    }
}

/// The result of a succeeded job.
#[component]
pub fn ResultView(id: String, analysis: Analysis) -> impl IntoView {
    let offset = RwSignal::new(0_u64);
    let sort = RwSignal::new(None::<String>);
    let chart_id = id.clone();
    let chart = Resource::new(
        move || chart_id.clone(),
        |id| job_result(id, 0, CHART_ROWS, None),
    );
    let table_id = id.clone();
    let page = Resource::new(
        move || (table_id.clone(), offset.get(), sort.get()),
        |(id, offset, sort)| job_result(id, offset, PAGE, sort),
    );
    let sort_by = move |name: String| {
        sort.update(|s| {
            *s = match s.as_deref() {
                Some(current) if current == name => Some(format!("-{name}")),
                _ => Some(name),
            }
        });
        offset.set(0);
    };
    view! {
        <section class="result" data-testid="result">
            <div class="downloads">
                <a href=format!("/api/v1/jobs/{id}/result?format=csv") download data-testid="download-csv">"Download CSV"</a>
                <a href=format!("/api/v1/jobs/{id}/result?format=parquet") download data-testid="download-parquet">"Download Parquet"</a>
            </div>
            <Suspense fallback=|| ()>
                {move || Suspend::new({
                    let analysis = analysis.clone();
                    async move {
                        chart.await.ok().and_then(|p| chart_for(&analysis, &p)).map(|data| view! { <Chart data/> })
                    }
                })}
            </Suspense>
            <Transition fallback=|| view! { <p class="hint">"Loading the result…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Err(e) => view! { <p class="error" role="alert">{error_text(&e)}</p> }.into_any(),
                        Ok(p) => {
                            let total = p.total_rows;
                            let first = if total == 0 { 0 } else { p.offset + 1 };
                            let last = (p.offset + p.rows.len() as u64).min(total);
                            let current = sort.get_untracked();
                            view! {
                                <div class="table-wrap">
                                    <table class="result-table" data-testid="result-table">
                                        <thead><tr>
                                            {p.columns.iter().map(|c| {
                                                let name = c.name.clone();
                                                let mark = match current.as_deref() {
                                                    Some(s) if s == name => " ▲",
                                                    Some(s) if s.strip_prefix('-') == Some(name.as_str()) => " ▼",
                                                    _ => "",
                                                };
                                                let label = format!("{}{mark}", c.name);
                                                view! {
                                                    <th>
                                                        <button type="button" class="link sort" title=format!("Sort by {}", c.name)
                                                            on:click=move |_| sort_by(name.clone())>{label}</button>
                                                        <span class="type">{c.r#type.clone()}</span>
                                                    </th>
                                                }
                                            }).collect_view()}
                                        </tr></thead>
                                        <tbody>
                                            {p.rows.iter().map(|r| view! {
                                                <tr>{r.iter().map(|v| view! {
                                                    <td class:num=v.is_number()>{cell_text(v)}</td>
                                                }).collect_view()}</tr>
                                            }).collect_view()}
                                        </tbody>
                                    </table>
                                </div>
                                <div class="pager">
                                    <span data-testid="row-range">{format!("Rows {first}–{last} of {total}")}</span>
                                    <button type="button" disabled={p.offset == 0}
                                        on:click=move |_| offset.update(|o| *o = o.saturating_sub(PAGE))>"Previous"</button>
                                    <button type="button" disabled={last >= total}
                                        on:click=move |_| offset.update(|o| *o += PAGE)>"Next"</button>
                                </div>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_domain::ColumnInfo;
    use serde_json::json;

    fn page(columns: &[(&str, &str)], rows: Vec<Vec<Value>>) -> ResultPage {
        ResultPage {
            columns: columns
                .iter()
                .map(|(n, t)| ColumnInfo {
                    name: (*n).into(),
                    r#type: (*t).into(),
                })
                .collect(),
            total_rows: rows.len() as u64,
            rows,
            offset: 0,
            limit: 100,
        }
    }

    #[test]
    fn an_aggregate_becomes_bars_of_its_first_value_by_key() {
        let p = page(
            &[("city", "string"), ("amount_mean", "float64")],
            vec![
                vec![json!("Oslo"), json!(2.5)],
                vec![json!("Rome"), json!(4.0)],
            ],
        );
        let a = Analysis::Aggregate {
            group_by: vec!["city".into()],
            aggregations: vec![],
            order_by: vec![],
            limit: None,
        };
        assert_eq!(
            chart_for(&a, &p),
            Some(ChartData::Bars {
                title: "amount_mean by city".into(),
                labels: vec!["Oslo".into(), "Rome".into()],
                values: vec![2.5, 4.0]
            })
        );
    }

    #[test]
    fn histograms_correlations_and_profiles_have_their_pictures() {
        let h = page(
            &[
                ("bin", "int64"),
                ("lower", "float64"),
                ("upper", "float64"),
                ("count", "int64"),
            ],
            vec![vec![json!(0), json!(0.0), json!(5.0), json!(3)]],
        );
        let Some(ChartData::Bars { labels, values, .. }) = chart_for(
            &Analysis::Histogram {
                column: "x".into(),
                bins: 1,
            },
            &h,
        ) else {
            panic!("histogram has bars")
        };
        assert_eq!((labels, values), (vec!["0 – 5".to_owned()], vec![3.0]));

        let c = page(
            &[("column", "string"), ("a", "float64"), ("b", "float64")],
            vec![
                vec![json!("a"), json!(1.0), json!(-0.5)],
                vec![json!("b"), json!(-0.5), json!(1.0)],
            ],
        );
        assert_eq!(
            chart_for(
                &Analysis::Correlation {
                    columns: vec!["a".into(), "b".into()]
                },
                &c
            ),
            Some(ChartData::Heat {
                labels: vec!["a".into(), "b".into()],
                matrix: vec![vec![1.0, -0.5], vec![-0.5, 1.0]]
            })
        );
        assert_eq!(chart_for(&Analysis::Sql { query: "x".into() }, &c), None);
    }
}
