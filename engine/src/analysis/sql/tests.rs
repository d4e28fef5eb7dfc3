use super::*;

#[test]
fn selects_over_data_and_ctes_pass() {
    check("SELECT category, AVG(amount) FROM data GROUP BY category").unwrap();
    check("WITH t AS (SELECT * FROM data WHERE amount > 1) SELECT COUNT(*) FROM t").unwrap();
    check("SELECT * FROM (SELECT id FROM data) s JOIN data d ON s.id = d.id").unwrap();
    check("SELECT id FROM data WHERE id IN (SELECT id FROM data LIMIT 3)").unwrap();
    check("SELECT id FROM data UNION ALL SELECT id FROM data").unwrap();
    check("WITH t AS (SELECT id FROM data) SELECT id FROM t EXCEPT SELECT id FROM data").unwrap();
}

#[test]
fn file_reads_other_tables_and_writes_are_refused() {
    for (sql, says) in [
        ("SELECT * FROM read_csv('/etc/passwd')", "table functions"),
        ("SELECT * FROM READ_PARQUET('x.parquet')", "table functions"),
        (
            "WITH read_csv AS (SELECT 1) SELECT * FROM read_csv('/etc/passwd')",
            "table functions",
        ),
        (
            "SELECT * FROM data WHERE id IN (SELECT 1 FROM read_json('/x'))",
            "table functions",
        ),
        ("SELECT * FROM secrets", "unknown table"),
        ("DROP TABLE data", "only SELECT"),
        ("SELECT 1; SELECT 2", "exactly one"),
        ("SELEC * FROM data", "syntax error"),
        ("  ", "empty"),
    ] {
        let err = check(sql).unwrap_err();
        assert!(err.contains(says), "{sql}: {err}");
    }
}

#[test]
fn table_statements_and_set_operations_go_through_the_table_guard() {
    // sqlparser reads `TABLE x` after a WITH or as a side of a set operation (a bare
    // `TABLE x` is a syntax error to it, and so to polars).
    check("WITH t AS (SELECT id FROM data) TABLE t").unwrap();
    check("SELECT id FROM data UNION TABLE data").unwrap();
    check("SELECT id FROM data INTERSECT TABLE data").unwrap();
    for sql in [
        "WITH t AS (SELECT id FROM data) TABLE secrets",
        "WITH t AS (SELECT id FROM data) TABLE other.data",
        "SELECT id FROM data UNION TABLE secrets",
        "SELECT id FROM data EXCEPT TABLE secrets",
        "SELECT id FROM data UNION SELECT id FROM secrets",
        "SELECT id FROM data EXCEPT SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM (SELECT id FROM data UNION SELECT id FROM secrets) s",
    ] {
        let err = check(sql).unwrap_err();
        assert!(
            err.contains("reads outside the dataset") || err.contains("unknown table"),
            "{sql}: {err}"
        );
        assert!(err.contains("`data`"), "{sql}: {err}");
    }
    let err = check("TABLE secrets").unwrap_err();
    assert!(err.contains("syntax error"), "{err}");
}

fn sum(terms: usize) -> String {
    format!("SELECT {} AS x FROM data", vec!["1"; terms].join("+"))
}

fn parens(depth: usize) -> String {
    format!(
        "SELECT {}1{} AS x FROM data",
        "(".repeat(depth),
        ")".repeat(depth)
    )
}

#[test]
fn a_200_000_term_sum_is_refused_before_it_is_parsed() {
    // This query used to overflow the stack and abort the server.
    let err = check(&sum(200_000)).unwrap_err();
    assert!(
        err.contains("the limit is 65536 bytes (64 KiB)"),
        "refused on its size: {err}"
    );
}

#[test]
fn a_query_over_64_kib_is_refused_with_the_limit() {
    let padding = "x".repeat(MAX_QUERY_BYTES);
    let sql = format!("SELECT 1 AS \"{padding}\" FROM data");
    let err = check(&sql).unwrap_err();
    assert_eq!(
        err,
        format!(
            "the query is {} bytes; the limit is 65536 bytes (64 KiB)",
            sql.len()
        )
    );
    // Just under the size limit, the same shape is fine.
    let short = format!("SELECT 1 AS \"{}\" FROM data", "x".repeat(60_000));
    check(&short).unwrap();
}

#[test]
fn too_many_tokens_are_refused_before_parsing() {
    // 12,000 terms: about 24,000 bytes and 24,000 tokens.
    let sql = sum(12_000);
    assert!(sql.len() < MAX_QUERY_BYTES);
    let err = check(&sql).unwrap_err();
    assert!(
        err.starts_with("the query has 24004 tokens; the limit is 20000"),
        "{err}"
    );
}

#[test]
fn a_deep_sum_is_refused_with_its_depth() {
    // 5,000 terms: a left-leaning tree 4,999 operators deep, within the token bound.
    let err = check(&sum(5_000)).unwrap_err();
    assert!(
        err.starts_with("the query's expressions nest 5000 deep; the limit is 200"),
        "{err}"
    );
    check(&sum(150)).unwrap();
}

#[test]
fn deep_parentheses_are_refused_and_150_deep_is_fine() {
    check(&parens(150)).unwrap();
    let err = check(&parens(300)).unwrap_err();
    assert!(
        err.starts_with("the query's expressions nest 301 deep; the limit is 200"),
        "{err}"
    );
    // Deeper than the parser goes at all: refused by the parser, same message shape.
    let err = check(&parens(5_000)).unwrap_err();
    assert!(
        err.contains("nest more than 1000 deep; the limit is 200"),
        "{err}"
    );
}

#[test]
fn deeply_nested_subqueries_are_refused() {
    let mut sql = "SELECT id FROM data".to_owned();
    for _ in 0..250 {
        sql = format!("SELECT id FROM ({sql}) t");
    }
    let err = check(&sql).unwrap_err();
    assert!(
        err.contains("nest") && err.contains("the limit is 200"),
        "{err}"
    );
    let unions = format!(
        "SELECT 1 AS x FROM data{}",
        " UNION ALL SELECT 1 AS x FROM data".repeat(300)
    );
    let err = check(&unions).unwrap_err();
    assert!(
        // 300 set operations, plus the expression inside the deepest SELECT.
        err.starts_with("the query's expressions nest 301 deep; the limit is 200"),
        "{err}"
    );
}

#[test]
fn too_many_expressions_are_refused_even_when_shallow() {
    // 60 columns of 100-term sums: 11,940 expressions, 100 deep, 12,000 tokens.
    let column = vec!["1"; 100].join("+");
    let sql = format!("SELECT {} FROM data", vec![column; 60].join(", "));
    let err = check(&sql).unwrap_err();
    assert!(
        err.starts_with("the query has 11940 expressions; the limit is 10000"),
        "{err}"
    );
}

#[test]
fn the_check_runs_off_a_small_stack() {
    // A 64 KiB thread could not hold even the parser for a 150-deep query.
    let handle = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(|| check(&parens(150)))
        .unwrap();
    handle.join().unwrap().unwrap();
}
