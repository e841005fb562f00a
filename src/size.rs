//! Byte sizes on the command line: parsing `10GiB`, `1.5G`, `500MB`, … and printing `10.0 GiB`.

/// Parses a size such as `4096`, `64K`, `64KiB`, `1.5GiB`, `10G` or `500MB`.
///
/// Binary units: `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB` (also `Ki`, `Mi`, …).
/// Decimal units: `KB`, `MB`, `GB`, `TB`. `B` or no unit means bytes. Units are
/// case-insensitive and may be separated from the number by spaces. A fraction is
/// allowed as long as the result is a whole number of bytes.
pub fn parse_size(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    if number.is_empty() {
        return Err(format!(
            "invalid size {input:?}: expected a number with an optional unit, e.g. 10GiB, 512MiB or 500MB"
        ));
    }
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "invalid size {input:?}: unknown unit {unit:?} (use B, K/KiB, M/MiB, G/GiB, T/TiB, KB, MB, GB or TB)"
            ))
        }
    };
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
        return Err(format!(
            "invalid size {input:?}: malformed number {number:?}"
        ));
    }
    let too_big = || format!("invalid size {input:?}: too large");
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| too_big())?
    };
    let mut bytes = int.checked_mul(multiplier).ok_or_else(too_big)?;
    if !frac_part.is_empty() {
        if frac_part.len() > 18 {
            return Err(format!("invalid size {input:?}: too many decimal places"));
        }
        let frac: u128 = frac_part.parse().map_err(|_| too_big())?;
        let scale = 10u128.pow(frac_part.len() as u32);
        let scaled = frac * multiplier;
        if !scaled.is_multiple_of(scale) {
            return Err(format!(
                "invalid size {input:?}: not a whole number of bytes"
            ));
        }
        bytes = bytes.checked_add(scaled / scale).ok_or_else(too_big)?;
    }
    u64::try_from(bytes).map_err(|_| too_big())
}

/// Formats a byte count for people: `512 B`, `64.0 KiB`, `10.0 GiB`, `1.5 TiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // 1023.95 and up would print as "1024.0": move to the next unit instead.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("12B").unwrap(), 12);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("64kib").unwrap(), 64 << 10);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("10 GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        assert_eq!(parse_size("2TiB").unwrap(), 2 << 40);
        assert_eq!(parse_size("1KB").unwrap(), 1_000);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("3GB").unwrap(), 3_000_000_000);
        assert_eq!(parse_size("1TB").unwrap(), 1_000_000_000_000);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size(".5K").unwrap(), 512);
        assert_eq!(parse_size(" 7 M ").unwrap(), 7 << 20);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "GiB",
            "12XB",
            "abc",
            "1.2.3",
            "1..",
            ".",
            "-1",
            "1 G B",
            "0.3B",
            "1e9",
            "99999999999999999999999T",
            "17179869184TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        let err = parse_size("12XB").unwrap_err();
        assert!(err.contains("unknown unit"), "{err}");
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(1 << 20), "1.0 MiB");
        assert_eq!(format_size(10 << 30), "10.0 GiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size((1 << 20) - 1), "1.0 MiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
    }
}
