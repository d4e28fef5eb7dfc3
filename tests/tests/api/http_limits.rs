//! The HTTP surface holds under bad input: bodies are bounded (uploads excepted),
//! every refusal under `/api/v1` has the JSON error shape, result pages are bounded in
//! cells, sorted pages come from one sort, and CSV downloads stream.

use crate::jobs::result_page;
use quarry_tests::fixtures::mixed_csv;
use quarry_tests::{Quarry, eventually};
use serde_json::{Value, json};
use std::time::Duration;

const MIB: usize = 1 << 20;

/// Fast leases and idling so jobs finish in seconds.
const FAST: [(&str, &str); 4] = [
    ("QUARRY_QUEUE__VISIBILITY_TIMEOUT_SECS", "3"),
    ("QUARRY_WORKER__HEARTBEAT_SECS", "1"),
    ("QUARRY_WORKER__IDLE_TIMEOUT_SECS", "3"),
    ("QUARRY_FLEET__TICK_SECS", "1"),
];

/// Asserts the API's error shape and returns `(code, message)`.
async fn error_of(r: reqwest::Response, status: u16) -> (String, String) {
    assert_eq!(r.status(), status, "{:?}", r.headers());
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = r.json().await.unwrap();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!code.is_empty() && !message.is_empty(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    (code, message)
}

/// Runs a SQL analysis of `dataset` to success and returns the job id.
async fn sql_result(q: &Quarry, dataset: &str, query: &str) -> String {
    let r = q
        .http
        .post(q.url("/api/v1/jobs"))
        .bearer_auth(&q.admin_token)
        .json(&json!({"dataset_id": dataset, "analysis": {"kind": "sql", "query": query}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(120), "the job to succeed", || async {
        let job: Value = q.get_json(&format!("/api/v1/jobs/{id}")).await;
        let status = job["status"].as_str().unwrap().to_owned();
        assert!(
            status != "failed" && status != "cancelled",
            "job {id}: {job}"
        );
        (status == "succeeded").then_some(())
    })
    .await;
    id
}

/// A client that opens a connection per request: the server closes a connection
/// whose body it refused, so it must not be reused.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Sends a request with an oversized body until the server's answer arrives (it may
/// close the connection before the client has sent everything, and then the client
/// sees a reset instead of the answer). An error answer says the connection is closed.
/// How many times [`answer_to_oversized`] sends before it gives up.
const TRIES: usize = 100;

async fn answer_to_oversized(
    what: &str,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> reqwest::Response {
    // On loopback most tries lose the race (one in 13 runs saw ten in a row lost):
    // each costs milliseconds, so try many.
    for _ in 0..TRIES {
        match request().send().await {
            Ok(r) if r.status() == 413 && r.headers()["content-type"] == "application/json" => {
                assert_eq!(r.headers()["connection"], "close", "{what}");
                return r;
            }
            Ok(r) => return r,
            Err(e) => assert!(e.is_request() || e.is_body(), "{what}: {e}"),
        }
    }
    panic!("{what}: no answer to an oversized body in {TRIES} tries");
}

#[tokio::test]
async fn api_bodies_over_one_mib_are_refused_with_413_but_uploads_are_not() {
    let q = Quarry::start().await;
    let client = unpooled();
    let post_jobs = || {
        client
            .post(q.url("/api/v1/jobs"))
            .bearer_auth(&q.admin_token)
            .header("content-type", "application/json")
    };
    let r = answer_to_oversized("declared length", || post_jobs().body(vec![b' '; MIB + 1])).await;
    let (code, message) = error_of(r, 413).await;
    assert_eq!(code, "too_large");
    assert!(message.contains("1048576"), "{message}");

    // Without a declared length (chunked) the limit holds all the same.
    let chunked = || {
        reqwest::Body::wrap_stream(futures::stream::iter(
            (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024]))),
        ))
    };
    let r = answer_to_oversized("chunked", || post_jobs().body(chunked())).await;
    assert_eq!(error_of(r, 413).await.0, "too_large");

    // Just under the limit, the body is read (and is bad JSON).
    let r = q
        .http
        .post(q.url("/api/v1/jobs"))
        .bearer_auth(&q.admin_token)
        .header("content-type", "application/json")
        .body(vec![b' '; MIB - 1])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r, 400).await.0, "bad_json");

    // A 3 MiB upload goes through.
    let mut csv = String::from("k,v\n");
    while csv.len() < 3 * MIB {
        csv.push_str("some-key,12345\n");
    }
    q.upload_csv(&q.admin_token, "big", csv).await;
    q.assert_healthy("api bodies over one mib are refused with 413 but uploads are not")
        .await;
}

