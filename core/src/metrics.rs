//! The metrics port: time series for the engineering dashboards. The embedded adapter
//! keeps samples in the database; the cloud one sends them to CloudWatch.

use crate::clock::now_ms;
use crate::db::Db;
use crate::error::Result;
use async_trait::async_trait;
use std::fmt;

/// One named value at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub value: f64,
}

/// Where samples go, and where the dashboards read them back.
#[async_trait]
pub trait Metrics: Send + Sync + fmt::Debug {
    async fn record(&self, samples: &[Sample]) -> Result<()>;
    /// The samples of one series since `since_ms`, oldest first.
    async fn series(&self, name: &str, since_ms: i64) -> Result<Vec<(i64, f64)>>;
}

/// The embedded adapter: rows in `metric_samples`.
#[derive(Debug, Clone)]
pub struct DbMetrics {
    db: Db,
    environment: String,
}

impl DbMetrics {
    pub fn new(db: Db, environment: &str) -> Self {
        Self {
            db,
            environment: environment.to_owned(),
        }
    }
}

#[async_trait]
impl Metrics for DbMetrics {
    async fn record(&self, samples: &[Sample]) -> Result<()> {
        let at = now_ms();
        let mut tx = self.db.begin_write().await?;
        for s in samples {
            sqlx::query(
                "INSERT INTO metric_samples (name, environment, at, value) VALUES ($1, $2, $3, $4)",
            )
            .bind(s.name)
            .bind(&self.environment)
            .bind(at)
            .bind(s.value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn series(&self, name: &str, since_ms: i64) -> Result<Vec<(i64, f64)>> {
        Ok(sqlx::query_as(
            "SELECT at, value FROM metric_samples WHERE environment = $1 AND name = $2 AND at >= $3 ORDER BY at",
        )
        .bind(&self.environment)
        .bind(name)
        .bind(since_ms)
        .fetch_all(self.db.pool())
        .await?)
    }
}
