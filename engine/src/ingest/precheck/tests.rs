//! The prechecks on hand-made bytes in every refused shape.

use super::*;

fn limits() -> Limits {
    Limits {
        max_line_bytes: 1000,
        max_columns: 5,
        max_json_depth: 4,
    }
}

fn run(bytes: &[u8], kind: TextKind, options: &IngestOptions) -> Result<Text, IngestError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in");
    std::fs::write(&path, bytes).unwrap();
    let text = text(&path, kind, options, &limits(), dir.path());
    // Keep the rewrite readable after the directory goes.
    text.map(|t| {
        let body = std::fs::read(&t.path).unwrap();
        let keep = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(keep.path(), body).unwrap();
        Text {
            path: keep.path().to_owned(),
            _rewrite: Some(keep),
            ..t
        }
    })
}

fn refusal(r: Result<Text, IngestError>) -> (Refusal, String) {
    match r {
        Err(IngestError::Refused { kind, message }) => (kind, message),
        Err(IngestError::Internal(e)) => panic!("internal: {e:#}"),
        Err(IngestError::Unparsable(e)) => panic!("polars: {e}"),
        Ok(t) => panic!("accepted: {:?}", t.options),
    }
}

#[test]
fn excel_bom_semicolons_and_decimal_commas_are_detected_and_rewritten() {
    let t = run(
        b"\xef\xbb\xbfname;amount\nA;1,5\nB;2,25\n",
        TextKind::Csv,
        &IngestOptions::default(),
    )
    .unwrap();
    assert_eq!(t.options.delimiter, Some(';'));
    assert_eq!(t.options.decimal_comma, Some(true));
    assert_eq!(t.header, ["name", "amount"]);
    assert_eq!(
        std::fs::read(&t.path).unwrap(),
        b"name;amount\nA;1,5\nB;2,25\n"
    );
}

#[test]
fn latin1_is_refused_naming_the_option_and_read_when_declared() {
    let bytes = b"city,n\nM\xfcnchen,1\n";
    let (kind, message) = refusal(run(bytes, TextKind::Csv, &IngestOptions::default()));
    assert_eq!(kind, Refusal::Malformed);
    assert!(
        message.contains("encoding=latin1") && message.contains("line 2"),
        "{message}"
    );
    let latin1 = IngestOptions {
        encoding: Some(Encoding::Latin1),
        ..Default::default()
    };
    let t = run(bytes, TextKind::Csv, &latin1).unwrap();
    assert_eq!(
        std::fs::read_to_string(&t.path).unwrap(),
        "city,n\nMünchen,1\n"
    );
}

#[test]
fn hostile_shapes_are_refused_with_what_to_fix() {
    let default = IngestOptions::default();
    for (bytes, kind, expect, says) in [
        (
            &b"\x1f\x8b\x08\x00rest"[..],
            TextKind::Csv,
            Refusal::Unsupported,
            "gzip",
        ),
        (
            b"\x28\xb5\x2f\xfdrest",
            TextKind::Csv,
            Refusal::Unsupported,
            "zstd",
        ),
        (
            b"\x78\x9crest",
            TextKind::Ndjson,
            Refusal::Unsupported,
            "zlib",
        ),
        (
            b"PK\x03\x04rest",
            TextKind::Csv,
            Refusal::Unsupported,
            "xlsx",
        ),
        (
            b"\xff\xfea\x00",
            TextKind::Csv,
            Refusal::Unsupported,
            "UTF-16",
        ),
        (
            b"a,b\n1,\"open\n",
            TextKind::Csv,
            Refusal::Malformed,
            "never closed",
        ),
        (
            b"a,a\n1,2\n",
            TextKind::Csv,
            Refusal::Malformed,
            "appears twice",
        ),
        (b"a,b\n", TextKind::Csv, Refusal::Malformed, "no rows"),
        (
            b"a,b,c,d,e,f\n1,2,3,4,5,6\n",
            TextKind::Csv,
            Refusal::TooLarge,
            "uploads.max_columns",
        ),
        (
            b"a\r1\r2\r",
            TextKind::Csv,
            Refusal::Malformed,
            "carriage return",
        ),
        (b"a,b\n1,\x002\n", TextKind::Csv, Refusal::Malformed, "NUL"),
        (
            b"{\"a\":[[[[[1]]]]]}\n",
            TextKind::Ndjson,
            Refusal::Malformed,
            "uploads.max_json_depth",
        ),
    ] {
        let (got, message) = refusal(run(bytes, kind, &default));
        assert_eq!(got, expect, "{message}");
        assert!(message.contains(says), "`{message}` should say {says}");
    }
    let long = format!("a\n{}\n", "x".repeat(1001));
    let (got, message) = refusal(run(long.as_bytes(), TextKind::Csv, &default));
    assert_eq!(got, Refusal::TooLarge);
    assert!(message.contains("uploads.max_line_bytes"), "{message}");
}

#[test]
fn depth_inside_strings_does_not_count_and_mixed_line_endings_pass() {
    let t = run(
        b"{\"a\":\"[[[[[[[[\"}\n{\"a\":\"\\\"[[[[[[\"}\n",
        TextKind::Ndjson,
        &IngestOptions::default(),
    );
    assert!(t.is_ok());
    let t = run(
        b"a,b\r\n1,2\n3,4\r\n",
        TextKind::Csv,
        &IngestOptions::default(),
    )
    .unwrap();
    assert_eq!(t.header, ["a", "b"]);
}

#[test]
fn utf8_split_across_chunks_is_valid() {
    let mut carry = Vec::new();
    let euro = "€".as_bytes();
    check_utf8(&mut carry, &euro[..1], 0, 1).unwrap();
    assert_eq!(carry.len(), 1);
    check_utf8(&mut carry, &euro[1..], 1, 1).unwrap();
    assert!(carry.is_empty());
}
