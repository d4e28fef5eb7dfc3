use super::*;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn run_on(analysis: serde_json::Value, df: DataFrame) -> Result<DataFrame, RunError> {
    let stop = AtomicBool::new(false);
    let ctx = RunContext {
        stop: &stop,
        progress: &|_: f64| {},
    };
    run(&serde_json::from_value(analysis).unwrap(), df.lazy(), &ctx)
}

fn nested_frame() -> DataFrame {
    let ids = Column::new("id".into(), [1_i64, 2, 3]);
    let tags = Series::new(
        "tags".into(),
        [
            Series::new("".into(), [1_i64, 2]),
            Series::new("".into(), [3_i64]),
            Series::new("".into(), Vec::<i64>::new()),
        ],
    )
    .into_column();
    let point = StructChunked::from_columns(
        "point".into(),
        3,
        &[
            Column::new("x".into(), [1.0_f64, 2.0, 3.0]),
            Column::new("y".into(), [4.0_f64, 5.0, 6.0]),
        ],
    )
    .unwrap()
    .into_series()
    .into_column();
    let name = Column::new("name".into(), [Some("a"), None, Some("a")]);
    DataFrame::new_infer_height(vec![ids, tags, point, name]).unwrap()
}

#[test]
fn a_profile_covers_list_and_struct_columns_with_counts_only() {
    let out = run_on(serde_json::json!({"kind": "profile"}), nested_frame()).unwrap();
    assert_eq!(out.height(), 4);
    let column = |name: &str| out.column(name).unwrap().as_materialized_series();
    let names: Vec<Option<&str>> = column("column").str().unwrap().iter().collect();
    assert_eq!(
        names,
        [Some("id"), Some("tags"), Some("point"), Some("name")]
    );
    let types: Vec<Option<&str>> = column("type").str().unwrap().iter().collect();
    assert_eq!(
        types,
        [Some("int64"), Some("list"), Some("struct"), Some("string")]
    );
    let count: Vec<Option<i64>> = column("count").i64().unwrap().iter().collect();
    assert_eq!(count, [Some(3), Some(3), Some(3), Some(2)]);
    let nulls: Vec<Option<i64>> = column("nulls").i64().unwrap().iter().collect();
    assert_eq!(nulls, [Some(0), Some(0), Some(0), Some(1)]);
    let distinct: Vec<Option<i64>> = column("distinct").i64().unwrap().iter().collect();
    assert_eq!(distinct, [Some(3), None, None, Some(2)]);
    let max: Vec<Option<&str>> = column("max").str().unwrap().iter().collect();
    assert_eq!(max, [Some("3"), None, None, Some("a")]);
    let mean: Vec<Option<f64>> = column("mean").f64().unwrap().iter().collect();
    assert_eq!(mean, [Some(2.0), None, None, None]);
    let top: Vec<Option<&str>> = column("top_values").str().unwrap().iter().collect();
    assert_eq!(top[3], Some("a (2)"));
}

#[test]
fn a_correlation_matrix_is_symmetric_with_ones_on_the_diagonal() {
    let df = DataFrame::new_infer_height(vec![
        Column::new("x".into(), [1.0_f64, 2.0, 3.0, 4.0]),
        Column::new("y".into(), [2.0_f64, 4.0, 6.0, 8.0]),
        Column::new("z".into(), [4.0_f64, 3.0, 2.0, 1.0]),
    ])
    .unwrap();
    let out = run_on(
        serde_json::json!({"kind": "correlation", "columns": ["x", "y", "z"]}),
        df,
    )
    .unwrap();
    let get = |c: &str, row: usize| out.column(c).unwrap().get(row).unwrap().extract::<f64>();
    for (c, row, want) in [("x", 0, 1.0), ("y", 0, 1.0), ("z", 0, -1.0), ("z", 2, 1.0)] {
        let have = get(c, row).unwrap();
        assert!((have - want).abs() < 1e-12, "{c}[{row}] = {have}");
    }
}

#[test]
fn io_failures_are_internal_and_data_failures_are_the_users() {
    let io = PolarsError::IO {
        error: Arc::new(std::io::Error::other("connection reset")),
        msg: None,
    };
    assert!(is_internal(&io));
    assert!(is_internal(&io.clone().context("reading parquet".into())));
    assert!(!is_internal(&PolarsError::ComputeError(
        "conversion from `str` to `i32` failed".into()
    )));

    // A dataset file that is not there: the worker's trouble, not the query's.
    let missing = crate::scan::scan_dataset(
        std::path::Path::new("/nonexistent/quarry/data.csv"),
        quarry_domain::DatasetFormat::Csv,
        &[],
    )
    .and_then(|lf| lf.collect());
    let err = RunError::from(missing.unwrap_err());
    assert!(matches!(err, RunError::Internal(_)), "{err:?}");

    // A strict cast that fails on the data is the user's to fix.
    let words = DataFrame::new_infer_height(vec![Column::new("w".into(), ["x", "y"])]).unwrap();
    let err = run_on(
        serde_json::json!({"kind": "sql", "query": "SELECT CAST(w AS INTEGER) AS n FROM data"}),
        words,
    )
    .unwrap_err();
    assert!(matches!(err, RunError::Failed(_)), "{err:?}");
}
