//! Sizes and durations on the command line, in the grammar the server's configuration uses
//! too: sizes as the `bytesize` crate reads them (`4096`, `64KiB`, `1.5GiB`, `10MB`), durations
//! as `humantime` reads them (`500ms`, `5s`, `2m`, `1h`, `7d`). Sizes print in the largest
//! binary unit that divides them exactly, so a report quotes back exactly the settings it ran
//! with.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A number of bytes. Binary units (`KiB`, `MiB`, `GiB`, `TiB`, `Ki`, ...) are powers of 1024;
/// decimal ones (`KB`, `MB`, `GB`, `TB`, and the shorthands `k`, `M`, `G`) powers of 1000;
/// units are case-insensitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

/// Why a size or duration string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("{input:?} is not a size: expected a number followed by B, KiB, MiB, GiB, TiB, KB, MB, GB or TB ({reason})")]
    BadSize { input: String, reason: String },
    #[error("{input:?} is too large a size")]
    SizeOverflow { input: String },
    #[error("{input:?} is not a duration: expected a number and a unit, like 500ms, 5s, 2m, 1h or 7d ({reason})")]
    BadDuration { input: String, reason: String },
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

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        // bytesize saturates instead of failing; anything at u64::MAX is an overflow.
        match trimmed.parse::<bytesize::ByteSize>() {
            Ok(b) if b.as_u64() == u64::MAX && trimmed != u64::MAX.to_string() => {
                Err(UnitError::SizeOverflow {
                    input: input.to_string(),
                })
            }
            Ok(b) => Ok(ByteSize(b.as_u64())),
            Err(reason) => Err(UnitError::BadSize {
                input: input.to_string(),
                reason,
            }),
        }
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

/// Parses a duration as the configuration does: `500ms`, `5s`, `2m`, `1h`, `7d`, `1h 30m`.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(input.trim()).map_err(|e| UnitError::BadDuration {
        input: input.to_string(),
        reason: e.to_string(),
    })
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
        assert_eq!("1.5GiB".parse(), Ok(ByteSize(3 << 29)));
        assert_eq!("64 KiB".parse(), Ok(ByteSize(65536)));
        assert_eq!("64kib".parse(), Ok(ByteSize(65536)));
    }

    #[test]
    fn decimal_units_and_bare_numbers_are_accepted() {
        assert_eq!("10MB".parse(), Ok(ByteSize(10_000_000)));
        assert_eq!("1kb".parse(), Ok(ByteSize(1000)));
        assert_eq!("64k".parse(), Ok(ByteSize(64_000)));
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
    fn durations_read_as_the_configuration_reads_them() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for bad in ["", "s", "5 fortnights", "-1s", "5ss", "3"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
