//! The parts of a statement either side runs: its parameters ([`Param`]), a
//! transaction's [`Step`]s and what each did ([`Done`]), and the rows it answers
//! ([`Row`], [`Cell`], [`stored_row!`]).

use sqlx::Row as _;
use sqlx::any::AnyRow;

/// A value bound to a statement's placeholder.
#[derive(Debug, Clone)]
pub enum Param<'a> {
    Int(i64),
    Real(f64),
    Text(&'a str),
    /// A text the statement owns (an id made for it).
    Owned(String),
    /// `NULL` of a text column.
    Null,
    /// Bytes, or `NULL` of a bytes column (a small result's Parquet).
    Blob(Option<bytes::Bytes>),
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Param::Null, Param::Text)
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value};
        Ok(match self {
            Param::Int(v) => ToSqlOutput::from(*v),
            Param::Real(v) => ToSqlOutput::from(*v),
            Param::Text(v) => ToSqlOutput::from(*v),
            Param::Owned(v) => ToSqlOutput::from(v.as_str()),
            Param::Null | Param::Blob(None) => ToSqlOutput::Owned(Value::Null),
            Param::Blob(Some(v)) => ToSqlOutput::from(v.as_ref()),
        })
    }
}

/// Whether a [`Step`] of a transaction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// Only if the step at this index (an earlier one) changed a row.
    Changed(usize),
    /// Only if the step at this index (an earlier one, [`Step::returning`]) returned
    /// this integer.
    Returned(usize, i64),
}

/// One statement of a [`Statements::transaction`].
#[derive(Debug, Clone)]
pub struct Step<'a> {
    pub sql: &'a str,
    pub params: Vec<Param<'a>>,
    pub when: When,
    /// The transaction is rolled back (and answers `None`) if this step changes
    /// nothing: a guarded update whose guard no longer holds.
    pub must_change: bool,
    /// The step ends in `RETURNING <one integer>`: its value is kept.
    pub returns: bool,
}

impl<'a> Step<'a> {
    pub fn new(sql: &'a str, params: Vec<Param<'a>>) -> Self {
        Self {
            sql,
            params,
            when: When::Always,
            must_change: false,
            returns: false,
        }
    }

    /// Rolls the transaction back unless this step changes a row.
    #[must_use]
    pub fn must_change(mut self) -> Self {
        self.must_change = true;
        self
    }

    /// Runs only if step `index` changed a row.
    #[must_use]
    pub fn after(mut self, index: usize) -> Self {
        self.when = When::Changed(index);
        self
    }

    /// Runs only if step `index` returned `value`.
    #[must_use]
    pub fn if_returned(mut self, index: usize, value: i64) -> Self {
        self.when = When::Returned(index, value);
        self
    }

    /// The statement returns one integer, kept as the step's value.
    #[must_use]
    pub fn returning(mut self) -> Self {
        self.returns = true;
        self
    }
}

/// What a step of a committed transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Done {
    /// Whether it ran (see [`When`]).
    pub ran: bool,
    /// The rows it changed (or returned).
    pub changed: u64,
    /// The integer it returned (see [`Step::returning`]).
    pub value: Option<i64>,
}

/// A column value either side can read.
pub trait Cell: Sized + rusqlite::types::FromSql {
    fn from_any(row: &AnyRow, index: usize) -> sqlx::Result<Self>;
}

impl Cell for i64 {
    fn from_any(row: &AnyRow, index: usize) -> sqlx::Result<Self> {
        row.try_get(index)
    }
}

impl Cell for String {
    fn from_any(row: &AnyRow, index: usize) -> sqlx::Result<Self> {
        row.try_get(index)
    }
}

impl Cell for f64 {
    fn from_any(row: &AnyRow, index: usize) -> sqlx::Result<Self> {
        row.try_get(index)
    }
}

impl<T: Cell> Cell for Option<T>
where
    for<'r> Option<T>: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    fn from_any(row: &AnyRow, index: usize) -> sqlx::Result<Self> {
        row.try_get(index)
    }
}

/// A statement's answer row, read by position.
pub trait Row: Sized {
    fn from_any(row: &AnyRow) -> sqlx::Result<Self>;
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

macro_rules! tuple_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Cell),+> Row for ($($t,)+) {
            fn from_any(row: &AnyRow) -> sqlx::Result<Self> {
                Ok(($($t::from_any(row, $i)?,)+))
            }
            fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(row.get::<_, $t>($i)?,)+))
            }
        }
    };
}

tuple_row!(A 0);
tuple_row!(A 0, B 1);
tuple_row!(A 0, B 1, C 2, D 3);
tuple_row!(A 0, B 1, C 2, D 3, E 4);
tuple_row!(A 0, B 1, C 2, D 3, E 4, F 5);

/// A struct of one row, read by sqlx (`FromRow`) or on the process's own connection
/// ([`Row`], by column name), with its fields written once.
macro_rules! stored_row {
    ($(#[$meta:meta])* struct $name:ident { $($field:ident: $ty:ty,)+ }) => {
        $(#[$meta])*
        #[derive(sqlx::FromRow)]
        struct $name {
            $($field: $ty,)+
        }

        impl $crate::db::statements::Row for $name {
            fn from_any(row: &sqlx::any::AnyRow) -> sqlx::Result<Self> {
                sqlx::FromRow::from_row(row)
            }
            fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok($name {
                    $($field: row.get(stringify!($field))?,)+
                })
            }
        }
    };
}
pub(crate) use stored_row;