#[tokio::test]
async fn every_refusal_under_the_api_has_the_error_shape_and_says_what_to_fix() {
    let q = Quarry::start().await;
    let get = |path: &str| q.http.get(q.url(path)).bearer_auth(&q.admin_token).send();

    let (code, message) = error_of(get("/api/v1/jobs?limit=ten").await.unwrap(), 400).await;
    assert_eq!(code, "bad_query");
    assert!(message.contains("limit"), "{message}");

    let (code, message) = error_of(get("/api/v1/jobs?limit=-1").await.unwrap(), 400).await;
    assert_eq!(code, "bad_query");
    assert!(message.contains("limit"), "{message}");

    let (code, message) =
        error_of(get("/api/v1/jobs/x/result?format=xml").await.unwrap(), 400).await;
    assert_eq!(code, "bad_query");
    assert!(
        message.contains("json") && message.contains("csv"),
        "{message}"
    );

    let (code, message) = error_of(get("/api/v1/jobs/x/result?offset=a").await.unwrap(), 400).await;
    assert_eq!(code, "bad_query");
    assert!(message.contains("offset"), "{message}");

    let r = q
        .http
        .put(q.url("/api/v1/jobs"))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let (code, message) = error_of(r, 405).await;
    assert_eq!(code, "method_not_allowed");
    assert!(
        message.contains("PUT is not allowed on /api/v1/jobs") && message.contains("Allow"),
        "{message}"
    );

    let r = q
        .http
        .delete(q.url("/api/v1/system"))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r, 405).await.0, "method_not_allowed");

    let (code, message) = error_of(get("/api/v1/no/such/route").await.unwrap(), 404).await;
    assert_eq!(code, "not_found");
    assert!(message.contains("openapi.json"), "{message}");

    // Unauthenticated refusals too.
    let r = q.http.get(q.url("/api/v1/jobs")).send().await.unwrap();
    assert_eq!(error_of(r, 401).await.0, "unauthorized");
    q.assert_healthy("every refusal under the api has the error shape and says what to fix")
        .await;
}

