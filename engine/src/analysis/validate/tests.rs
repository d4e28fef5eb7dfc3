use super::*;
use serde_json::json;

fn typed(columns: &[(&str, &str)]) -> Vec<ColumnInfo> {
    columns
        .iter()
        .map(|(n, t)| ColumnInfo {
            name: (*n).into(),
            r#type: (*t).into(),
        })
        .collect()
}

fn cols() -> Vec<ColumnInfo> {
    typed(&[
        ("category", "string"),
        ("amount", "float64"),
        ("id", "int64"),
        ("tags", "list"),
    ])
}

const LIMITS: Limits = Limits {
    allow_spin: false,
    max_spin_secs: 600,
    max_profile_columns: 4,
    max_correlation_columns: 3,
};

fn check_with(
    v: serde_json::Value,
    columns: &[ColumnInfo],
    limits: &Limits,
) -> Result<(), Invalid> {
    validate(&serde_json::from_value(v).unwrap(), columns, limits)
}

fn check(v: serde_json::Value) -> Result<(), Invalid> {
    check_with(v, &cols(), &LIMITS)
}

#[test]
fn good_requests_pass() {
    check(json!({"kind":"aggregate","group_by":["category"],"aggregations":[{"column":"amount","op":"mean"}],"order_by":["-amount_mean"]})).unwrap();
    check(json!({"kind":"sql","query":"SELECT category, AVG(amount) AS m FROM data GROUP BY category"})).unwrap();
    check(json!({"kind":"histogram","column":"amount","bins":10})).unwrap();
    check(json!({"kind":"correlation","columns":["amount","id"]})).unwrap();
    check(json!({"kind":"profile"})).unwrap();
    check(json!({"kind":"aggregate","aggregations":[{"column":"tags","op":"count"}]})).unwrap();
}

#[test]
fn bad_requests_name_what_is_wrong() {
    let e = check(json!({"kind":"aggregate","group_by":["cat"],"aggregations":[{"column":"amount","op":"mean"}]})).unwrap_err();
    assert_eq!(e.code, "unknown_column");
    assert!(
        e.message.contains("`cat`") && e.message.contains("category"),
        "{e:?}"
    );
    let e = check(json!({"kind":"aggregate","aggregations":[{"column":"category","op":"mean"}]}))
        .unwrap_err();
    assert_eq!(e.code, "bad_op");
    let e = check(json!({"kind":"sql","query":"SELECT nope FROM data"})).unwrap_err();
    assert_eq!(e.code, "bad_sql");
    assert!(e.message.contains("nope"), "{e:?}");
    let e =
        check(json!({"kind":"sql","query":"SELECT * FROM read_csv('/etc/passwd')"})).unwrap_err();
    assert!(e.message.contains("table functions"), "{e:?}");
    let e =
        check(json!({"kind":"sql","query":"SELECT id FROM data UNION TABLE secrets"})).unwrap_err();
    assert_eq!(e.code, "bad_sql");
    let e = check(json!({"kind":"spin","seconds":1})).unwrap_err();
    assert_eq!(e.code, "spin_disabled");
    let e = check(json!({"kind":"histogram","column":"category","bins":3})).unwrap_err();
    assert_eq!(e.code, "bad_column");
}

#[test]
fn a_hostile_query_is_refused_before_polars_plans_it() {
    let sum = vec!["1"; 5_000].join("+");
    let e =
        check(json!({"kind":"sql","query":format!("SELECT {sum} AS x FROM data")})).unwrap_err();
    assert_eq!(e.code, "bad_sql");
    assert!(
        e.message
            .starts_with("the query's expressions nest 5000 deep; the limit is 200"),
        "{e:?}"
    );
}

#[test]
fn sql_over_temporal_and_decimal_columns_plans() {
    let columns = typed(&[
        ("ts", "datetime"),
        ("day", "date"),
        ("price", "decimal"),
        ("exact", "decimal[10,2]"),
        ("took", "duration"),
        ("at", "time"),
    ]);
    let limits = LIMITS;
    for query in [
        "SELECT EXTRACT(YEAR FROM ts) AS y FROM data",
        "SELECT CAST(ts AS DATE) AS d FROM data",
        "SELECT EXTRACT(MONTH FROM day) AS m, day FROM data WHERE day > '2024-01-01'",
        "SELECT SUM(price) AS total, MAX(exact) AS most FROM data",
        "SELECT MAX(took) AS longest FROM data",
        "SELECT EXTRACT(HOUR FROM at) AS h FROM data",
        "SELECT STRFTIME(ts, '%Y-%m') AS month, COUNT(*) AS n FROM data GROUP BY month",
        "SELECT DATE_PART('year', day) AS y FROM data",
    ] {
        check_with(json!({"kind":"sql","query":query}), &columns, &limits)
            .unwrap_or_else(|e| panic!("{query}: {e:?}"));
    }
    // The types are the real ones, so a wrong use is still a wrong use.
    let e = check_with(
        json!({"kind":"sql","query":"SELECT ts + ts AS nonsense FROM data"}),
        &columns,
        &limits,
    );
    assert!(e.is_err(), "datetime + datetime is not defined");
}

