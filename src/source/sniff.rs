//! Guessing how a CSV file was written, from its first bytes (pure): the encoding (UTF-8 with or
//! without BOM, UTF-16 with BOM, else Windows-1251, Excel's "CSV" in a Russian locale) and the
//! delimiter (`,` `;` tab `|`, as Excel writes it in the user's locale).

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1251};

/// How many bytes of the file are looked at.
pub(crate) const SAMPLE_BYTES: usize = 64 * 1024;

/// Invalid UTF-8 sequences in the sample from which the file is taken as Windows-1251: a few
/// broken bytes in a UTF-8 file are broken rows, reported by line; Cyrillic text in
/// Windows-1251 breaks UTF-8 at nearly every letter.
const SINGLE_BYTE_EVIDENCE: usize = 4;

/// The encoding of a file that starts with `sample`.
pub(crate) fn encoding(sample: &[u8]) -> &'static Encoding {
    if let Some((encoding, _)) = Encoding::for_bom(sample) {
        return encoding;
    }
    let mut invalid = 0;
    let mut multibyte = 0;
    let mut rest = sample;
    loop {
        match std::str::from_utf8(rest) {
            Ok(text) => {
                multibyte += text.chars().filter(|c| !c.is_ascii()).count();
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                multibyte += std::str::from_utf8(valid)
                    .map_or(0, |t| t.chars().filter(|c| !c.is_ascii()).count());
                match e.error_len() {
                    // A sequence cut by the end of the sample.
                    None => break,
                    Some(len) => {
                        invalid += 1;
                        rest = &after[len..];
                    }
                }
            }
        }
    }
    if invalid >= SINGLE_BYTE_EVIDENCE && invalid > multibyte {
        WINDOWS_1251
    } else {
        UTF_8
    }
}

/// Parses `--encoding`: utf-8, utf-16le, utf-16be, windows-1251 (or cp1251), or any label the
/// WHATWG Encoding Standard knows.
pub(crate) fn encoding_by_name(name: &str) -> Option<&'static Encoding> {
    match name.trim().to_ascii_lowercase().as_str() {
        "cp1251" | "1251" => Some(WINDOWS_1251),
        "utf16le" | "utf-16" => Some(UTF_16LE),
        "utf16be" => Some(UTF_16BE),
        other => Encoding::for_label(other.as_bytes()),
    }
}

/// The delimiters looked for, in order of preference on a tie.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The delimiter of a CSV whose first lines are `text`: the candidate that splits the header and
/// then the most rows into the same number of fields (ties: more fields, then the order above).
pub(crate) fn delimiter(text: &str) -> u8 {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(50)
        .collect();
    let Some(header) = lines.first() else {
        return b',';
    };
    let mut best = (b',', 0, 0);
    for d in DELIMITERS {
        let fields = count_outside_quotes(header, d);
        if fields == 0 {
            continue;
        }
        let consistent = lines[1..]
            .iter()
            .filter(|l| count_outside_quotes(l, d) == fields)
            .count();
        if (consistent, fields) > (best.1, best.2) {
            best = (d, consistent, fields);
        }
    }
    best.0
}

fn count_outside_quotes(line: &str, delimiter: u8) -> usize {
    let mut quoted = false;
    let mut count = 0;
    for b in line.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if b == delimiter && !quoted {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_recognised() {
        assert_eq!(encoding(b"\xef\xbb\xbfphone\n1\n"), UTF_8);
        assert_eq!(encoding(b"\xff\xfep\x00h\x00"), UTF_16LE);
        assert_eq!(encoding(b"\xfe\xff\x00p\x00h"), UTF_16BE);
        assert_eq!(encoding("Телефон;Имя\n".as_bytes()), UTF_8);
        let (cp1251, _, _) = WINDOWS_1251.encode("Телефон;Имя\n79001234567;Иван\n");
        assert_eq!(encoding(&cp1251), WINDOWS_1251);
        // Two broken bytes in a UTF-8 file are a broken row, not another encoding.
        assert_eq!(encoding(b"phone\n7900111\xff\xfe2203\n"), UTF_8);
        // A UTF-8 character cut by the end of the sample is not evidence.
        assert_eq!(encoding(&"Имя".as_bytes()[..5]), UTF_8);
        assert_eq!(encoding_by_name("cp1251"), Some(WINDOWS_1251));
        assert_eq!(encoding_by_name("UTF-16BE"), Some(UTF_16BE));
        assert_eq!(encoding_by_name("klingon"), None);
    }

    #[test]
    fn delimiters_are_recognised() {
        assert_eq!(delimiter("phone,name\n1,a\n2,b\n"), b',');
        assert_eq!(delimiter("Телефон;Имя;Город\n+7 900;Иван;Москва\n"), b';');
        assert_eq!(delimiter("phone\tname\n1\ta\n"), b'\t');
        assert_eq!(delimiter("phone|name\n1|a\n"), b'|');
        // Commas inside quotes or in values of a ;-file do not count.
        assert_eq!(
            delimiter("name;phone\n\"Petrov, Ivan\";1\n\"Smith, J\";2\n"),
            b';'
        );
        assert_eq!(delimiter("phone\n79001234567\n"), b',');
        assert_eq!(delimiter(""), b',');
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Any bytes: an encoding that decodes them and one of the delimiters, no panic.
            #[test]
            fn any_bytes_get_an_encoding_and_a_delimiter(
                bytes in prop::collection::vec(any::<u8>(), 0..4096),
            ) {
                let (text, _, _) = encoding(&bytes).decode(&bytes);
                prop_assert!(DELIMITERS.contains(&delimiter(&text)));
            }
        }
    }
}
