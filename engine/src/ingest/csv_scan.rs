//! A byte-at-a-time CSV tokenizer that follows polars' quoting rules closely enough
//! to count fields and records, find the header and notice a quote that never
//! closes, in one pass and bounded memory, before polars reads the file.

/// What the tokenizer knows so far.
#[derive(Debug, Clone)]
pub struct CsvScanner {
    delimiter: u8,
    in_quotes: bool,
    /// The previous byte closed a quoted field: a `"` now is an escaped quote.
    just_closed: bool,
    at_field_start: bool,
    /// Fields seen in the current record so far.
    fields: usize,
    /// Complete records so far.
    pub records: u64,
    /// The 1-based line being read.
    pub line: u64,
    /// The line a quoted field that is still open began on.
    pub quote_line: u64,
    /// The fields of each of the first records, when capturing.
    capture: usize,
    field: Vec<u8>,
    current: Vec<String>,
    pub captured: Vec<Vec<String>>,
}

/// The longest field text kept when capturing (header names, sniffing samples).
const CAPTURE_FIELD_BYTES: usize = 4096;

impl CsvScanner {
    /// A scanner that keeps the fields of the first `capture` records.
    pub fn new(delimiter: u8, capture: usize) -> Self {
        Self {
            delimiter,
            in_quotes: false,
            just_closed: false,
            at_field_start: true,
            fields: 0,
            records: 0,
            line: 1,
            quote_line: 0,
            capture,
            field: Vec::new(),
            current: Vec::new(),
            captured: Vec::new(),
        }
    }

    fn capturing(&self) -> bool {
        self.captured.len() < self.capture
    }

    fn push(&mut self, b: u8) {
        if self.capturing() && self.field.len() < CAPTURE_FIELD_BYTES {
            self.field.push(b);
        }
    }

    fn end_field(&mut self) {
        self.fields += 1;
        if self.capturing() {
            let text = String::from_utf8_lossy(&self.field).into_owned();
            self.current.push(text);
        }
        self.field.clear();
        self.at_field_start = true;
    }

    fn end_record(&mut self) {
        // A blank line is not a record.
        if self.fields > 0 || !self.at_field_start {
            self.end_field();
            self.records += 1;
            if self.capturing() {
                let record = std::mem::take(&mut self.current);
                self.captured.push(record);
            }
        }
        self.fields = 0;
        self.current.clear();
        self.field.clear();
        self.at_field_start = true;
    }

    /// Fields in the record being read (counting the one in progress).
    pub fn fields_so_far(&self) -> usize {
        self.fields + 1
    }

    /// Whether the scanner is inside a quoted field.
    pub fn in_quotes(&self) -> bool {
        self.in_quotes
    }

    /// Reads one byte.
    pub fn feed(&mut self, b: u8) {
        if self.in_quotes {
            match b {
                b'"' => {
                    self.in_quotes = false;
                    self.just_closed = true;
                }
                b'\n' => {
                    self.line += 1;
                    self.push(b);
                }
                _ => self.push(b),
            }
            return;
        }
        let closed = std::mem::take(&mut self.just_closed);
        match b {
            b'"' if self.at_field_start || closed => {
                if closed {
                    self.push(b'"');
                }
                self.in_quotes = true;
                self.quote_line = self.line;
                self.at_field_start = false;
            }
            b'\n' => {
                self.end_record();
                self.line += 1;
            }
            b'\r' => {}
            d if d == self.delimiter => self.end_field(),
            other => {
                self.at_field_start = false;
                self.push(other);
            }
        }
    }

    /// Ends the input: a last record without a newline counts.
    pub fn finish(&mut self) {
        if !self.in_quotes {
            self.end_record();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str, delimiter: u8) -> CsvScanner {
        let mut s = CsvScanner::new(delimiter, 10);
        text.bytes().for_each(|b| s.feed(b));
        s.finish();
        s
    }

    #[test]
    fn quoted_delimiters_newlines_and_escaped_quotes_stay_in_their_field() {
        let s = scan("a,\"b,c\"\n\"x\"\"y\",\"1\n2\"\r\n\n3,4", b',');
        assert_eq!(s.records, 3);
        assert_eq!(s.captured[0], ["a", "b,c"]);
        assert_eq!(s.captured[1], ["x\"y", "1\n2"]);
        assert_eq!(s.captured[2], ["3", "4"]);
        assert!(!s.in_quotes());
    }

    #[test]
    fn an_inch_mark_inside_a_field_is_not_a_quote_but_an_open_quote_is_found() {
        let s = scan("name,size\nscreen,27\" wide\n", b',');
        assert!(!s.in_quotes());
        assert_eq!(s.captured[1], ["screen", "27\" wide"]);
        let s = scan("a,b\n1,\"open\n2,3\n", b',');
        assert!(s.in_quotes());
        assert_eq!(s.quote_line, 2);
    }
}