#[test]
fn type_names_map_to_real_polars_types() {
    assert_eq!(
        dtype_of("datetime"),
        DataType::Datetime(TimeUnit::Microseconds, None)
    );
    assert_eq!(dtype_of("date"), DataType::Date);
    assert_eq!(
        dtype_of("duration"),
        DataType::Duration(TimeUnit::Microseconds)
    );
    assert_eq!(dtype_of("time"), DataType::Time);
    assert_eq!(dtype_of("decimal"), DataType::Decimal(38, 9));
    assert_eq!(dtype_of("decimal[10,2]"), DataType::Decimal(10, 2));
    assert_eq!(
        dtype_of("decimal[99,2]"),
        DataType::String,
        "no such precision"
    );
    assert_eq!(dtype_of("int32"), DataType::Int32);
    assert_eq!(dtype_of("whatever"), DataType::String);
}

#[test]
fn repeated_columns_and_keys_are_refused() {
    let e = check(json!({"kind":"correlation","columns":["amount","id","amount"]})).unwrap_err();
    assert_eq!(e.code, "duplicate_column");
    assert!(e.message.contains("`amount` twice"), "{e:?}");
    let e = check(
        json!({"kind":"aggregate","group_by":["category","category"],
        "aggregations":[{"column":"amount","op":"mean"}]}),
    )
    .unwrap_err();
    assert_eq!(e.code, "duplicate_column");
    assert!(e.message.contains("`category` twice"), "{e:?}");
    let e = check(json!({"kind":"aggregate","group_by":["category"],
        "aggregations":[{"column":"amount","op":"mean","alias":"category"}]}))
    .unwrap_err();
    assert_eq!(e.code, "duplicate_output");
    let e = check(json!({"kind":"aggregate",
        "aggregations":[{"column":"amount","op":"sum"},{"column":"amount","op":"sum"}]}))
    .unwrap_err();
    assert_eq!(e.code, "duplicate_output");
    let e = check(json!({"kind":"aggregate",
        "aggregations":[{"column":"amount","op":"sum","alias":""}]}))
    .unwrap_err();
    assert_eq!(e.code, "bad_alias");
}

#[test]
fn nested_columns_only_count_and_never_group() {
    let e = check(json!({"kind":"aggregate","aggregations":[{"column":"tags","op":"max"}]}))
        .unwrap_err();
    assert_eq!(e.code, "bad_op");
    assert!(e.message.contains("list"), "{e:?}");
    let e = check(json!({"kind":"aggregate","group_by":["tags"],
        "aggregations":[{"column":"amount","op":"mean"}]}))
    .unwrap_err();
    assert_eq!(e.code, "bad_column");
}

#[test]
fn widths_and_spin_length_are_bounded_by_the_config() {
    let wide = typed(&[
        ("a", "int64"),
        ("b", "int64"),
        ("c", "int64"),
        ("d", "int64"),
        ("e", "int64"),
    ]);
    let e = check_with(json!({"kind":"profile"}), &wide, &LIMITS).unwrap_err();
    assert_eq!(e.code, "too_many_columns");
    assert!(
        e.message.contains("has 5 columns")
            && e.message.contains("at most 4")
            && e.message.contains("analyses.max_profile_columns"),
        "{e:?}"
    );
    check_with(json!({"kind":"profile"}), &wide[..4], &LIMITS).unwrap();

    let e = check_with(
        json!({"kind":"correlation","columns":["a","b","c","d"]}),
        &wide,
        &LIMITS,
    )
    .unwrap_err();
    assert_eq!(e.code, "too_many_columns");
    assert!(
        e.message.contains("at most 3") && e.message.contains("analyses.max_correlation_columns"),
        "{e:?}"
    );
    check_with(
        json!({"kind":"correlation","columns":["a","b","c"]}),
        &wide,
        &LIMITS,
    )
    .unwrap();

    let spin = Limits {
        allow_spin: true,
        max_spin_secs: 30,
        ..LIMITS
    };
    check_with(json!({"kind":"spin","seconds":30}), &wide, &spin).unwrap();
    let e = check_with(json!({"kind":"spin","seconds":31}), &wide, &spin).unwrap_err();
    assert_eq!(e.code, "bad_seconds");
    assert!(
        e.message.contains("between 0 and 30") && e.message.contains("analyses.max_spin_secs"),
        "{e:?}"
    );
}
