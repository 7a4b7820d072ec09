//! One report, printed for people or as JSON / YAML for scripts.

use serde::Serialize;

use crate::cli::Format;

/// A report that also knows how to read as text.
pub trait Report: Serialize {
    fn text(&self) -> String;
}

pub fn print(report: &impl Report, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Text => print!("{}", report.text()),
        Format::Json => println!("{}", serde_json::to_string_pretty(report)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(report)?),
    }
    Ok(())
}

/// Rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_pads_each_column_to_its_widest_cell() {
        let rows = vec![
            vec!["a".to_string(), "long value".to_string()],
            vec!["longer".to_string(), "b".to_string()],
        ];
        assert_eq!(
            table(&["ID", "VALUE"], &rows),
            "ID      VALUE\na       long value\nlonger  b\n"
        );
    }
}
