//! Guessing a CSV's dialect from its first lines: the delimiter, and whether numbers
//! use a decimal comma (Excel in much of Europe writes `1,5` between `;`).

use super::csv_scan::CsvScanner;

/// The delimiters tried, in order of preference on a tie.
pub const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Records looked at.
const RECORDS: usize = 50;

fn field_counts(sample: &str, delimiter: u8) -> Vec<usize> {
    let mut scanner = CsvScanner::new(delimiter, RECORDS);
    // The sample may end mid-record: only whole records count.
    let complete = sample.rfind('\n').map_or(sample, |end| &sample[..end + 1]);
    complete.bytes().for_each(|b| scanner.feed(b));
    scanner.finish();
    scanner.captured.iter().map(Vec::len).collect()
}

/// The delimiter that splits every sampled record into the same number of fields,
/// the most fields winning; `,` when nothing splits consistently.
pub fn delimiter(sample: &str) -> u8 {
    let mut best: Option<(u8, usize)> = None;
    for candidate in CANDIDATES {
        let counts = field_counts(sample, candidate);
        let Some(&first) = counts.first() else {
            continue;
        };
        let consistent = first > 1 && counts.iter().all(|&c| c == first);
        if consistent && best.is_none_or(|(_, n)| first > n) {
            best = Some((candidate, first));
        }
    }
    best.map_or(b',', |(d, _)| d)
}

fn is_number_with(field: &str, separator: char) -> bool {
    let body = field.trim().trim_start_matches(['-', '+']);
    let Some((whole, fraction)) = body.split_once(separator) else {
        return false;
    };
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// Whether the sample's numbers use a decimal comma: only when the delimiter is not
/// a comma, some fields look like `12,5` and none like `12.5`.
pub fn decimal_comma(sample: &str, delimiter: u8) -> bool {
    if delimiter == b',' {
        return false;
    }
    let mut scanner = CsvScanner::new(delimiter, RECORDS);
    sample.bytes().for_each(|b| scanner.feed(b));
    let fields = scanner.captured.iter().skip(1).flatten();
    let (mut comma, mut dot) = (0, 0);
    for field in fields {
        comma += usize::from(is_number_with(field, ','));
        dot += usize::from(is_number_with(field, '.'));
    }
    comma > 0 && dot == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_delimiter_is_found_and_quotes_do_not_fool_it() {
        assert_eq!(delimiter("a,b,c\n1,2,3\n"), b',');
        assert_eq!(delimiter("a;b\n\"x,y\";2\n\"p,q,r\";3\n"), b';');
        assert_eq!(delimiter("a\tb\n1\t2\n"), b'\t');
        assert_eq!(delimiter("a|b|c\n1|2|3\n"), b'|');
        assert_eq!(delimiter("only\n1\n2\n"), b',');
        // Decimal commas make `,` inconsistent; `;` wins.
        assert_eq!(delimiter("name;x\nA;1,5\nB;2\n"), b';');
    }

    #[test]
    fn decimal_commas_are_seen_only_without_decimal_points() {
        assert!(decimal_comma("a;b\nx;1,5\ny;-2,25\n", b';'));
        assert!(!decimal_comma("a;b\nx;1.5\ny;2,5\n", b';'));
        assert!(!decimal_comma("a,b\n\"1,5\",2\n", b','));
        assert!(!decimal_comma("a;b\nx;y\n", b';'));
    }
}
