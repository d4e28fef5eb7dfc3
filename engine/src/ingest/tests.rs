//! Ingest against files in the shapes real exports take; expected values are
//! computed from the generated rows.

use super::*;

fn limits() -> Limits {
    Limits {
        max_line_bytes: 1 << 20,
        max_columns: 100,
        max_json_depth: 16,
    }
}

struct Run {
    ingested: Ingested,
    frame: DataFrame,
}

fn run(bytes: &[u8], format: DatasetFormat, options: &IngestOptions) -> Result<Run, IngestError> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("upload");
    std::fs::write(&input, bytes).unwrap();
    let output = dir.path().join("typed.parquet");
    let ingested = ingest(&input, format, options, &limits(), dir.path(), &output)?;
    let frame = ParquetReader::new(std::fs::File::open(&output).unwrap())
        .finish()
        .unwrap();
    Ok(Run { ingested, frame })
}

fn types(r: &Run) -> Vec<(&str, &str)> {
    r.ingested
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.r#type.as_str()))
        .collect()
}

fn csv(bytes: &[u8]) -> Run {
    run(bytes, DatasetFormat::Csv, &IngestOptions::default()).unwrap()
}

#[test]
fn na_markers_make_numbers_and_iso_text_makes_dates_and_datetimes() {
    let r = csv(b"\"\",\"carrier\",\"delay\",\"day\",\"at\",\"local\"\n\
          \"1\",\"UA\",2.5,\"2013-01-01\",2013-01-01T10:00:00Z,2013-01-01 10:00:00\n\
          \"2\",\"AA\",NA,\"2013-01-02\",2013-01-02T11:30:00Z,2013-01-02 11:30:00\n\
          \"3\",\"B6\",N/A,NA,NA,NA\n\
          \"4\",\"DL\",-4,\"2013-01-04\",2013-01-04T00:00:00Z,2013-01-04 00:00:00\n");
    assert_eq!(
        types(&r),
        [
            ("", "int64"),
            ("carrier", "string"),
            ("delay", "float64"),
            ("day", "date"),
            ("at", "datetime"),
            ("local", "datetime")
        ]
    );
    assert_eq!(r.ingested.rows, 4);
    let delay = r.frame.column("delay").unwrap();
    assert_eq!(delay.null_count(), 2);
    assert_eq!(
        delay.as_materialized_series().mean(),
        Some((2.5 - 4.0) / 2.0)
    );
}

#[test]
fn every_pandas_default_marker_is_missing() {
    let mut text = String::from("x\n1\n");
    for marker in quarry_domain::dataset::DEFAULT_NULL_VALUES {
        if !marker.is_empty() {
            text.push_str(marker);
            text.push('\n');
        }
    }
    let r = csv(text.as_bytes());
    assert_eq!(types(&r), [("x", "int64")]);
    assert_eq!(
        r.frame.column("x").unwrap().null_count(),
        quarry_domain::dataset::DEFAULT_NULL_VALUES.len() - 1
    );
}

#[test]
fn semicolons_decimal_commas_and_a_bom_read_as_excel_wrote_them() {
    let r = csv("\u{feff}Artikel;Preis;Menge\nÄpfel;1,25;3\nBirnen;2,5;NA\n".as_bytes());
    assert_eq!(
        types(&r),
        [
            ("Artikel", "string"),
            ("Preis", "float64"),
            ("Menge", "int64")
        ]
    );
    let sum: f64 = r
        .frame
        .column("Preis")
        .unwrap()
        .as_materialized_series()
        .sum()
        .unwrap();
    assert_eq!(sum, 3.75);
    assert_eq!(r.ingested.options.delimiter, Some(';'));
}

