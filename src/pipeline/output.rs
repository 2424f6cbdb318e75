//! Output checks: the output location must exist and be writable before any call is made.

use std::path::Path;

use crate::config::Output;

/// The output location cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OutputError(String);

/// Checks the output location (creating a missing CSV directory) before any call is made.
pub(crate) fn prepare(output: &Output) -> Result<(), OutputError> {
    match output {
        Output::Sqlite(path) => check_dir(path.parent().unwrap_or(Path::new("."))),
        Output::Csv { dir, .. } => {
            if !dir.exists() {
                check_dir(dir.parent().unwrap_or(Path::new(".")))?;
                crate::private::create_dir(dir).map_err(|e| {
                    OutputError(format!(
                        "cannot create the output directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            check_dir(dir)
        }
        // The server is checked when the store is opened.
        Output::Postgres { .. } => Ok(()),
    }
}

fn check_dir(dir: &Path) -> Result<(), OutputError> {
    let shown = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let meta = std::fs::metadata(shown).map_err(|_| {
        OutputError(format!(
            "the output directory {} does not exist",
            shown.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(OutputError(format!(
            "{} is not a directory",
            shown.display()
        )));
    }
    let probe = shown.join(format!(".greenrich-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        OutputError(format!(
            "cannot write in the output directory {}: {e}",
            shown.display()
        ))
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}
