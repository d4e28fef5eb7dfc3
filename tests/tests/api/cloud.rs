//! The cloud column against a real AWS emulator (moto's server on loopback) and a real
//! Postgres: every adapter alone, then the whole engine end to end.
//!
//! Emulator limits designed around: ECS `RunTask` records tasks but runs nothing, so
//! the tests start the worker processes themselves with the configuration the task
//! definition gives them, and check the `RunTask` calls the orchestrator made.

use quarry_core::aws::cloudwatch::CloudWatchMetrics;
use quarry_core::aws::s3::{PART_SIZE, S3BlobStore};
use quarry_core::aws::sqs::SqsQueue;
use quarry_core::blob::{BlobStore, conformance as blob_conformance};
use quarry_core::metrics::{Metrics, Sample};
use quarry_core::queue::{JobQueue, conformance as queue_conformance};
use quarry_tests::aws::Moto;
use quarry_tests::fixtures::{expected_means, mixed_csv};
use quarry_tests::{Quarry, eventually};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

mod drain;

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid_like())
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}", nanos % 0xffff_ffff_ffff)
}

#[tokio::test]
async fn sqs_queue_passes_the_queue_conformance_suite() {
    let moto = Moto::start().await;
    // SQS counts whole seconds: the shortest lease the suite can use is 2 s.
    let queue = SqsQueue::create(
        &moto.sdk().await,
        &unique("conformance"),
        Duration::from_secs(2),
        queue_conformance::MAX_RECEIVES,
    )
    .await
    .unwrap();
    assert_eq!(queue.max_receives(), queue_conformance::MAX_RECEIVES);
    queue_conformance::run_all(
        &queue,
        queue_conformance::Semantics {
            // Documented SQS difference: an earlier receipt may still work.
            refuses_stale_receipts: false,
        },
    )
    .await;
}