#[test]
fn overrides_keep_leading_zeros_and_bad_ones_name_the_column() {
    let options = IngestOptions {
        schema: [("zip".to_owned(), "string".to_owned())].into(),
        ..Default::default()
    };
    let r = run(b"zip,n\n01234,1\n00999,2\n", DatasetFormat::Csv, &options).unwrap();
    assert_eq!(types(&r), [("zip", "string"), ("n", "int64")]);
    let zips: Vec<Option<&str>> = r
        .frame
        .column("zip")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(zips, [Some("01234"), Some("00999")]);

    let bad = IngestOptions {
        schema: [("n".to_owned(), "int64".to_owned())].into(),
        ..Default::default()
    };
    match run(b"n\n1\nx\n", DatasetFormat::Csv, &bad) {
        Err(IngestError::Refused {
            kind: Refusal::Malformed,
            message,
        }) => {
            assert!(message.contains("not valid CSV"), "{message}")
        }
        other => panic!("{:?}", other.map(|r| r.ingested)),
    }
    let unknown = IngestOptions {
        schema: [("nope".to_owned(), "int64".to_owned())].into(),
        ..Default::default()
    };
    match run(b"n\n1\n", DatasetFormat::Csv, &unknown) {
        Err(IngestError::Refused {
            kind: Refusal::BadOption,
            message,
        }) => {
            assert!(
                message.contains("nope") && message.contains('n'),
                "{message}"
            )
        }
        other => panic!("{:?}", other.map(|r| r.ingested)),
    }
}

#[test]
fn a_type_change_after_the_inference_window_still_loads() {
    let mut text = String::from("x\n");
    for i in 0..(INFER_ROWS + 5) {
        text.push_str(&format!("{i}\n"));
    }
    text.push_str("2.5\n");
    let r = csv(text.as_bytes());
    assert_eq!(types(&r), [("x", "float64")]);
    assert_eq!(r.ingested.rows as usize, INFER_ROWS + 6);
}

#[test]
fn ndjson_and_parquet_are_copied_typed_with_overrides_as_casts() {
    let r = run(
        b"{\"k\":\"x\",\"v\":1}\n{\"k\":\"y\",\"v\":2.5}\n",
        DatasetFormat::Ndjson,
        &IngestOptions::default(),
    )
    .unwrap();
    assert_eq!(types(&r), [("k", "string"), ("v", "float64")]);

    // ISO text becomes date/datetime; a column with one non-date stays text.
    let r = run(
        b"{\"d\":\"2024-01-02\",\"t\":\"2024-01-02T10:00:00\",\"x\":\"2024-01-02\"}\n\
          {\"d\":null,\"t\":\"2024-01-03T11:30:00\",\"x\":\"soon\"}\n",
        DatasetFormat::Ndjson,
        &IngestOptions::default(),
    )
    .unwrap();
    assert_eq!(
        types(&r),
        [("d", "date"), ("t", "datetime"), ("x", "string")]
    );

    let mut df = df!("d" => ["2024-01-02", "2024-02-03"], "n" => [1i64, 2]).unwrap();
    let mut parquet = Vec::new();
    ParquetWriter::new(&mut parquet).finish(&mut df).unwrap();
    let options = IngestOptions {
        schema: [
            ("d".to_owned(), "date".to_owned()),
            ("n".to_owned(), "float64".to_owned()),
        ]
        .into(),
        ..Default::default()
    };
    let r = run(&parquet, DatasetFormat::Parquet, &options).unwrap();
    assert_eq!(types(&r), [("d", "date"), ("n", "float64")]);
}

#[test]
fn csv_only_options_on_other_formats_and_bad_delimiters_are_refused() {
    for (format, options) in [
        (
            DatasetFormat::Ndjson,
            IngestOptions {
                delimiter: Some(';'),
                ..Default::default()
            },
        ),
        (
            DatasetFormat::Csv,
            IngestOptions {
                delimiter: Some('a'),
                ..Default::default()
            },
        ),
        (
            DatasetFormat::Csv,
            IngestOptions {
                sheet: Some("x".into()),
                ..Default::default()
            },
        ),
    ] {
        assert!(matches!(
            run(b"a\n1\n", format, &options),
            Err(IngestError::Refused {
                kind: Refusal::BadOption,
                ..
            })
        ));
    }
}
