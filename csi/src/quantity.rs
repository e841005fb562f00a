//! Sizes written the Kubernetes way (`1Gi`, `500M`, `1073741824`), for the volume
//! attributes of inline ephemeral volumes.

/// Parses a Kubernetes quantity into bytes. Decimal fractions (`1.5Gi`) are allowed.
pub fn parse_quantity(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let mult: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => {
            return Err(format!(
                "size {text:?} has an unknown suffix {suffix:?} (use k, M, G, T, P, Ki, Mi, Gi, Ti or Pi)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("size {text:?} is not a number with an optional suffix"))?;
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("size {text:?} is out of range"));
    }
    Ok(bytes.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_quantity("500M").unwrap(), 500_000_000);
        assert_eq!(parse_quantity("1.5Ki").unwrap(), 1536);
        assert_eq!(parse_quantity("4096").unwrap(), 4096);
        assert!(parse_quantity("1GB").is_err());
        assert!(parse_quantity("-1").is_err());
        assert!(parse_quantity("0").is_err());
        assert!(parse_quantity("").is_err());
    }
}
