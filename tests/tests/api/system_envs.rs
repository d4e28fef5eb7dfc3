//! The System page's environment picker: a local server reads each stack environment's
//! series from CloudWatch (moto's server here) for that environment's dimension, with
//! the same graphs as its own; an unknown environment is not found, and a CloudWatch
//! that cannot be reached empties the graphs with a message instead of failing.

use quarry_core::aws::cloudwatch::CloudWatchMetrics;
use quarry_core::metrics::{Metrics, Sample};
use quarry_tests::Quarry;
use quarry_tests::aws::Moto;
use serde_json::Value;

/// The `system_graphs` server function as the cookie's user: status and body.
async fn graphs(q: &Quarry, cookie: &str, environment: Option<&str>) -> (u16, Value) {
    let mut form = vec![("minutes", "15")];
    form.extend(environment.map(|e| ("environment", e)));
    let r = q
        .http
        .post(q.url("/api/system_graphs"))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The points of one line of one graph.
fn points(charts: &Value, graph: &str, line: &str) -> Vec<f64> {
    let graph = charts["graphs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["title"] == graph)
        .unwrap_or_else(|| panic!("graph {graph} in {charts}"));
    let series = graph["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == line)
        .unwrap_or_else(|| panic!("line {line} in {graph}"));
    series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect()
}

fn titles(charts: &Value) -> Vec<String> {
    charts["graphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_lead_reads_each_stack_environments_cloudwatch_series_from_a_local_server() {
    let moto = Moto::start().await;
    let sdk = moto.sdk().await;
    // What staging's and production's orchestrators publish (PutMetricData, dimension
    // Environment=<name>).
    for (environment, depth, workers) in [("staging", 7.0, 2.0), ("production", 3.0, 5.0)] {
        CloudWatchMetrics::new(&sdk, environment)
            .record(&[
                Sample {
                    name: "queue_visible",
                    value: depth,
                },
                Sample {
                    name: "workers_running",
                    value: workers,
                },
            ])
            .await
            .unwrap();
    }
    let env = moto.env();
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let q = Quarry::start_with(&vars).await;
    let lee = q.add_user("lee", "lead").await;
    let cookie = q.session_cookie(&lee).await;

    let (status, local) = graphs(&q, &cookie, None).await;
    assert_eq!(status, 200, "{local}");
    assert_eq!(local["environment"], "local", "local is the default");
    assert_eq!(
        local["environments"],
        serde_json::json!(["local", "staging", "production"])
    );
    assert_eq!(local["origin"], "database samples of `local`");

    let (status, staging) = graphs(&q, &cookie, Some("staging")).await;
    assert_eq!(status, 200, "{staging}");
    assert_eq!(staging["environment"], "staging");
    assert_eq!(staging["origin"], "CloudWatch, us-east-1");
    assert!(staging["unavailable"].is_null(), "{staging}");
    assert_eq!(titles(&staging), titles(&local), "the same graphs");
    assert_eq!(points(&staging, "Queue depth", "waiting"), [7.0]);
    assert_eq!(points(&staging, "Workers", "running"), [2.0]);
    assert!(points(&staging, "Queue depth", "dead").is_empty());

    let (status, production) = graphs(&q, &cookie, Some("production")).await;
    assert_eq!(status, 200, "{production}");
    assert_eq!(points(&production, "Queue depth", "waiting"), [3.0]);
    assert_eq!(points(&production, "Workers", "running"), [5.0]);

    let (status, unknown) = graphs(&q, &cookie, Some("qa")).await;
    assert_eq!(status, 404, "{unknown}");
    assert!(
        unknown
            .to_string()
            .contains("no environment `qa`: use one of local, staging, production"),
        "{unknown}"
    );

    // The page itself: the picker's links, the chosen environment, its origin.
    let page = q
        .http
        .get(q.url("/system?env=staging&range=15m"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for link in [
        "/system?env=local&amp;range=15m",
        "/system?env=staging&amp;range=15m",
        "/system?env=production&amp;range=15m",
    ] {
        assert!(html.contains(link), "{link} in the picker");
    }
    assert!(html.contains("data-environment=\"staging\""));
    assert!(html.contains("CloudWatch, us-east-1"));
    let page = q
        .http
        .get(q.url("/system?env=qa"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404, "an unknown environment's page");
    q.assert_healthy("an unknown environment").await;
}

#[tokio::test]
async fn an_unreachable_cloudwatch_empties_the_graphs_with_a_message_not_a_500() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let q = Quarry::start_with(&[
        ("AWS_ENDPOINT_URL", &endpoint),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ])
    .await;
    let lee = q.add_user("lee", "lead").await;
    let cookie = q.session_cookie(&lee).await;
    let (status, staging) = graphs(&q, &cookie, Some("staging")).await;
    assert_eq!(status, 200, "{staging}");
    let why = staging["unavailable"].as_str().expect("a message");
    assert!(
        why.starts_with("The metrics of `staging` (CloudWatch, us-east-1) could not be read"),
        "{why}"
    );
    assert!(!why.contains(&endpoint), "no SDK detail: {why}");
    assert_eq!(titles(&staging).len(), 6, "the graphs are still there");
    assert!(points(&staging, "Queue depth", "waiting").is_empty());
    q.assert_healthy("an unreachable CloudWatch").await;
}
