//! Writes the CRDs to `crds/` and the chart's `crds/` (or prints them with `--stdout`);
//! `make crds` runs it and a test fails when the checked-in files drift.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--stdout") {
        for crd in databricks_token_operator::crd::all_crds() {
            print!("---\n{}", serde_yaml::to_string(&crd)?);
        }
        return Ok(());
    }
    // The chart carries its own copy: Helm installs CRDs only from the chart's crds/ folder.
    let dirs = match args.first() {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![
            PathBuf::from("crds"),
            PathBuf::from("charts/databricks-token-operator/crds"),
        ],
    };
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for (file, yaml) in databricks_token_operator::crd::rendered_crds()? {
            std::fs::write(dir.join(&file), yaml)?;
            eprintln!("wrote {}", dir.join(file).display());
        }
    }
    Ok(())
}
