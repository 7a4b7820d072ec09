//! Writes the CRDs to `crds/` (or prints them with `--stdout`); `make crds` runs it and a test
//! fails when the checked-in files drift.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--stdout") {
        for crd in databricks_token_operator::crd::all_crds() {
            print!("---\n{}", serde_yaml::to_string(&crd)?);
        }
        return Ok(());
    }
    let dir = args.first().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("crds"));
    std::fs::create_dir_all(&dir)?;
    for (file, yaml) in databricks_token_operator::crd::rendered_crds()? {
        std::fs::write(dir.join(&file), yaml)?;
        eprintln!("wrote {}", dir.join(file).display());
    }
    Ok(())
}
