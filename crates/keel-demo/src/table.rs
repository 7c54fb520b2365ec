//! Small aligned text tables for the tour and summaries (stdout).

/// Prints `rows` under `headers`, columns padded to their widest cell, indented by three
/// spaces. Cells longer than 48 characters are shortened with `…`.
pub fn print(headers: &[&str], rows: &[Vec<String>]) {
    const MAX: usize = 48;
    let clip = |s: &str| -> String {
        if s.chars().count() > MAX { s.chars().take(MAX - 1).chain(['…']).collect() } else { s.to_owned() }
    };
    let header: Vec<String> = headers.iter().map(|h| clip(h)).collect();
    let body: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| clip(c)).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &body {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("   {}", padded.join("  ").trim_end());
    };
    line(&header);
    line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for row in &body {
        line(row);
    }
    if body.is_empty() {
        println!("   (no rows)");
    }
}

/// A count per second, rounded, with thousands separators: `123,456`.
pub fn per_second(n: u64, elapsed: std::time::Duration) -> String {
    let rate = n as f64 / elapsed.as_secs_f64().max(1e-9);
    thousands(rate.round() as u64)
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Cents as `1,234.56`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", thousands(c / 100), c % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(money(-123_456), "-1,234.56");
        assert_eq!(money(5), "0.05");
    }
}
