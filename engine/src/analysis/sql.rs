//! SQL analyses: the dataset is the table `data`, and the query can read nothing else.
//!
//! polars SQL has table functions (`read_csv('/path')`, `read_parquet`, ...) that read
//! files by path, and no switch to turn them off. So every query is parsed first with
//! the same SQL parser polars uses and refused unless it is one `SELECT` whose every
//! relation (`FROM x`, `JOIN x`, `TABLE x`, either side of a `UNION`, `EXCEPT` or
//! `INTERSECT`) is `data` or one of its own CTEs, with no table function anywhere.
//!
//! # Bounds
//!
//! The query is untrusted text, and the parser, every walk over its syntax tree
//! (this guard, polars' planner) and even dropping the tree recurse once per level of
//! nesting: `SELECT 1+1+...+1` with 200,000 terms is a tree 200,000 deep, enough to
//! overflow any thread's stack and abort the whole process. So, in this order:
//!
//! * the text is at most [`MAX_QUERY_BYTES`] (64 KiB);
//! * it is tokenized (an iterative pass) into at most [`MAX_TOKENS`] (20,000) tokens,
//!   not counting whitespace and comments, which bounds the size of any tree;
//! * the parser stops at [`PARSE_RECURSION_LIMIT`] levels of nesting;
//! * the parsed tree nests at most [`MAX_DEPTH`] (200) expressions, subqueries and
//!   set operations deep, and holds at most [`MAX_NODES`] (10,000) expressions.
//!
//! The whole check (tokenize, parse, walk, drop) runs on a thread of its own with a
//! [`BIG_STACK`] stack (only reserved, not used, until something recurses), never on
//! the async runtime's small stack; see [`on_big_stack`]. Each error names the bound.

use sqlparser::ast::{ObjectName, Query, SetExpr, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError, ParserOptions};
use sqlparser::tokenizer::{Token, Tokenizer};
use std::collections::HashSet;
use std::ops::ControlFlow;

/// The table name a SQL analysis reads.
pub const TABLE: &str = "data";
/// The longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// The most tokens (words, numbers, symbols; not whitespace or comments) in a query.
pub const MAX_TOKENS: usize = 20_000;
/// The deepest nesting of expressions, subqueries and set operations.
pub const MAX_DEPTH: usize = 200;
/// The most expressions in a query.
pub const MAX_NODES: usize = 10_000;
/// Where the parser itself gives up (it counts every nested expression and query).
pub const PARSE_RECURSION_LIMIT: usize = 1_000;
/// The stack of the threads that parse, walk and plan queries.
pub const BIG_STACK: usize = 256 * 1024 * 1024;

/// Runs `f` on a new thread with a [`BIG_STACK`] stack and waits for it. A panic in
/// `f` is an `Err` naming what was being done (`what`).
pub fn on_big_stack<T: Send>(what: &str, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("sql-check".to_owned())
            .stack_size(BIG_STACK)
            .spawn_scoped(scope, f)
            .map_err(|e| format!("{what}: could not start a thread ({e})"))?;
        handle
            .join()
            .map_err(|_| format!("{what} failed unexpectedly"))
    })
}

/// Checks that `sql` is a single `SELECT` over `data` and nothing else, within the
/// bounds of the module doc; the error says what to change. Runs on its own thread
/// with a big stack.
pub fn check(sql: &str) -> Result<(), String> {
    on_big_stack("checking the query", || check_on_this_thread(sql))?
}

