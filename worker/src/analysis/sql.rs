//! SQL analyses: the dataset is the table `data`, and the query can read nothing else.
//!
//! polars SQL has table functions (`read_csv('/path')`, `read_parquet`, ...) that read
//! files by path, and no switch to turn them off. So every query is parsed first with
//! the same SQL parser polars uses and refused unless it is one `SELECT` whose every
//! relation is `data` or one of its own CTEs, with no table function anywhere.

use sqlparser::ast::{ObjectName, Query, SetExpr, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserOptions};
use std::collections::HashSet;
use std::ops::ControlFlow;

/// The table name a SQL analysis reads.
pub const TABLE: &str = "data";

/// Checks that `sql` is a single `SELECT` over `data` and nothing else; the error
/// says what to change.
pub fn check(sql: &str) -> Result<(), String> {
    if sql.trim().is_empty() {
        return Err("the query is empty: write `SELECT ... FROM data`".to_owned());
    }
    let statements = Parser::new(&GenericDialect)
        .with_options(ParserOptions::new().with_trailing_commas(true))
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| format!("SQL syntax error: {e}"))?;
    let [statement] = statements.as_slice() else {
        return Err(format!(
            "send exactly one statement (got {})",
            statements.len()
        ));
    };
    let Statement::Query(query) = statement else {
        return Err("only SELECT queries are allowed".to_owned());
    };
    let mut ctes = HashSet::new();
    collect_ctes(query, &mut ctes);
    let mut guard = Guard { ctes };
    match statement.visit(&mut guard) {
        ControlFlow::Break(message) => Err(message),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn collect_ctes(query: &Query, names: &mut HashSet<String>) {
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            names.insert(cte.alias.name.value.to_lowercase());
            collect_ctes(&cte.query, names);
        }
    }
    if let SetExpr::Query(inner) = query.body.as_ref() {
        collect_ctes(inner, names);
    }
}

struct Guard {
    ctes: HashSet<String>,
}

fn simple_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [one] => one.as_ident().map(|i| i.value.to_lowercase()),
        _ => None,
    }
}

impl Visitor for Guard {
    type Break = String;

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => ControlFlow::Break(format!(
                "`{name}(...)` reads outside the dataset: table functions are not allowed; \
                 query the table `{TABLE}`"
            )),
            TableFactor::Table { name, .. } => match simple_name(name) {
                Some(n) if n == TABLE || self.ctes.contains(&n) => ControlFlow::Continue(()),
                _ => ControlFlow::Break(format!(
                    "unknown table `{name}`: the dataset is the table `{TABLE}`"
                )),
            },
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => {
                ControlFlow::Continue(())
            }
            other => ControlFlow::Break(format!(
                "`{other}` is not allowed in FROM: query the table `{TABLE}`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_over_data_and_ctes_pass() {
        check("SELECT category, AVG(amount) FROM data GROUP BY category").unwrap();
        check("WITH t AS (SELECT * FROM data WHERE amount > 1) SELECT COUNT(*) FROM t").unwrap();
        check("SELECT * FROM (SELECT id FROM data) s JOIN data d ON s.id = d.id").unwrap();
        check("SELECT id FROM data WHERE id IN (SELECT id FROM data LIMIT 3)").unwrap();
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
}