#[tokio::test]
async fn form_and_server_function_bodies_are_limited_but_the_upload_form_is_not() {
    let q = Quarry::start().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let big_form = format!("token={}", "x".repeat(2 * MIB));
    let client = unpooled();
    let post_form = |path: &str| {
        client
            .post(q.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big_form.clone())
    };
    let r = answer_to_oversized("sign-in form", || post_form("/session")).await;
    assert_eq!(r.status(), 413, "sign-in form");
    let r = answer_to_oversized("server function", || post_form("/api/current_user")).await;
    assert_eq!(error_of(r, 413).await.0, "too_large", "server function");

    // A server function with a small body still works (and asks for a session).
    let r = no_redirects
        .post(q.url("/api/current_user"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 413);

    let r = no_redirects
        .post(q.url("/session"))
        .form(&[("token", q.admin_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "sign-in");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let mut csv = String::from("k,v\n");
    while csv.len() < 2 * MIB {
        csv.push_str("form-key,1\n");
    }
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(csv.into_bytes()).file_name("form.csv"),
    );
    let r = no_redirects
        .post(q.url("/datasets/upload"))
        .header("cookie", cookie)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("uploaded=form"), "{location}");
    q.assert_healthy("form and server function bodies are limited but the upload form is not")
        .await;
}

#[tokio::test]
async fn a_wide_result_is_paged_by_cells_and_the_page_says_its_limit() {
    let q = Quarry::start_with(&FAST).await;
    let width = 40;
    let header: Vec<String> = (0..width).map(|c| format!("c{c}")).collect();
    let mut csv = header.join(",") + "\n";
    for row in 0..3_000 {
        let cells: Vec<String> = (0..width).map(|c| (row * width + c).to_string()).collect();
        csv.push_str(&(cells.join(",") + "\n"));
    }
    let dataset = q.upload_csv(&q.admin_token, "wide", csv).await;
    let id = sql_result(&q, &dataset, "SELECT * FROM data").await;

    let p = result_page(&q, &id, "?limit=10000").await;
    assert_eq!(p["limit"], 100_000 / width);
    assert_eq!(p["rows"].as_array().unwrap().len(), 2_500);
    assert_eq!(p["total_rows"], 3_000);
    let p = result_page(&q, &id, "?limit=10").await;
    assert_eq!(
        (p["limit"].as_u64(), p["rows"].as_array().unwrap().len()),
        (Some(10), 10)
    );
    // Sorted pages have the same bound.
    let p = result_page(&q, &id, "?limit=10000&sort=-c0").await;
    assert_eq!(p["limit"], 2_500);
    assert_eq!(p["rows"][0][0], 2_999 * width);
}

/// `(id, amount)` of a page's rows.
fn rows_of(p: &Value) -> Vec<(i64, Option<f64>)> {
    p["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_f64()))
        .collect()
}

#[tokio::test]
async fn sorted_pages_are_consistent_match_an_independent_sort_and_sort_once() {
    let q = Quarry::start_with(&FAST).await;
    let dataset = q
        .upload_csv(&q.admin_token, "sales", mixed_csv(20_000, 5))
        .await;
    let id = sql_result(&q, &dataset, "SELECT id, amount FROM data").await;

    // The result in its own order, then sorted here: descending, nulls last, ties
    // in the result's order.
    let mut unsorted = Vec::new();
    for offset in (0..20_000).step_by(5_000) {
        unsorted.extend(rows_of(
            &result_page(&q, &id, &format!("?offset={offset}&limit=5000")).await,
        ));
    }
    assert_eq!(unsorted.len(), 20_000);
    let mut expected = unsorted.clone();
    expected.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    assert!(expected.last().unwrap().1.is_none(), "the data has nulls");

    let mut sorted = Vec::new();
    for offset in (0..20_000).step_by(3_000) {
        let p = result_page(
            &q,
            &id,
            &format!("?offset={offset}&limit=3000&sort=-amount"),
        )
        .await;
        assert_eq!(
            (p["offset"].as_u64(), p["total_rows"].as_u64()),
            (Some(offset), Some(20_000))
        );
        sorted.extend(rows_of(&p));
    }
    assert_eq!(sorted, expected);

    // One sorted copy serves every page of that order.
    let cache = q.data_dir.path().join("cache").join("sorted");
    let copies = || {
        std::fs::read_dir(&cache)
            .map(|d| d.flatten().count())
            .unwrap_or(0)
    };
    assert_eq!(copies(), 1);
    let again = result_page(&q, &id, "?offset=6000&limit=3000&sort=-amount").await;
    assert_eq!(rows_of(&again).as_slice(), &expected[6_000..9_000]);
    assert_eq!(copies(), 1);
    let ascending = result_page(&q, &id, "?limit=5&sort=id").await;
    assert_eq!(
        rows_of(&ascending).iter().map(|r| r.0).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(copies(), 2);

    let r = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{id}/result?sort=-nope")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    let (code, message) = error_of(r, 400).await;
    assert_eq!(code, "unknown_column");
    assert!(message.contains("id, amount"), "{message}");
}

/// A float as polars writes it in CSV (`5.0`, `12.5`).
fn csv_float(text: &str) -> String {
    let v: f64 = text.parse().unwrap();
    let s = v.to_string();
    if s.contains('.') { s } else { format!("{s}.0") }
}

#[tokio::test]
async fn the_csv_download_streams_the_expected_text() {
    let q = Quarry::start_with(&FAST).await;
    let source = mixed_csv(30_000, 9);
    let mut expected = String::from("id,category,amount\n");
    for line in source.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let amount = if f[2].is_empty() {
            String::new()
        } else {
            csv_float(f[2])
        };
        expected.push_str(&format!("{},{},{amount}\n", f[0], f[1]));
    }
    let dataset = q.upload_csv(&q.admin_token, "sales", source).await;
    let id = sql_result(
        &q,
        &dataset,
        "SELECT id, category, amount FROM data ORDER BY id",
    )
    .await;
    let r = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{id}/result?format=csv")))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv");
    assert!(
        r.headers().get("content-length").is_none(),
        "streamed, not written whole first"
    );
    let text = r.text().await.unwrap();
    assert_eq!(text.len(), expected.len());
    assert!(text == expected, "the CSV differs from the expected text");
}

#[tokio::test]
async fn abandoned_csv_downloads_stop_and_leave_nothing_behind() {
    let q = Quarry::start_with(&FAST).await;
    let mut csv = String::from("a\n");
    for i in 0..1_000_000 {
        csv.push_str(&format!("{i}\n"));
    }
    let dataset = q.upload_csv(&q.admin_token, "long", csv).await;
    let id = sql_result(
        &q,
        &dataset,
        "SELECT a, a + 1 AS b, a * 3 AS c FROM data ORDER BY a",
    )
    .await;
    let url = q.url(&format!("/api/v1/jobs/{id}/result?format=csv"));

    // A slot is given back once the producer sees its client gone: until then a
    // download may be refused with 429, after that never.
    let download = || {
        eventually(Duration::from_secs(60), "a download slot", || async {
            let r = q
                .http
                .get(&url)
                .bearer_auth(&q.admin_token)
                .send()
                .await
                .unwrap();
            assert!([200, 429].contains(&r.status().as_u16()), "{}", r.status());
            (r.status() == 200).then_some(r)
        })
    };
    // More abandoned downloads than may run at once: each one's producer must stop
    // and give its slot back, or the last ones are never served.
    for _ in 0..12 {
        let mut r = download().await;
        let first = r.chunk().await.unwrap().unwrap();
        assert!(first.starts_with(b"a,b,c\n0,1,0\n"));
        drop(r);
    }
    let text = download().await.text().await.unwrap();
    assert_eq!(text.lines().count(), 1_000_001);
    assert!(text.ends_with("999999,1000000,2999997\n"));
    let leftovers: Vec<_> = std::fs::read_dir(q.data_dir.path().join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A user's open event streams are bounded (`auth.max_streams_per_user`): past it,
/// 429 with the error shape and the key to raise, while other users still stream; a
/// stream that ends gives its place back.
#[tokio::test]
async fn open_event_streams_are_bounded_per_user() {
    let mut vars = FAST.to_vec();
    vars.push(("QUARRY_AUTH__MAX_STREAMS_PER_USER", "3"));
    let q = Quarry::start_with(&vars).await;
    let ana = q.add_user("ana", "analyst").await;
    let bob = q.add_user("bob", "analyst").await;
    let spin = |token: String| {
        let q = &q;
        async move {
            let data = q.upload_csv(&token, "tiny", "a\n1\n2\n".to_owned()).await;
            let r = q
                .http
                .post(q.url("/api/v1/jobs"))
                .bearer_auth(token)
                .json(&json!({"dataset_id": data, "analysis": {"kind": "spin", "seconds": 4}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let job: Value = r.json().await.unwrap();
            job["id"].as_str().unwrap().to_owned()
        }
    };
    let job = spin(ana.clone()).await;
    let open = |token: &str| {
        q.http
            .get(q.url(&format!("/api/v1/jobs/{job}/events")))
            .bearer_auth(token.to_owned())
            .send()
    };
    let mut streams = Vec::new();
    for _ in 0..3 {
        let r = open(&ana).await.unwrap();
        assert_eq!(r.status(), 200);
        streams.push(r);
    }
    let (code, message) = error_of(open(&ana).await.unwrap(), 429).await;
    assert_eq!(code, "too_many_requests");
    assert!(
        message.contains("3 event streams open") && message.contains("auth.max_streams_per_user"),
        "{message}"
    );
    // Someone else's streams are their own.
    let bobs = spin(bob.clone()).await;
    let r = q
        .http
        .get(q.url(&format!("/api/v1/jobs/{bobs}/events")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The job ends, its streams end with it, and their places come back.
    for r in streams {
        tokio::time::timeout(Duration::from_secs(60), r.text())
            .await
            .expect("the stream ends with its job")
            .unwrap();
    }
    let r = eventually(Duration::from_secs(10), "a stream place back", || async {
        let r = open(&ana).await.unwrap();
        (r.status() == 200).then_some(r)
    })
    .await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
}