/// [`check`] on the calling thread, which must have a [`BIG_STACK`] stack (a thread
/// from [`on_big_stack`]).
pub fn check_on_this_thread(sql: &str) -> Result<(), String> {
    if sql.len() > MAX_QUERY_BYTES {
        return Err(format!(
            "the query is {} bytes; the limit is {MAX_QUERY_BYTES} bytes (64 KiB)",
            sql.len()
        ));
    }
    if sql.trim().is_empty() {
        return Err("the query is empty: write `SELECT ... FROM data`".to_owned());
    }
    let dialect = GenericDialect;
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| format!("SQL syntax error: {e}"))?;
    let words = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .count();
    if words > MAX_TOKENS {
        return Err(format!(
            "the query has {words} tokens; the limit is {MAX_TOKENS}: compute fewer columns \
             or shorter expressions"
        ));
    }
    let statements = Parser::new(&dialect)
        .with_options(ParserOptions::new().with_trailing_commas(true))
        .with_recursion_limit(PARSE_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| match e {
            ParserError::RecursionLimitExceeded => format!(
                "the query's expressions nest more than {PARSE_RECURSION_LIMIT} deep; \
                 the limit is {MAX_DEPTH}"
            ),
            e => format!("SQL syntax error: {e}"),
        })?;
    let [statement] = statements.as_slice() else {
        return Err(format!(
            "send exactly one statement (got {})",
            statements.len()
        ));
    };
    let Statement::Query(_) = statement else {
        return Err("only SELECT queries are allowed".to_owned());
    };
    let mut guard = Guard::default();
    if let ControlFlow::Break(message) = statement.visit(&mut guard) {
        return Err(message);
    }
    if guard.max_depth > MAX_DEPTH {
        return Err(format!(
            "the query's expressions nest {} deep; the limit is {MAX_DEPTH}: use fewer \
             nested parentheses, subqueries or set operations",
            guard.max_depth
        ));
    }
    if guard.nodes > MAX_NODES {
        return Err(format!(
            "the query has {} expressions; the limit is {MAX_NODES}: compute fewer columns \
             or shorter expressions",
            guard.nodes
        ));
    }
    Ok(())
}

/// Walks the tree: refuses what reads outside `data`, and measures depth and size.
#[derive(Default)]
struct Guard {
    /// CTE names seen so far (lowercase).
    ctes: HashSet<String>,
    /// Queries entered and not yet left.
    queries: usize,
    depth: usize,
    max_depth: usize,
    nodes: usize,
    /// The levels each query that was entered added to `depth`.
    entered: Vec<usize>,
}

impl Guard {
    fn allowed(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        name == TABLE || self.ctes.contains(&name)
    }

    fn enter(&mut self, levels: usize) {
        self.depth += levels;
        self.max_depth = self.max_depth.max(self.depth);
    }

    /// Checks a query's body: only `SELECT`s, `VALUES`, nested queries, `TABLE data`
    /// (or a CTE) and set operations of those. Returns how deep set operations nest.
    fn check_body(&self, body: &SetExpr) -> ControlFlow<String, usize> {
        let mut pending = vec![(body, 0_usize)];
        let mut deepest = 0;
        while let Some((expr, depth)) = pending.pop() {
            deepest = deepest.max(depth);
            match expr {
                SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) => {}
                SetExpr::SetOperation { left, right, .. } => {
                    pending.push((&**left, depth + 1));
                    pending.push((&**right, depth + 1));
                }
                SetExpr::Table(table) => match (&table.schema_name, &table.table_name) {
                    (None, Some(name)) if self.allowed(name) => {}
                    _ => {
                        return ControlFlow::Break(format!(
                            "`{table}` reads outside the dataset: the dataset is the table \
                             `{TABLE}`"
                        ));
                    }
                },
                _ => {
                    return ControlFlow::Break("only SELECT queries are allowed".to_owned());
                }
            }
        }
        ControlFlow::Continue(deepest)
    }
}

fn simple_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [one] => one.as_ident().map(|i| i.value.clone()),
        _ => None,
    }
}

impl Visitor for Guard {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        // A query's CTEs are visible in its body and in the CTEs themselves.
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_lowercase());
            }
        }
        let set_depth = self.check_body(&query.body)?;
        // The outermost query is level zero; every nested one counts.
        let levels = usize::from(self.queries > 0) + set_depth;
        self.queries += 1;
        self.enter(levels);
        self.entered.push(levels);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<String> {
        self.queries -= 1;
        let levels = self.entered.pop().unwrap_or(0);
        self.depth -= levels;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &sqlparser::ast::Expr) -> ControlFlow<String> {
        self.nodes += 1;
        self.enter(1);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &sqlparser::ast::Expr) -> ControlFlow<String> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

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
                Some(n) if self.allowed(&n) => ControlFlow::Continue(()),
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
mod tests;
