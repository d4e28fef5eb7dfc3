//! Real-world files, typed the way pandas users expect: R and pandas exports with
//! `NA`, Excel CSVs (`;`, a BOM, decimal commas), Latin-1, ISO dates and datetimes,
//! Excel workbooks, and type overrides. Every expected value is computed here from
//! the generated rows, not by polars.

use crate::jobs::{env, submit_ok, wait_status};
use quarry_tests::Quarry;
use quarry_tests::fixtures::Lcg;
use serde_json::{Value, json};
use std::time::Duration;

pub(crate) async fn upload(
    q: &Quarry,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    q.http
        .post(q.url(&format!("/api/v1/datasets{query}")))
        .bearer_auth(&q.admin_token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn created(r: reqwest::Response) -> Value {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

fn types(dataset: &Value) -> Vec<(String, String)> {
    dataset["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn type_of(dataset: &Value, column: &str) -> String {
    types(dataset)
        .into_iter()
        .find(|(n, _)| n == column)
        .unwrap_or_else(|| panic!("no column {column} in {dataset}"))
        .1
}

/// Runs an analysis to success and returns the result's rows.
async fn run(q: &Quarry, dataset: &Value, analysis: Value) -> Vec<Vec<Value>> {
    let id = submit_ok(q, dataset["id"].as_str().unwrap(), analysis).await;
    wait_status(q, &id, "succeeded", Duration::from_secs(90)).await;
    let page: Value = q
        .get_json(&format!("/api/v1/jobs/{id}/result?limit=1000"))
        .await;
    page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// Flights as R's `write.csv` writes them: a quoted row-name column, quoted strings,
/// `NA` for missing numbers, dates as quoted ISO text.
fn r_write_csv(rows: usize) -> (String, Vec<Option<f64>>) {
    let mut rng = Lcg::new(11);
    let mut out = String::from("\"\",\"carrier\",\"dep_delay\",\"distance\",\"day\"\n");
    let mut delays = Vec::new();
    for i in 0..rows {
        let delay = (rng.below(10) != 0).then(|| rng.below(4000) as f64 / 10.0 - 50.0);
        delays.push(delay);
        let carrier = ["UA", "AA", "B6", "DL"][rng.below(4) as usize];
        let day = 1 + (i % 28);
        out.push_str(&format!(
            "\"{}\",\"{carrier}\",{},{},\"2013-02-{day:02}\"\n",
            i + 1,
            delay.map_or("NA".to_owned(), |d| d.to_string()),
            if i % 7 == 0 {
                "NA".to_owned()
            } else {
                (100 + i).to_string()
            },
        ));
    }
    (out, delays)
}

#[tokio::test]
async fn an_r_export_with_na_reads_numbers_as_numbers_dates_as_dates_and_mean_works() {
    let q = Quarry::start_with(&env(&[])).await;
    let (csv, delays) = r_write_csv(20_000);
    let dataset = created(upload(&q, "?name=flights-r", "text/csv", csv.into_bytes()).await).await;
    assert_eq!(type_of(&dataset, "carrier"), "string");
    assert_eq!(type_of(&dataset, "dep_delay"), "float64");
    assert_eq!(type_of(&dataset, "distance"), "int64");
    assert_eq!(type_of(&dataset, "day"), "date");
    assert_eq!(dataset["rows"], 20_000);
    assert!(dataset["stored_bytes"].as_u64().unwrap() > 0);

    let present: Vec<f64> = delays.iter().flatten().copied().collect();
    let mean = present.iter().sum::<f64>() / present.len() as f64;
    let rows = run(
        &q,
        &dataset,
        json!({"kind":"aggregate","aggregations":[
            {"column":"dep_delay","op":"mean"},{"column":"dep_delay","op":"count"},
            {"column":"day","op":"max"}]}),
    )
    .await;
    assert!(
        close(rows[0][0].as_f64().unwrap(), mean),
        "{rows:?} vs {mean}"
    );
    assert_eq!(
        rows[0][1],
        present.len() as u64,
        "NA is missing, not counted"
    );
    assert_eq!(rows[0][2], "2013-02-28");
}

#[tokio::test]
async fn pandas_exports_with_empty_missing_values_and_iso_datetimes_are_typed() {
    let q = Quarry::start_with(&env(&[])).await;
    // pandas' to_csv: an unnamed index column, empty fields for NaN, datetimes with
    // and without a zone.
    let mut csv = String::from(",ts,ts_utc,score\n");
    let mut scores = Vec::new();
    for i in 0..500u32 {
        let score = (i % 9 != 0).then(|| f64::from(i) * 0.25);
        scores.push(score);
        csv.push_str(&format!(
            "{i},{}-0{}-1{} 0{}:30:00,2013-01-01T1{}:00:00Z,{}\n",
            2013 + i % 3,
            1 + i % 9,
            i % 10,
            i % 10,
            i % 10,
            score.map_or(String::new(), |s| s.to_string())
        ));
    }
    let dataset = created(upload(&q, "?name=pandas", "text/csv", csv.into_bytes()).await).await;
    assert_eq!(type_of(&dataset, "ts"), "datetime");
    assert_eq!(type_of(&dataset, "ts_utc"), "datetime");
    assert_eq!(type_of(&dataset, "score"), "float64");
    let rows = run(
        &q,
        &dataset,
        json!({"kind":"sql","query":"SELECT EXTRACT(YEAR FROM ts) AS y, COUNT(score) AS n FROM data GROUP BY y ORDER BY y"}),
    )
    .await;
    let mut expected = std::collections::BTreeMap::<u32, u64>::new();
    for (i, s) in scores.iter().enumerate() {
        *expected.entry(2013 + i as u32 % 3).or_default() += u64::from(s.is_some());
    }
    let got: Vec<(u64, u64)> = rows
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect();
    let want: Vec<(u64, u64)> = expected
        .into_iter()
        .map(|(y, n)| (u64::from(y), n))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn an_excel_csv_with_a_bom_semicolons_and_decimal_commas_is_read_as_numbers() {
    let q = Quarry::start_with(&env(&[])).await;
    let mut body = vec![0xef, 0xbb, 0xbf];
    let mut text = String::from("Region;Umsatz;Menge\r\n");
    let mut total = 0.0;
    for i in 0..300u32 {
        let euros = f64::from(i) + 0.25;
        total += euros;
        text.push_str(&format!("R{};{},25;{}\r\n", i % 4, i, i % 13));
    }
    body.extend(text.into_bytes());
    let dataset = created(upload(&q, "?name=excel", "text/csv", body).await).await;
    assert_eq!(
        types(&dataset)[0].0,
        "Region",
        "the byte-order mark is not part of the first name"
    );
    assert_eq!(type_of(&dataset, "Umsatz"), "float64");
    assert_eq!(dataset["ingest"]["delimiter"], ";");
    assert_eq!(dataset["ingest"]["decimal_comma"], true);
    let rows = run(
        &q,
        &dataset,
        json!({"kind":"aggregate","aggregations":[{"column":"Umsatz","op":"sum"}]}),
    )
    .await;
    assert!(
        close(rows[0][0].as_f64().unwrap(), total),
        "{rows:?} vs {total}"
    );
}

#[tokio::test]
async fn a_latin1_file_is_refused_naming_the_option_and_read_with_it() {
    let q = Quarry::start_with(&env(&[])).await;
    // "München", "Zürich", "Besançon" in Latin-1.
    let body = b"city,n\nM\xfcnchen,1\nZ\xfcrich,2\nBesan\xe7on,3\n".to_vec();
    let r = upload(&q, "?name=cities", "text/csv", body.clone()).await;
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("encoding=latin1"), "{message}");
    assert!(
        q.blob_files().is_empty(),
        "nothing stored: {:?}",
        q.blob_files()
    );

    let dataset =
        created(upload(&q, "?name=cities&encoding=latin1", "text/csv", body.clone()).await).await;
    let rows = run(
        &q,
        &dataset,
        json!({"kind":"sql","query":"SELECT city FROM data ORDER BY n"}),
    )
    .await;
    let cities: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(cities, ["München", "Zürich", "Besançon"]);
    // The original is kept byte for byte for download.
    let original = q
        .http
        .get(q.url(&format!(
            "/api/v1/datasets/{}/download",
            dataset["id"].as_str().unwrap()
        )))
        .bearer_auth(&q.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(original.status(), 200);
    assert_eq!(original.bytes().await.unwrap().to_vec(), body);
}

#[tokio::test]
async fn an_xlsx_workbook_is_read_from_its_first_or_named_sheet() {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let q = Quarry::start_with(&env(&[])).await;
    let mut book = Workbook::new();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let first = book.add_worksheet().set_name("Sales").unwrap();
    first.write_string(0, 0, "day").unwrap();
    first.write_string(0, 1, "amount").unwrap();
    first.write_string(0, 2, "rep").unwrap();
    let mut total = 0.0;
    for i in 1..=40u32 {
        let d = ExcelDateTime::from_ymd(2024, 3, (i % 28 + 1) as u8).unwrap();
        first.write_datetime_with_format(i, 0, &d, &date).unwrap();
        let amount = f64::from(i) * 1.5;
        total += amount;
        first.write_number(i, 1, amount).unwrap();
        first
            .write_string(i, 2, ["Ann", "Bob"][i as usize % 2])
            .unwrap();
    }
    let second = book.add_worksheet().set_name("Targets").unwrap();
    second.write_string(0, 0, "target").unwrap();
    for i in 1..=5u32 {
        second.write_number(i, 0, f64::from(i * 100)).unwrap();
    }
    let bytes = book.save_to_buffer().unwrap();
    let xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

    let dataset = created(upload(&q, "?name=book", xlsx, bytes.clone()).await).await;
    assert_eq!(dataset["format"], "xlsx");
    assert_eq!(dataset["ingest"]["sheet"], "Sales");
    assert_eq!(type_of(&dataset, "day"), "date");
    assert_eq!(type_of(&dataset, "amount"), "float64");
    assert_eq!(dataset["rows"], 40);
    let rows = run(&q, &dataset, json!({"kind":"aggregate","aggregations":[{"column":"amount","op":"sum"},{"column":"day","op":"min"}]})).await;
    assert!(close(rows[0][0].as_f64().unwrap(), total));
    assert_eq!(rows[0][1], "2024-03-01");

    let targets =
        created(upload(&q, "?name=targets&sheet=Targets", xlsx, bytes.clone()).await).await;
    // Excel keeps every number as a float; whole numbers come in as integers, as
    // pandas' read_excel makes them.
    assert_eq!(types(&targets), [("target".to_owned(), "int64".to_owned())]);
    let r = upload(&q, "?name=nope&sheet=Missing", xlsx, bytes).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"].as_str().unwrap().contains("Targets"),
        "{e}"
    );
}

#[tokio::test]
async fn type_overrides_and_null_markers_apply_at_upload_and_on_retype() {
    let q = Quarry::start_with(&env(&[])).await;
    let csv = "zip,amount,flag\n01234,10,x\n00999,-,y\n12345,30,x\n".to_owned();
    // Unknown columns and types are 400s that name them; nothing is stored.
    for (query, says) in [
        ("?name=z&schema=%7B%22nope%22%3A%22string%22%7D", "nope"),
        ("?name=z&schema=%7B%22zip%22%3A%22text%22%7D", "float64"),
        ("?name=z&schema=not-json", "JSON object"),
        ("?name=z&delimiter=ab", "one character"),
        ("?name=z&encoding=ebcdic", "utf8 or latin1"),
    ] {
        let r = upload(&q, query, "text/csv", csv.clone().into_bytes()).await;
        assert_eq!(r.status(), 400, "{query}");
        let e: Value = r.json().await.unwrap();
        assert!(
            e["error"]["message"].as_str().unwrap().contains(says),
            "{query}: {e}"
        );
    }
    assert!(q.blob_files().is_empty());

    // `-` is not a default marker: amount is text until it is one.
    let d = created(
        upload(
            &q,
            "?name=z&schema=%7B%22zip%22%3A%22string%22%7D",
            "text/csv",
            csv.clone().into_bytes(),
        )
        .await,
    )
    .await;
    assert_eq!(type_of(&d, "zip"), "string");
    assert_eq!(type_of(&d, "amount"), "string");
    let id = d["id"].as_str().unwrap();
    let retype = |body: Value| {
        let q = &q;
        async move {
            q.http
                .post(q.url(&format!("/api/v1/datasets/{id}/retype")))
                .bearer_auth(&q.admin_token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    // A value that does not convert is a 422 naming the column; the dataset is unchanged.
    let r = retype(json!({"schema": {"amount": "int64"}})).await;
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"].as_str().unwrap().contains("amount"),
        "{e}"
    );

    let r = retype(json!({"schema": {"zip": "string"}, "null_values": ["-", ""]})).await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(type_of(&d, "amount"), "int64");
    assert_eq!(type_of(&d, "zip"), "string");
    let rows = run(&q, &d, json!({"kind":"sql","query":"SELECT zip, SUM(amount) AS s FROM data GROUP BY zip ORDER BY zip"})).await;
    assert_eq!(rows[0][0], "00999", "leading zeros are kept");
    assert_eq!(rows[0][1], Value::Null);
    assert_eq!(rows[1], [json!("01234"), json!(10)]);
    // One original and one typed copy: the re-type removed the copy it replaced.
    let stored: Vec<_> = q
        .blob_files()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/datasets/"))
        .collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
}
