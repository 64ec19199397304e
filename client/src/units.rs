//! Human-friendly sizes and durations on the command line: `64KiB`, `1GiB`, `16MiB`, `5s`,
//! `500ms`. Parsing is strict (unknown units are errors) and sizes round-trip through
//! `Display`, so a report can quote back exactly the settings it ran with.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A number of bytes, parsed from `4096`, `4KiB`, `64 KiB`, `1.5GiB`, `10MB` and the like.
///
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`, and the shorthands `k`, `K`, `M`, `G`, `T`) are
/// powers of 1024; decimal units (`KB`, `MB`, `GB`, `TB`) are powers of 1000. Units are
/// case-insensitive except that a bare `b`/`B` means bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

/// Why a size or duration string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("{input:?} is not a size: expected a number followed by B, KiB, MiB, GiB, TiB, KB, MB, GB or TB")]
    BadSize { input: String },
    #[error("{input:?} is too large a size")]
    SizeOverflow { input: String },
    #[error("{input:?} is not a duration: expected a number followed by ms, s, m or h (e.g. 5s)")]
    BadDuration { input: String },
}

const KIB: u64 = 1024;

impl ByteSize {
    pub const KIB: ByteSize = ByteSize(KIB);
    pub const MIB: ByteSize = ByteSize(KIB * KIB);
    pub const GIB: ByteSize = ByteSize(KIB * KIB * KIB);

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Splits "1.5GiB" into ("1.5", "GiB"), trimming spaces between number and unit.
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = || UnitError::BadSize {
            input: input.to_string(),
        };
        let (number, unit) = split_number(input.trim());
        if number.is_empty() {
            return Err(bad());
        }
        let multiplier: u64 = match unit {
            "" | "b" | "B" => 1,
            u => match u.to_ascii_lowercase().as_str() {
                "k" | "kib" => KIB,
                "m" | "mib" => KIB.pow(2),
                "g" | "gib" => KIB.pow(3),
                "t" | "tib" => KIB.pow(4),
                "kb" => 1000,
                "mb" => 1000u64.pow(2),
                "gb" => 1000u64.pow(3),
                "tb" => 1000u64.pow(4),
                _ => return Err(bad()),
            },
        };
        if let Ok(whole) = number.parse::<u64>() {
            return whole.checked_mul(multiplier).map(ByteSize).ok_or_else(|| {
                UnitError::SizeOverflow {
                    input: input.to_string(),
                }
            });
        }
        let fractional: f64 = number.parse().map_err(|_| bad())?;
        let bytes = (fractional * multiplier as f64).round();
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(UnitError::SizeOverflow {
                input: input.to_string(),
            });
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly (`64KiB`, `1GiB`, `1000B`), so
    /// the printed form parses back to the same number of bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", KIB * KIB * KIB * KIB),
            ("GiB", KIB * KIB * KIB),
            ("MiB", KIB * KIB),
            ("KiB", KIB),
        ];
        for (name, unit) in UNITS {
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{}", self.0 / unit, name);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// Parses `5s`, `500ms`, `2m`, `1h`, `1.5s`; a bare number is seconds.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let bad = || UnitError::BadDuration {
        input: input.to_string(),
    };
    let (number, unit) = split_number(input.trim());
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_units_are_powers_of_1024() {
        assert_eq!("4KiB".parse(), Ok(ByteSize(4096)));
        assert_eq!("64KiB".parse(), Ok(ByteSize(65536)));
        assert_eq!("16MiB".parse(), Ok(ByteSize(16 << 20)));
        assert_eq!("1GiB".parse(), Ok(ByteSize(1 << 30)));
        assert_eq!("2TiB".parse(), Ok(ByteSize(2 << 40)));
        assert_eq!("64k".parse(), Ok(ByteSize(65536)));
        assert_eq!("1G".parse(), Ok(ByteSize(1 << 30)));
        assert_eq!("1.5GiB".parse(), Ok(ByteSize(3 << 29)));
        assert_eq!("64 KiB".parse(), Ok(ByteSize(65536)));
        assert_eq!("64kib".parse(), Ok(ByteSize(65536)));
    }

    #[test]
    fn decimal_units_and_bare_numbers_are_accepted() {
        assert_eq!("10MB".parse(), Ok(ByteSize(10_000_000)));
        assert_eq!("1kb".parse(), Ok(ByteSize(1000)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert_eq!("7B".parse(), Ok(ByteSize(7)));
        assert_eq!("0".parse(), Ok(ByteSize(0)));
    }

    #[test]
    fn malformed_sizes_are_rejected() {
        for bad in ["", "KiB", "12 parsecs", "1..5MiB", "-4KiB", "4 KiB extra"] {
            assert!(
                bad.parse::<ByteSize>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(
            "99999999999TiB".parse::<ByteSize>(),
            Err(UnitError::SizeOverflow {
                input: "99999999999TiB".into()
            })
        );
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit_and_parse_back() {
        for (bytes, text) in [
            (65536, "64KiB"),
            (1 << 30, "1GiB"),
            (16 << 20, "16MiB"),
            (1000, "1000B"),
            (3072, "3KiB"),
            (1536, "1536B"),
            (0, "0B"),
        ] {
            assert_eq!(ByteSize(bytes).to_string(), text);
            assert_eq!(text.parse(), Ok(ByteSize(bytes)));
        }
    }

    #[test]
    fn durations_accept_ms_s_m_h_and_bare_seconds() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for bad in ["", "s", "5 fortnights", "-1s", "5ss"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