#[tokio::test]
async fn s3_blob_store_passes_the_blob_conformance_suite_and_signs_downloads() {
    let moto = Moto::start().await;
    let scratch = tempfile::tempdir().unwrap();
    let store = S3BlobStore::new(&moto.sdk().await, "conformance", true, scratch.path());
    store.ensure_bucket().await.unwrap();
    // Two and a half parts: a multipart upload with a short last part.
    blob_conformance::run_all(&store, PART_SIZE * 5 / 2).await;

    let data = blob_conformance::pattern(1000);
    store
        .put_stream(
            "results/signed.bin",
            Box::pin(futures::stream::iter([Ok(bytes::Bytes::from(
                data.clone(),
            ))])),
            u64::MAX,
        )
        .await
        .unwrap();
    let url = store
        .presigned_get("results/signed.bin", Duration::from_secs(60), "job.parquet")
        .await
        .unwrap()
        .expect("S3 signs download URLs");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let fetched = reqwest::get(&url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert!(
        fetched
            .headers()
            .get("content-disposition")
            .is_some_and(|v| v.to_str().unwrap().contains("job.parquet"))
    );
    assert_eq!(fetched.bytes().await.unwrap().to_vec(), data);
    // No upload was left half-done (the refused one was aborted).
    let uploads = moto
        .aws(&["s3api", "list-multipart-uploads", "--bucket", "conformance"])
        .await
        .unwrap();
    assert!(
        uploads["Uploads"].as_array().is_none_or(Vec::is_empty),
        "{uploads}"
    );
}

#[tokio::test]
async fn cloudwatch_metrics_are_published_and_read_back() {
    let moto = Moto::start().await;
    let metrics = CloudWatchMetrics::new(&moto.sdk().await, "staging");
    let since = quarry_core::clock::now_ms() - 60_000;
    for value in [2.0, 4.0] {
        metrics
            .record(&[Sample {
                name: "queue_visible",
                value,
            }])
            .await
            .unwrap();
    }
    let series = metrics.series("queue_visible", since).await.unwrap();
    assert!(!series.is_empty(), "read back from CloudWatch");
    let mean: f64 = series.iter().map(|(_, v)| v).sum::<f64>() / series.len() as f64;
    assert!((mean - 3.0).abs() < 1e-9, "one-minute averages: {series:?}");
    // Another environment's series is separate.
    let other = CloudWatchMetrics::new(&moto.sdk().await, "production");
    assert!(
        other
            .series("queue_visible", since)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A whole cloud environment on the emulator and a scratch Postgres database: the
/// resources the stack would create, and `quarry serve` configured like staging.
struct Cloud {
    moto: Moto,
    bucket: String,
    queue_url: String,
    dlq_url: String,
    cluster: String,
    quarry: Quarry,
    token: String,
}

impl Cloud {
    async fn start() -> Self {
        let moto = Moto::start().await;
        let sdk = moto.sdk().await;
        let bucket = unique("quarry-data");
        moto.aws(&["s3api", "create-bucket", "--bucket", &bucket])
            .await
            .unwrap();
        let queue = SqsQueue::create(&sdk, &unique("quarry-jobs"), Duration::from_secs(4), 2)
            .await
            .unwrap();
        let (subnet, group) = moto.network().await.unwrap();
        let cluster = unique("quarry");
        moto.aws(&[
            "ecs",
            "create-cluster",
            "--cluster-name",
            &cluster,
            "--capacity-providers",
            "FARGATE",
            "FARGATE_SPOT",
        ])
        .await
        .unwrap();
        let container = json!([{
            "name": "worker", "image": "quarry:test", "essential": true,
            "command": ["worker"], "memory": 2048, "cpu": 1024,
        }]);
        moto.aws(&[
            "ecs",
            "register-task-definition",
            "--family",
            "quarry-worker",
            "--requires-compatibilities",
            "FARGATE",
            "--network-mode",
            "awsvpc",
            "--cpu",
            "1024",
            "--memory",
            "2048",
            "--container-definitions",
            &container.to_string(),
        ])
        .await
        .unwrap();
        let admin = std::env::var("QUARRY_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let database = quarry_core::db::create_scratch_postgres(&admin)
            .await
            .unwrap();

        let mut env: Vec<(String, String)> = moto.env();
        for (k, v) in [
            ("QUARRY_ENV", "staging"),
            ("QUARRY_DATABASE__URL", database.as_str()),
            ("QUARRY_BLOB_STORE__BUCKET", bucket.as_str()),
            ("QUARRY_BLOB_STORE__PATH_STYLE", "true"),
            ("QUARRY_QUEUE__URL", queue.url()),
            ("QUARRY_QUEUE__VISIBILITY_TIMEOUT_SECS", "4"),
            ("QUARRY_QUEUE__MAX_ATTEMPTS", "2"),
            ("QUARRY_WORKER__HEARTBEAT_SECS", "1"),
            ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "30"),
            ("QUARRY_WORKER__MEMORY_LIMIT_MB", "1024"),
            ("QUARRY_FLEET__TICK_SECS", "1"),
            ("QUARRY_FLEET__MAX_WORKERS", "3"),
            ("QUARRY_FLEET__ECS__CLUSTER", cluster.as_str()),
            ("QUARRY_FLEET__ECS__TASK_DEFINITION", "quarry-worker"),
            ("QUARRY_FLEET__ECS__SUBNETS", subnet.as_str()),
            ("QUARRY_FLEET__ECS__SECURITY_GROUPS", group.as_str()),
            ("QUARRY_FLEET__ECS__ON_DEMAND_BASE", "1"),
            ("QUARRY_FLEET__ECS__SPOT_SHARE", "100"),
            // These tests follow results through S3 (objects, signed downloads); a
            // small result would otherwise be kept in its job's row.
            ("QUARRY_ANALYSES__INLINE_RESULT_MAX_KB", "0"),
        ] {
            env.push((k.to_owned(), v.to_owned()));
        }
        let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let quarry = Quarry::serve_with(&vars).await;
        let token = quarry.add_user("ana", "operator").await;
        Self {
            bucket,
            queue_url: queue.url().to_owned(),
            dlq_url: queue.dead_letter_url().to_owned(),
            cluster,
            moto,
            quarry,
            token,
        }
    }

    async fn submit(&self, dataset: &str, analysis: Value) -> String {
        let r = self
            .quarry
            .http
            .post(self.quarry.url("/api/v1/jobs"))
            .bearer_auth(&self.token)
            .json(&json!({"dataset_id": dataset, "analysis": analysis}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .quarry
            .http
            .get(self.quarry.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    async fn wait_job(&self, id: &str, status: &str, within: Duration) -> Value {
        eventually(within, &format!("job {id} to be {status}"), || async {
            let job = self.get(&format!("/api/v1/jobs/{id}")).await;
            (job["status"] == status).then_some(job)
        })
        .await
    }

    async fn objects(&self, prefix: &str) -> Vec<String> {
        let listed = self
            .moto
            .aws(&[
                "s3api",
                "list-objects-v2",
                "--bucket",
                &self.bucket,
                "--prefix",
                prefix,
            ])
            .await
            .unwrap();
        listed["Contents"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|o| o["Key"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn queue_attribute(&self, url: &str, name: &str) -> u64 {
        let out = self
            .moto
            .aws(&[
                "sqs",
                "get-queue-attributes",
                "--queue-url",
                url,
                "--attribute-names",
                name,
            ])
            .await
            .unwrap();
        out["Attributes"][name].as_str().unwrap().parse().unwrap()
    }
}

#[tokio::test]
async fn cloud_column_runs_jobs_end_to_end() {
    let cloud = Cloud::start().await;
    let q = &cloud.quarry;

    // Upload: the bytes land in the bucket.
    let csv = mixed_csv(50_000, 5);
    let expected = expected_means(&csv);
    let dataset = q.upload_csv(&cloud.token, "sales", csv.clone()).await;
    let head = cloud
        .moto
        .aws(&[
            "s3api",
            "head-object",
            "--bucket",
            &cloud.bucket,
            "--key",
            &format!("datasets/{dataset}.csv"),
        ])
        .await
        .unwrap();
    assert_eq!(head["ContentLength"], csv.len());

    // The same data as Parquet, which polars reads from S3 in place.
    use polars::prelude::SerReader as _;
    let mut df = polars::prelude::CsvReadOptions::default()
        .with_has_header(true)
        .into_reader_with_file_handle(std::io::Cursor::new(csv.clone().into_bytes()))
        .finish()
        .unwrap();
    let mut parquet = Vec::new();
    polars::prelude::ParquetWriter::new(&mut parquet)
        .finish(&mut df)
        .unwrap();
    let r = q
        .http
        .post(q.url("/api/v1/datasets?name=sales-parquet"))
        .bearer_auth(&cloud.token)
        .header("content-type", "application/vnd.apache.parquet")
        .body(parquet)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let parquet_dataset = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mean_by_category = json!({"kind": "aggregate", "group_by": ["category"],
        "aggregations": [{"column": "amount", "op": "mean"}], "order_by": ["category"]});
    let jobs = [
        cloud.submit(&dataset, mean_by_category.clone()).await,
        cloud.submit(&parquet_dataset, mean_by_category).await,
    ];

    // A browser follows the first job from before any worker runs; on Postgres its
    // changes reach the stream by LISTEN/NOTIFY.
    let follow = tokio::spawn({
        let request = q
            .http
            .get(q.url(&format!("/api/v1/jobs/{}/events", jobs[0])))
            .bearer_auth(&cloud.token);
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    });

    // The orchestrator sees two waiting jobs and launches two workers with RunTask:
    // the on-demand base of one on FARGATE, the other on FARGATE_SPOT.
    let _orchestrator = q.spawn(&["orchestrator"]);
    let tasks = eventually(Duration::from_secs(30), "RunTask calls", || async {
        let listed = cloud
            .moto
            .aws(&[
                "ecs",
                "list-tasks",
                "--cluster",
                &cloud.cluster,
                "--started-by",
                "quarry-staging",
            ])
            .await
            .unwrap();
        let arns: Vec<String> = listed["taskArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        (arns.len() >= 2).then_some(arns)
    })
    .await;
    let mut args = vec![
        "ecs",
        "describe-tasks",
        "--cluster",
        &cloud.cluster,
        "--tasks",
    ];
    args.extend(tasks.iter().map(String::as_str));
    let described = cloud.moto.aws(&args).await.unwrap();
    let mut providers: BTreeMap<String, u32> = BTreeMap::new();
    for task in described["tasks"].as_array().unwrap() {
        *providers
            .entry(
                task["capacityProviderName"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
            .or_default() += 1;
        assert!(
            task["taskDefinitionArn"]
                .as_str()
                .unwrap()
                .contains("quarry-worker")
        );
    }
    assert_eq!(
        providers,
        BTreeMap::from([("FARGATE".to_owned(), 1), ("FARGATE_SPOT".to_owned(), 1)]),
        "one on-demand base task, the rest on Spot, and no more than the queue needs"
    );

    // The emulator runs no containers: start the workers the tasks would have run.
    let _workers = [q.spawn(&["worker"]), q.spawn(&["worker"])];
    let mut follow = Some(follow);
    for id in &jobs {
        let done = cloud
            .wait_job(id, "succeeded", Duration::from_secs(120))
            .await;
        assert_eq!(done["attempts"], 1);
        if let Some(follow) = follow.take() {
            // Pushed, so well before the streams' own 30 s check.
            let text = tokio::time::timeout(Duration::from_secs(10), follow)
                .await
                .expect("the stream follows the job to its end soon after it finished")
                .unwrap();
            let statuses: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| {
                    serde_json::from_str::<Value>(d.trim()).unwrap()["job"]["status"].to_string()
                })
                .collect();
            assert_eq!(
                statuses.first().map(String::as_str),
                Some("\"queued\""),
                "{statuses:?}"
            );
            assert_eq!(
                statuses.last().map(String::as_str),
                Some("\"succeeded\""),
                "{statuses:?}"
            );
        }
        let page = cloud
            .get(&format!("/api/v1/jobs/{id}/result?limit=100"))
            .await;
        let got: BTreeMap<String, f64> = page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_f64().unwrap()))
            .collect();
        assert_eq!(got.len(), expected.len());
        for (category, mean) in &expected {
            assert!((got[category] - mean).abs() < 1e-6, "{category}");
        }
    }
    assert_eq!(
        cloud.objects("results/").await.len(),
        2,
        "each job's result is one object in the bucket"
    );

    // A Parquet download is a redirect to a short-lived signed S3 URL.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(q.url(&format!("/api/v1/jobs/{}/result?format=parquet", jobs[0])))
        .bearer_auth(&cloud.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&cloud.moto.endpoint) && location.contains("X-Amz-Expires=300"));
    let body = reqwest::get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..4], b"PAR1");

    // The orchestrator's metrics are in CloudWatch, readable with the AWS CLI.
    let start = time::OffsetDateTime::now_utc() - time::Duration::minutes(10);
    let end = time::OffsetDateTime::now_utc() + time::Duration::minutes(2);
    let fmt = &time::format_description::well_known::Rfc3339;
    let query = json!([
        {"Id": "launched", "ReturnData": true, "MetricStat": {
            "Metric": {"Namespace": "Quarry", "MetricName": "workers_launched",
                       "Dimensions": [{"Name": "Environment", "Value": "staging"}]},
            "Period": 600, "Stat": "Sum"}},
        {"Id": "waiting", "ReturnData": true, "MetricStat": {
            "Metric": {"Namespace": "Quarry", "MetricName": "queue_visible",
                       "Dimensions": [{"Name": "Environment", "Value": "staging"}]},
            "Period": 600, "Stat": "Maximum"}},
    ]);
    let data = cloud
        .moto
        .aws(&[
            "cloudwatch",
            "get-metric-data",
            "--metric-data-queries",
            &query.to_string(),
            "--start-time",
            &start.format(fmt).unwrap(),
            "--end-time",
            &end.format(fmt).unwrap(),
        ])
        .await
        .unwrap();
    // One 10-minute period covers the test; take the largest in case the window
    // straddles two.
    let largest = |id: &str| -> f64 {
        data["MetricDataResults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["Id"] == id)
            .map(|r| {
                r["Values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_f64)
                    .fold(0.0, f64::max)
            })
            .unwrap_or(0.0)
    };
    // At least the two launches checked above; moto walks its tasks on to STOPPED, so
    // the orchestrator may have launched again while jobs still waited.
    assert!(largest("launched") >= 2.0, "the RunTask launches: {data}");
    assert!(largest("waiting") >= 2.0, "the two waiting jobs: {data}");
}

#[tokio::test]
async fn killed_worker_on_sqs_is_redelivered_and_committed_once() {
    let cloud = Cloud::start().await;
    let q = &cloud.quarry;
    let dataset = q.upload_csv(&cloud.token, "tiny", mixed_csv(100, 1)).await;
    let id = cloud
        .submit(&dataset, json!({"kind": "spin", "seconds": 6}))
        .await;
    let mut first = q.spawn(&["worker"]);
    cloud
        .wait_job(&id, "running", Duration::from_secs(60))
        .await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    assert_eq!(
        cloud
            .queue_attribute(&cloud.queue_url, "ApproximateNumberOfMessagesNotVisible")
            .await,
        1,
        "the dead worker's lease still holds the message"
    );
    let _second = q.spawn(&["worker"]);
    let done = cloud
        .wait_job(&id, "succeeded", Duration::from_secs(90))
        .await;
    assert_eq!(
        done["attempts"], 2,
        "delivered again after the visibility timeout"
    );
    assert_eq!(
        cloud.objects(&format!("results/{id}.")).await.len(),
        1,
        "committed once"
    );
    eventually(Duration::from_secs(10), "the queue to drain", || async {
        let left = cloud
            .queue_attribute(&cloud.queue_url, "ApproximateNumberOfMessages")
            .await
            + cloud
                .queue_attribute(&cloud.queue_url, "ApproximateNumberOfMessagesNotVisible")
                .await;
        (left == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn crash_looping_job_lands_in_the_sqs_dead_letter_queue() {
    let cloud = Cloud::start().await;
    let q = &cloud.quarry;
    let dataset = q.upload_csv(&cloud.token, "tiny", mixed_csv(100, 2)).await;
    let id = cloud
        .submit(&dataset, json!({"kind": "spin", "seconds": 60}))
        .await;
    // maxReceiveCount is 2: two workers die holding it.
    for attempt in 1..=2 {
        let mut worker = q.spawn(&["worker"]);
        eventually(
            Duration::from_secs(60),
            &format!("attempt {attempt} to start"),
            || async {
                let job = cloud.get(&format!("/api/v1/jobs/{id}")).await;
                (job["status"] == "running" && job["attempts"] == attempt).then_some(())
            },
        )
        .await;
        worker.start_kill().unwrap();
        worker.wait().await.unwrap();
    }
    // The next receive finds the message over its limit: SQS moves it to the DLQ, and
    // the orchestrator turns the dead letter into a failed job the user can see.
    let _worker = q.spawn(&["worker"]);
    let _orchestrator = q.spawn(&["orchestrator"]);
    let failed = cloud.wait_job(&id, "failed", Duration::from_secs(60)).await;
    assert_eq!(failed["dead_letter"], true);
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{failed}"
    );
    let dead = cloud
        .queue_attribute(&cloud.dlq_url, "ApproximateNumberOfMessages")
        .await
        + cloud
            .queue_attribute(&cloud.dlq_url, "ApproximateNumberOfMessagesNotVisible")
            .await;
    assert_eq!(dead, 1, "the message is in the dead-letter queue");
}
