//! The malformed-upload corpus (`tests/corpus/`) and the generated bombs, against the
//! real binary: each gets its specific 4xx with a message, the server stays up, and
//! nothing is stored.

use crate::ingest::{created, upload};
use quarry_tests::Quarry;
use serde_json::Value;
use std::io::Write as _;
use std::path::Path;

fn corpus(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn media_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("parquet") => "application/vnd.apache.parquet",
        Some("ndjson") => "application/x-ndjson",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "text/csv",
    }
}

/// Uploads `body` and checks the refusal, the server's health and that nothing stayed.
async fn refused(
    q: &Quarry,
    what: &str,
    content_type: &str,
    body: Vec<u8>,
    status: u16,
    says: &str,
) {
    let r = upload(q, "?name=corpus", content_type, body).await;
    let got = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{what}: {text}");
    let e: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.to_lowercase().contains(&says.to_lowercase()),
        "{what}: `{message}` should mention `{says}`"
    );
    q.assert_healthy(what).await;
    assert!(
        q.blob_files().is_empty(),
        "{what}: left {:?}",
        q.blob_files()
    );
}

#[tokio::test]
async fn every_malformed_file_gets_its_4xx_and_leaves_nothing() {
    let q = Quarry::start().await;
    for (file, status, says) in [
        ("garbage.parquet", 422, "PAR1"),
        ("wrong-magic.parquet", 422, "PAR1"),
        ("csv-named-parquet.parquet", 422, "not a Parquet file"),
        ("bad-utf8.csv", 422, "encoding=latin1"),
        ("utf16.csv", 415, "UTF-16"),
        ("unbalanced-quotes.csv", 422, "never closed"),
        ("header-only.csv", 422, "no rows"),
        ("empty.csv", 400, "empty"),
        ("duplicate-columns.csv", 422, "appears twice"),
        ("ragged.csv", 422, "more fields than the header"),
        ("bare-cr.csv", 422, "carriage return"),
        ("nul.csv", 422, "NUL"),
        ("nested.ndjson", 422, "uploads.max_json_depth"),
        ("truncated.ndjson", 422, "not valid NDJSON"),
        ("gzip.csv", 415, "gzip"),
        ("zlib.ndjson", 415, "zlib"),
        ("zstd.ndjson", 415, "zstd"),
        ("zip.csv", 415, "zip"),
        ("not-a-workbook.xlsx", 422, "xlsx"),
    ] {
        refused(&q, file, media_type(file), corpus(file), status, says).await;
    }
    // A compressed transfer encoding of the body is refused as well.
    let r = q
        .http
        .post(q.url("/api/v1/datasets?name=enc"))
        .bearer_auth(&q.admin_token)
        .header("content-type", "text/csv")
        .header("content-encoding", "gzip")
        .body(corpus("gzip.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert!(q.blob_files().is_empty());

    // Odd but valid: a byte-order mark, mixed line endings.
    for file in ["ok-bom.csv", "ok-mixed-line-endings.csv"] {
        let d = created(upload(&q, &format!("?name={file}"), "text/csv", corpus(file)).await).await;
        assert_eq!(d["columns"][0]["name"], "id", "{file}");
        assert_eq!(d["columns"][1]["type"], "float64", "{file}");
    }
}

#[tokio::test]
async fn generated_bombs_and_giants_are_refused_before_they_cost_the_server() {
    let q = Quarry::start_with(&[("QUARRY_UPLOADS__INSPECT_MEMORY_MB", "256")]).await;
    let pid = q.pid();

    // 10,000 columns.
    let header: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
    let wide = format!("{}\n{}\n", header.join(","), vec!["1"; 10_000].join(","));
    refused(
        &q,
        "10k columns",
        "text/csv",
        wide.into_bytes(),
        413,
        "uploads.max_columns",
    )
    .await;

    // One 100 MB line.
    let mut line = vec![b'x'; 100 << 20];
    line.splice(0..0, b"a\n".iter().copied());
    refused(
        &q,
        "100 MB line",
        "text/csv",
        line,
        413,
        "uploads.max_line_bytes",
    )
    .await;

    // An NDJSON record nested 10^6 deep (the crash this issue began with).
    let depth = 1_000_000;
    let mut deep = Vec::with_capacity(depth * 2 + 8);
    deep.extend(std::iter::repeat_n(b'[', depth));
    deep.extend(std::iter::repeat_n(b']', depth));
    deep.push(b'\n');
    refused(
        &q,
        "10^6-deep JSON",
        "application/x-ndjson",
        deep,
        422,
        "uploads.max_json_depth",
    )
    .await;

    // A gzip bomb: 1 GiB of zeros in about a megabyte.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 4 << 20);
    refused(&q, "gzip bomb", "text/csv", bomb, 415, "gzip").await;

    // An .xlsx zip bomb: a sheet of millions of cells that compresses a thousandfold.
    let bomb = xlsx_bomb(6_000_000);
    assert!(bomb.len() < 8 << 20, "{} bytes", bomb.len());
    refused(
        &q,
        "xlsx bomb",
        media_type("x.xlsx"),
        bomb,
        413,
        "uploads.inspect_memory_mb",
    )
    .await;

    // The server itself never held any of it.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        rss_kb < 400 * 1024,
        "the server's peak memory was {rss_kb} kB"
    );
}

/// A minimal workbook whose one sheet holds `rows` rows of three numbers.
fn xlsx_bomb(rows: usize) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflate = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let files: [(&str, &str); 4] = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#,
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
        ),
        (
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Bomb" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
        ),
    ];
    for (name, body) in files {
        out.start_file(name, deflate).unwrap();
        out.write_all(body.as_bytes()).unwrap();
    }
    out.start_file("xl/worksheets/sheet1.xml", deflate).unwrap();
    out.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#).unwrap();
    let row = b"<row><c><v>1</v></c><c><v>2</v></c><c><v>3</v></c></row>";
    let mut chunk = Vec::with_capacity(row.len() * 10_000);
    for _ in 0..10_000 {
        chunk.extend_from_slice(row);
    }
    for _ in 0..rows / 10_000 {
        out.write_all(&chunk).unwrap();
    }
    out.write_all(b"</sheetData></worksheet>").unwrap();
    out.finish().unwrap().into_inner()
}
